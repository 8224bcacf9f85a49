"""Models: backbones and aggregators in registries, and the VPRNet that joins them.

The contract (``models.contract``) that lets any backbone work with any aggregator:

- A **backbone** (``Backbone``) maps images ``[B, 3, H, W]`` to a ``BackboneOutput``:
  ``feature_map [B, C, H/p, W/p]`` and ``token [B, C]`` (a ViT's class token) or ``None`` (a CNN).
  It declares ``out_channels`` (``C``) and ``patch_size`` (``p``: a ViT's patch, a CNN's stride),
  and ``check_image_size(H, W)`` says whether it can take an image size (a ViT needs multiples of
  ``p``; a CNN takes any size). Data code asks the model for ``p``: native-resolution rounding,
  ``--image_size`` checks, device decoding and ONNX export never assume a patch size.
- An **aggregator** (``Aggregator``) maps a ``BackboneOutput`` to L2-normalised descriptors
  ``[B, D]``. It takes its input width as ``in_channels`` and declares ``out_dim`` (``D``);
  those that want a global token and get ``None`` use the mean of the feature map.
- An **architecture** (``Architecture``: backbone name + arguments, aggregator name + arguments)
  is turned into a ``VPRNet`` by ``build_network``, the one builder that training, checkpoint
  loading, eval.py, torch.hub and ONNX export call. It fills the aggregator's ``in_channels``
  from the backbone. State dicts read ``backbone.*`` and ``aggregator.*``.

A new backbone or aggregator is one module with one ``@BACKBONES.register("name")`` (or
``AGGREGATORS``) line, added to the imports of its subpackage. Importing this package registers
every architecture; nothing is downloaded or built.
"""

from models import aggregators, backbones  # noqa: F401  (fills the registries)
from models.architecture import Architecture
from models.contract import Aggregator, Backbone, BackboneOutput
from models.registry import AGGREGATORS, BACKBONES
from models.vpr_net import VPRNet, build_network, build_vpr_net

__all__ = [
    "AGGREGATORS",
    "BACKBONES",
    "Aggregator",
    "Architecture",
    "Backbone",
    "BackboneOutput",
    "VPRNet",
    "build_network",
    "build_vpr_net",
]
