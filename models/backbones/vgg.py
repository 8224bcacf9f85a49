"""VGG-16 (torchvision) cut after its last convolution, as CosPlace and EigenPlaces use it.

The published networks keep ``features`` without its last ReLU and max-pool: 13 convolutions,
512 channels at stride 16, the output of conv5_3 before its ReLU. The modules keep torchvision's
indices under ``model.`` (``model.0.weight`` ... ``model.28.bias``).
"""

from __future__ import annotations

from os import PathLike

import torch
import torch.nn as nn
import torchvision.models as tvm

from models.contract import Backbone, BackboneOutput
from models.pretrained import fetch_state_dict
from models.registry import BACKBONES
from utils.errors import UserError

#: ``features`` modules dropped at the end: the last ReLU and max-pool.
DROPPED_TAIL = 2
#: Trailing modules that train when the weights are pretrained (the published freezing).
TRAINABLE_TAIL = 5
VGG16_CHANNELS = 512
VGG16_STRIDE = 16


class VGG16Backbone(Backbone):
    """``forward(images [B, 3, H, W]) -> BackboneOutput(feature_map [B, 512, H/16, W/16], None)``
    (sides floored by the four max-pools).

    Args:
        pretrained: torchvision's ImageNet weights (downloaded through torch.hub's cache).
        pretrained_path: a local copy of that file (implies ``pretrained``).
    """

    def __init__(self, pretrained: bool = False, pretrained_path: str | PathLike[str] | None = None) -> None:
        super().__init__()
        network = tvm.vgg16(weights=None)
        if pretrained or pretrained_path is not None:
            url = tvm.VGG16_Weights.IMAGENET1K_V1.url
            network.load_state_dict(fetch_state_dict(url, pretrained_path, "VGG-16 ImageNet weights"), strict=True)
        layers = list(network.features.children())[:-DROPPED_TAIL]
        if pretrained or pretrained_path is not None:
            for layer in layers[:-TRAINABLE_TAIL]:
                layer.requires_grad_(False)
        self.model = nn.Sequential(*layers)
        self.out_channels = VGG16_CHANNELS
        self.patch_size = VGG16_STRIDE

    def check_image_size(self, height: int, width: int) -> None:
        """Any size of at least one cell (the max-pools floor the sides)."""
        if height < self.patch_size or width < self.patch_size:
            raise UserError(f"image_size={[height, width]}: VGG-16 needs both sides of at least {self.patch_size}")

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """``images [B, 3, H, W]`` -> ``feature_map [B, 512, H/16, W/16]``, no token."""
        return BackboneOutput(self.model(images))


@BACKBONES.register("vgg16")
def vgg16(pretrained: bool = False, pretrained_path: str | None = None) -> VGG16Backbone:
    """VGG-16 to conv5_3: 512 channels at stride 16; see :class:`VGG16Backbone`."""
    return VGG16Backbone(pretrained, pretrained_path)
