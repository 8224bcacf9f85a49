"""Models: backbones and aggregators in registries, and the VPRNet that joins them.

Importing this package registers every architecture (nothing is downloaded or built).
"""

from models import aggregators, backbones  # noqa: F401  (fills the registries)
from models.registry import AGGREGATORS, BACKBONES
from models.vpr_net import VPRNet, build_vpr_net, load_weights

__all__ = ["AGGREGATORS", "BACKBONES", "VPRNet", "build_vpr_net", "load_weights"]
