"""Aggregators; importing this package registers them in ``models.registry.AGGREGATORS``."""

from models.aggregators import salad  # noqa: F401
