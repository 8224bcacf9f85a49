"""Aggregators; importing this package registers them in ``models.registry.AGGREGATORS``."""

from models.aggregators import boq, convap, cosplace, gem, mixvpr, salad  # noqa: F401
