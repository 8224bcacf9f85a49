"""Name -> builder registries for backbones and aggregators.

A new architecture is one module plus one ``@BACKBONES.register("name")`` (or
``AGGREGATORS``) line; names are matched exactly, never by substring.
"""

from __future__ import annotations

from utils.registry import Registry

__all__ = ["AGGREGATORS", "BACKBONES", "Registry"]

BACKBONES = Registry("backbone", "backbone_config")
AGGREGATORS = Registry("aggregator", "agg_config")
