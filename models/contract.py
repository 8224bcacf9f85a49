"""The model contract: what a backbone returns, what an aggregator takes, what both declare.

Any registered backbone works with any registered aggregator because both sides speak through
these types only (see the ``models`` package docstring for the whole picture with shapes).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from utils.errors import UserError


class BackboneOutput(NamedTuple):
    """What every backbone returns for a batch of images ``[B, 3, H, W]``.

    Attributes:
        feature_map: ``[B, C, H/p, W/p]`` patch (or cell) features, ``p`` the backbone's
            ``patch_size``, ``C`` its ``out_channels``; row-major over the image.
        token: ``[B, C]`` the global (class) token of a ViT, or ``None`` (a CNN, or a ViT asked
            not to return it).

    A named tuple, so ``feature_map, token = backbone(images)`` works, and tracing (ONNX) and
    ``torch.compile`` see a plain tuple.
    """

    feature_map: torch.Tensor
    token: torch.Tensor | None = None


def building_on_meta_device() -> bool:
    """Whether new tensors go to the meta device (``with torch.device("meta"):``): a module built
    there holds shapes only, and its builder may skip initialising weights."""
    return torch.empty(0).device.type == "meta"


def as_backbone_output(features: BackboneOutput | tuple[torch.Tensor, torch.Tensor | None] | torch.Tensor) -> BackboneOutput:
    """``features`` as a :class:`BackboneOutput`: a bare ``[B, C, h, w]`` map has no token, and a
    plain ``(map, token)`` pair is read in that order."""
    if isinstance(features, BackboneOutput):
        return features
    if isinstance(features, torch.Tensor):
        return BackboneOutput(features)
    return BackboneOutput(*features)


class Backbone(nn.Module):
    """Images in, :class:`BackboneOutput` out.

    Subclasses set, in their constructor:

    - ``out_channels``: ``C`` of the feature map and of the token;
    - ``patch_size``: input pixels per feature-map cell (a ViT's patch, a CNN's stride).

    ``forward(images [B, 3, H, W]) -> BackboneOutput``.
    """

    out_channels: int
    patch_size: int

    def pretrained_weights_hint(self) -> str:
        """Where this backbone's pretrained weights come from, for the warning that training
        starts from random weights."""
        return """pretrained weights: backbone_config='{"pretrained": true}' (or "pretrained_path": FILE)"""

    def check_image_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` when images of ``height x width`` cannot go through this backbone.

        A ViT needs both sides to be multiples of its patch size (the default here); a CNN,
        whose convolutions pad, overrides this to accept any size.
        """
        patch = self.patch_size
        if height < 1 or width < 1 or height % patch or width % patch:
            nearest = f"{max(patch, round(height / patch) * patch)}x{max(patch, round(width / patch) * patch)}"
            raise UserError(
                f"image size {height}x{width} is not a multiple of the patch size {patch} of "
                f"{type(self).__name__} (e.g. use {nearest})"
            )


class Aggregator(nn.Module):
    """:class:`BackboneOutput` in, L2-normalised global descriptors ``[B, out_dim]`` out.

    Every aggregator takes the width of its input as the constructor argument ``in_channels``
    (the builder fills it with the backbone's ``out_channels``) and sets ``out_dim``.
    Subclasses implement :meth:`aggregate`; ``forward`` also accepts a bare feature map or a
    ``(map, token)`` pair, read as :func:`as_backbone_output` says.
    """

    in_channels: int | None
    out_dim: int | None

    def forward(self, features: BackboneOutput | tuple[torch.Tensor, torch.Tensor | None] | torch.Tensor) -> torch.Tensor:
        """``BackboneOutput`` (or a map, or a ``(map, token)`` pair) -> descriptors ``[B, out_dim]``."""
        return self.aggregate(as_backbone_output(features))

    def aggregate(self, features: BackboneOutput) -> torch.Tensor:
        """``features.feature_map [B, C, h, w]`` (and ``features.token [B, C]``) -> ``[B, out_dim]``."""
        raise NotImplementedError
