"""The evaluation library: from a network and evaluation sets to recalls and the files a run keeps.

- ``pipeline``: ``EvalOptions``, ``Evaluator`` and ``evaluate_sets`` (cache policy, decoding, batching);
- ``inference``: descriptors of a dataset, batch by batch, in the precision asked;
- ``retrieval``: ``retrieve``, the one path from descriptors to ranked predictions and recalls,
  shared by training validation and eval.py;
- ``search`` (faiss or torch, exact), ``metrics`` (recall@K), ``descriptor_cache``;
- ``outputs`` (one writer per file of a run folder), ``results`` (``results.json``, recall tables),
  ``predictions_csv``, ``msls_challenge``, ``visualize`` (prediction images).

Nothing here is imported by this ``__init__``: each module is imported by name.
"""
