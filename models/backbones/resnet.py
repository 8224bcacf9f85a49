"""ResNet-18/34/50/101/152 backbones (torchvision) with the published freezing and cropping options.

The network is seen, as in the GSV-Cities / MixVPR / SALAD code, as five stages: stage 0 is the stem
(``conv1``, ``bn1``, ReLU, max-pool) and stages 1-4 are the residual ``layer1`` ... ``layer4``. The
classifier head (``avgpool``, ``fc``) is removed, and the last residual stages can be cropped off to
keep a finer feature map (cropping ``layer4`` halves the stride from 32 to 16).

Weights are random unless ``pretrained=True`` (torchvision's ImageNet ``IMAGENET1K_V1`` weights, the
ones the published code uses) or ``pretrained_path`` (a local file holding such a state dict).

Freezing follows the published code exactly:

* it applies only when weights are loaded (``pretrained=True`` or ``pretrained_path``): freezing
  random weights would make no sense, so a randomly initialised backbone is fully trainable;
* ``layers_to_freeze`` -1 freezes nothing, >= 0 the stem, >= 1 also ``layer1``, >= 2 also ``layer2``,
  >= 3 also ``layer3``; ``layer4`` is never frozen;
* frozen parameters get ``requires_grad=False`` and nothing more: frozen BatchNorm layers follow the
  module's train/eval mode like every other layer, so in training they still normalise with batch
  statistics and update their running statistics (the published behaviour, kept so results match).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import torch
import torch.nn as nn
import torchvision.models as tvm

from models.contract import Backbone, BackboneOutput
from models.pretrained import fetch_state_dict
from models.registry import BACKBONES
from utils.errors import UserError

log = logging.getLogger(__name__)

#: Residual stages (1-4) that may be cropped; the stem and layer1/layer2 always stay.
CROPPABLE_STAGES = (3, 4)
#: Largest ``layers_to_freeze`` with a meaning (layer4 is never frozen, as published).
MAX_LAYERS_TO_FREEZE = 3
#: Output channels of ``layer1`` per unit of block expansion; each later stage doubles it.
STAGE1_WIDTH = 64
#: Input pixels per feature-map cell after the stem (stride 4) and after each residual stage.
STAGE_STRIDES = {1: 4, 2: 8, 3: 16, 4: 32}
#: Longest excerpt of torch's load_state_dict message quoted in our error.
MAX_DETAIL_CHARS = 200


@dataclass(frozen=True)
class ResNetVariant:
    """A torchvision ResNet constructor and its published ImageNet weights."""

    build: Callable[..., tvm.ResNet]
    weights: tvm.WeightsEnum


RESNET_VARIANTS: dict[int, ResNetVariant] = {
    18: ResNetVariant(tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
    34: ResNetVariant(tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1),
    50: ResNetVariant(tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1),
    101: ResNetVariant(tvm.resnet101, tvm.ResNet101_Weights.IMAGENET1K_V1),
    152: ResNetVariant(tvm.resnet152, tvm.ResNet152_Weights.IMAGENET1K_V1),
}


def _validate_crop(layers_to_crop: Sequence[int]) -> frozenset[int]:
    """The set of stages to crop, checked: only 3 and 4, and layer3 only together with layer4."""
    cropped = frozenset(int(stage) for stage in layers_to_crop)
    unknown = sorted(cropped - set(CROPPABLE_STAGES))
    if unknown:
        raise UserError(
            f"layers_to_crop={list(layers_to_crop)}: only residual stages {list(CROPPABLE_STAGES)} "
            f"can be cropped, got {unknown}"
        )
    if 3 in cropped and 4 not in cropped:
        raise UserError(
            f"layers_to_crop={list(layers_to_crop)}: cropping layer3 requires cropping layer4 too "
            f"(use [3, 4])"
        )
    return cropped


class ResNetBackbone(Backbone):
    """A torchvision ResNet without its classifier head and, optionally, its last stages.

    ``forward(images [B, 3, H, W]) -> BackboneOutput(feature_map [B, out_channels, H/stride,
    W/stride], token=None)`` (sizes rounded up, as the convolutions pad: any input size works).
    The torchvision network is kept as ``self.model`` so that state dicts use the published key
    names (``model.layer1.0.conv1.weight`` ...).

    Attributes:
        out_channels: channels of the feature map (ResNet-50: 2048, 1024 with layer4 cropped, 512
            with layer3 and layer4 cropped; ResNet-18/34: 512, 256, 128).
        patch_size: input pixels per feature-map cell, the network's stride (32, 16 or 8).
    """

    def __init__(
        self,
        depth: int,
        pretrained: bool = False,
        pretrained_path: str | PathLike[str] | None = None,
        layers_to_freeze: int = 2,
        layers_to_crop: Sequence[int] = (4,),
    ) -> None:
        """Build a ResNet of ``depth`` layers (18, 34, 50, 101 or 152); see the module docstring."""
        super().__init__()
        if depth not in RESNET_VARIANTS:
            raise UserError(f"ResNet depth {depth} is not supported; expected one of {sorted(RESNET_VARIANTS)}")
        if not -1 <= layers_to_freeze <= MAX_LAYERS_TO_FREEZE:
            raise UserError(
                f"layers_to_freeze={layers_to_freeze}: expected -1 (none) to {MAX_LAYERS_TO_FREEZE} "
                f"(stem, layer1, layer2, layer3)"
            )
        cropped = _validate_crop(layers_to_crop)
        variant = RESNET_VARIANTS[depth]
        self.depth = depth

        self.model: tvm.ResNet = variant.build(weights=None)
        loads_weights = pretrained or pretrained_path is not None
        if loads_weights:
            state_dict = fetch_state_dict(
                variant.weights.url, pretrained_path, what=f"ResNet-{depth} ImageNet weights"
            )
            self._load_torchvision_state_dict(state_dict, pretrained_path)
            self._freeze(layers_to_freeze)
        elif layers_to_freeze >= 0:
            log.debug("ResNet-%d has random weights: nothing is frozen (frozen only when pretrained)", depth)

        # The classifier head and the cropped stages go: None removes them from the state dict.
        self.model.avgpool = None
        self.model.fc = None
        for stage in sorted(cropped):
            setattr(self.model, f"layer{stage}", None)

        last_stage = min(cropped, default=5) - 1
        expansion: int = getattr(self.model.layer1[0], "expansion")
        self.out_channels: int = STAGE1_WIDTH * 2 ** (last_stage - 1) * expansion
        self.patch_size: int = STAGE_STRIDES[last_stage]

    def pretrained_weights_hint(self) -> str:
        """torchvision's ImageNet weights: the cache they download into, or a local file."""
        file_name = RESNET_VARIANTS[self.depth].weights.url.rsplit("/", 1)[-1]
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        return (
            f"""ImageNet weights: backbone_config='{{"pretrained": true}}' downloads torchvision's {file_name} """
            f"""into {cache} (or "pretrained_path": a local copy of it)"""
        )

    def check_image_size(self, height: int, width: int) -> None:
        """Any positive size: the convolutions pad (a side that is not a multiple of the stride
        gives a feature map rounded up)."""
        if height < 1 or width < 1:
            raise UserError(f"image size {height}x{width}: both sides must be positive")

    def _load_torchvision_state_dict(
        self, state_dict: dict[str, torch.Tensor], pretrained_path: str | PathLike[str] | None
    ) -> None:
        """Load a full torchvision ResNet state dict (head included) into ``self.model``."""
        source = str(pretrained_path) if pretrained_path is not None else "the downloaded weights"
        try:
            self.model.load_state_dict(state_dict, strict=True)
        except RuntimeError as error:
            # torch's message: a header line, then one line per kind of problem (missing keys, ...).
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            detail = lines[1] if len(lines) > 1 else lines[0]
            if len(detail) > MAX_DETAIL_CHARS:
                detail = detail[:MAX_DETAIL_CHARS] + "..."
            raise UserError(f"{source} is not a torchvision ResNet-{self.depth} state dict: {detail}") from error

    def _freeze(self, layers_to_freeze: int) -> None:
        """Set ``requires_grad=False`` on the stem (>= 0) and on layer1..layer3 (>= 1..3)."""
        if layers_to_freeze >= 0:
            self.model.conv1.requires_grad_(False)
            self.model.bn1.requires_grad_(False)
        for stage in range(1, layers_to_freeze + 1):
            getattr(self.model, f"layer{stage}").requires_grad_(False)

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """``images [B, 3, H, W]`` -> ``feature_map [B, out_channels, H/stride, W/stride]``, no token."""
        x = self.model.maxpool(self.model.relu(self.model.bn1(self.model.conv1(images))))
        for stage in range(1, 5):
            layer: nn.Module | None = getattr(self.model, f"layer{stage}")
            if layer is not None:
                x = layer(x)
        return BackboneOutput(x)


def _resnet_builder(depth: int) -> Callable[..., ResNetBackbone]:
    def build(
        pretrained: bool = False,
        pretrained_path: str | None = None,
        layers_to_freeze: int = 2,
        layers_to_crop: Sequence[int] = (4,),
    ) -> ResNetBackbone:
        return ResNetBackbone(
            depth,
            pretrained=pretrained,
            pretrained_path=pretrained_path,
            layers_to_freeze=layers_to_freeze,
            layers_to_crop=layers_to_crop,
        )

    build.__name__ = f"resnet{depth}"
    build.__doc__ = f"ResNet-{depth} (stride 16 with the default crop); see :class:`ResNetBackbone`."
    return build


for _depth in RESNET_VARIANTS:
    BACKBONES.register(f"resnet{_depth}")(_resnet_builder(_depth))
