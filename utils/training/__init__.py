"""Training pieces around the LightningModule: the metric-learning objective (loss and miner),
the run folder's loggers (TensorBoard and ``metrics.csv``), and resuming a run in its own folder.

Nothing here is imported by this ``__init__``: each module is imported by name.
"""
