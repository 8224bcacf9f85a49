"""Pieces shared by the ViT backbones (DINOv2, DINOv3): state-dict key renaming, running the
frozen and the trainable blocks, the split of the final tokens into the contract's output, and
the registration of a family's sizes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.contract import Backbone, BackboneOutput
from models.registry import BACKBONES


def snap_to_patch_grid(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``images [B, 3, H, W]`` resized to ``[B, 3, round(H/p)*p, round(W/p)*p]`` (bilinear,
    antialiased, as MegaLoc does it) when a side is not a multiple of ``p``; else unchanged."""
    height, width = int(images.shape[-2]), int(images.shape[-1])
    target = (max(patch_size, round(height / patch_size) * patch_size), max(patch_size, round(width / patch_size) * patch_size))
    if target == (height, width):
        return images
    return F.interpolate(images, size=target, mode="bilinear", align_corners=False, antialias=True)


class ViTBackbone(Backbone):
    """A ViT backbone that, with ``resize_to_patch_multiple``, takes images of any size and
    resizes them to the nearest multiples of its patch size itself (:func:`snap_to_patch_grid`)."""

    resize_to_patch_multiple: bool = False

    def check_image_size(self, height: int, width: int) -> None:
        """Any positive size when resizing to the patch grid; else multiples of the patch size."""
        if not self.resize_to_patch_multiple:
            return super().check_image_size(height, width)
        if height < 1 or width < 1:
            raise ValueError(f"image size {height}x{width}: both sides must be positive")

    def snap(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` on the patch grid when this backbone resizes them; else unchanged."""
        return snap_to_patch_grid(images, self.patch_size) if self.resize_to_patch_multiple else images


def rename_keys(state_dict: dict[str, Any], prefix: str, mapping: dict[str, str]) -> None:
    """Rename, in place, the keys under ``prefix`` that contain a key of ``mapping``."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        for old, new in mapping.items():
            if old in key:
                state_dict[key.replace(old, new)] = state_dict.pop(key)
                break


def run_blocks(blocks: Sequence[nn.Module], tokens: torch.Tensor, num_trainable: int, **kwargs: Any) -> torch.Tensor:
    """``tokens [B, N, C]`` through ``blocks``: the leading frozen ones without gradients (nothing
    upstream of the trainable blocks needs them), then the last ``num_trainable``. ``kwargs`` go to
    every block (DINOv3's RoPE table)."""
    frozen = len(blocks) - num_trainable
    with torch.no_grad():
        for block in blocks[:frozen]:
            tokens = block(tokens, **kwargs)
    tokens = tokens.detach()
    for block in blocks[frozen:]:
        tokens = block(tokens, **kwargs)
    return tokens


def tokens_to_output(
    tokens: torch.Tensor, num_prefix_tokens: int, grid: tuple[int, int], return_token: bool
) -> BackboneOutput:
    """Split a ViT's final tokens into the contract's output.

    Args:
        tokens: ``[B, P + h*w, C]``: the class token, the other ``P - 1`` prefix tokens
            (registers), then the patch tokens in row-major order.
        num_prefix_tokens: ``P``.
        grid: ``(h, w)``, the patch grid.
        return_token: return the class token (else ``token`` is ``None``).

    Returns:
        ``feature_map [B, C, h, w]`` (the prefix tokens left out) and ``token [B, C]``.
    """
    patches = tokens[:, num_prefix_tokens:]
    features = patches.reshape(tokens.shape[0], grid[0], grid[1], -1).permute(0, 3, 1, 2)
    return BackboneOutput(features, tokens[:, 0] if return_token else None)


def register_vit_family(backbone_class: Callable[..., Backbone], names: Iterable[str], family: str) -> None:
    """Register each of ``names`` as ``backbone_class(name, ...)``, whose other arguments are
    those of :class:`~models.backbones.dinov2.DINOv2` (the builders list them, so a checkpoint
    records their defaults)."""
    for name in names:
        BACKBONES.register(name)(_vit_builder(backbone_class, name, family))


def _vit_builder(backbone_class: Callable[..., Backbone], name: str, family: str) -> Callable[..., Backbone]:
    def build(
        num_trainable_blocks: int = 4,
        norm_layer: bool = True,
        return_token: bool = True,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        resize_to_patch_multiple: bool = False,
    ) -> Backbone:
        return backbone_class(
            name, num_trainable_blocks, norm_layer, return_token, pretrained, pretrained_path,
            resize_to_patch_multiple=resize_to_patch_multiple,
        )

    build.__name__ = name
    build.__doc__ = f"{family} backbone {name} (see :class:`{backbone_class.__name__}` for the arguments)."
    return build
