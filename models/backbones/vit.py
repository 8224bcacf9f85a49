"""The ViT backbones' base (DINOv2, DINOv3) and the pieces they share: state-dict key renaming,
running the frozen and the trainable blocks, the split of the final tokens into the contract's
output, and the registration of a family's sizes."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from os import PathLike
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.contract import Backbone, BackboneOutput
from models.registry import BACKBONES
from utils.errors import UserError


def snap_to_patch_grid(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``images [B, 3, H, W]`` resized to ``[B, 3, round(H/p)*p, round(W/p)*p]`` (bilinear,
    antialiased, as MegaLoc does it) when a side is not a multiple of ``p``; else unchanged."""
    height, width = int(images.shape[-2]), int(images.shape[-1])
    target = (max(patch_size, round(height / patch_size) * patch_size), max(patch_size, round(width / patch_size) * patch_size))
    if target == (height, width):
        return images
    return F.interpolate(images, size=target, mode="bilinear", align_corners=False, antialias=True)


@dataclass(frozen=True)
class ViTOptions:
    """A ViT backbone's options (see :class:`ViTBackbone`); the defaults are the published DINOv2
    SALAD ones: the last 4 blocks fine-tuned, the final norm applied, the class token returned."""

    num_trainable_blocks: int = 4
    norm_layer: bool = True
    return_token: bool = True

    def as_config(self) -> dict[str, object]:
        """The options as a backbone config (``num_trainable_blocks``, ``norm_layer``, ``return_token``)."""
        return asdict(self)


#: The published options, the defaults of every registered ViT backbone.
PUBLISHED_VIT_OPTIONS = ViTOptions()


class ViTBackbone(Backbone):
    """A DINO ViT on timm with its first blocks frozen, returning the patch feature map and the
    class token. A family (DINOv2, DINOv3) sets the class attributes and says how its timm model is
    built, how its pretrained weights load, which embeddings freeze and how tokens are prepared.

    Args:
        model_name: one of the family's ``archs`` (e.g. ``"dinov2_vitb14"``).
        num_trainable_blocks: the last N blocks train; the others (and the embeddings) are frozen
            and run without gradients.
        norm_layer: apply the final LayerNorm to the tokens.
        return_token: return the class token with the feature map (``False``: ``token`` is
            ``None``, and an aggregator that uses one falls back on the map).
        pretrained: load the family's official pretrained weights.
        pretrained_path: a local official pretraining file to load (implies ``pretrained``).
        resize_to_patch_multiple: take images of any size, resized to the nearest multiples of the
            patch size first (bilinear, antialiased; MegaLoc's rule), instead of refusing them.

    Shapes:
        input ``[B, 3, H, W]`` with H and W multiples of ``patch_size``; output ``BackboneOutput``
        with ``feature_map [B, C, H/p, W/p]`` (the patch tokens; the prefix tokens left out) and
        ``token [B, C]``.
    """

    family: ClassVar[str]
    """The family's name in messages (``"DINOv2"``)."""
    archs: ClassVar[Mapping[str, Any]]
    """Model name -> the family's description of that model."""
    family_patch_size: ClassVar[int]
    """Input pixels per patch."""

    def __init__(
        self,
        model_name: str,
        num_trainable_blocks: int = PUBLISHED_VIT_OPTIONS.num_trainable_blocks,
        norm_layer: bool = PUBLISHED_VIT_OPTIONS.norm_layer,
        return_token: bool = PUBLISHED_VIT_OPTIONS.return_token,
        pretrained: bool = False,
        pretrained_path: str | PathLike[str] | None = None,
        resize_to_patch_multiple: bool = False,
    ) -> None:
        super().__init__()
        self.resize_to_patch_multiple = resize_to_patch_multiple
        if model_name not in self.archs:
            raise UserError(f"unknown {self.family} model {model_name!r}; known: {', '.join(self.archs)}")
        self.model_name = model_name
        self.check_weight_source(pretrained, pretrained_path)
        self.model = self.create_model(self.archs[model_name], pretrained_path)
        depth = len(self.model.blocks)
        if not 0 <= num_trainable_blocks <= depth:
            raise UserError(f"num_trainable_blocks={num_trainable_blocks} must be in [0, {depth}] for {model_name}")
        self.num_trainable_blocks = num_trainable_blocks
        self.norm_layer = norm_layer
        self.return_token = return_token
        self.out_channels: int = self.model.embed_dim
        self.patch_size: int = self.family_patch_size
        if pretrained or pretrained_path is not None:
            self.load_pretrained(pretrained_path)
        self._freeze_leading_parts()

    def check_weight_source(self, pretrained: bool, pretrained_path: str | PathLike[str] | None) -> None:
        """Refuse, before anything is built, weights that cannot be had (every source is fine here)."""

    @abstractmethod
    def create_model(self, arch: Any, pretrained_path: str | PathLike[str] | None) -> nn.Module:
        """The family's timm model for ``arch``, in the official state-dict layout."""

    @abstractmethod
    def load_pretrained(self, pretrained_path: str | PathLike[str] | None) -> None:
        """Load the official weights (from ``pretrained_path`` when given) into ``self.model``."""

    @abstractmethod
    def frozen_embeddings(self) -> list[nn.Parameter]:
        """The learned tokens and embeddings in front of the blocks (frozen with them)."""

    @property
    @abstractmethod
    def num_prefix_tokens(self) -> int:
        """``P``: the class token and the other tokens in front of the patch tokens."""

    @abstractmethod
    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, 3, H, W]`` -> tokens ``[B, P + H/p * W/p, C]`` through every block, after
        the final norm if ``norm_layer``."""

    def _freeze_leading_parts(self) -> None:
        """Turn off gradients for everything that runs before the trainable blocks."""
        frozen_blocks = len(self.model.blocks) - self.num_trainable_blocks
        frozen: list[nn.Module | nn.Parameter] = [self.model.patch_embed, *self.model.blocks[:frozen_blocks]]
        for part in [*frozen, *self.frozen_embeddings()]:
            part.requires_grad_(False)

    def check_image_size(self, height: int, width: int) -> None:
        """Any positive size when resizing to the patch grid; else multiples of the patch size."""
        if not self.resize_to_patch_multiple:
            return super().check_image_size(height, width)
        if height < 1 or width < 1:
            raise UserError(f"image_size={[height, width]}: both sides must be positive")

    def snap(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` on the patch grid when this backbone resizes them; else unchanged."""
        return snap_to_patch_grid(images, self.patch_size) if self.resize_to_patch_multiple else images

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """``images [B, 3, H, W]`` -> feature map ``[B, C, H/p, W/p]`` and token ``[B, C]`` (H and W
        rounded to multiples of ``p`` first with ``resize_to_patch_multiple``)."""
        images = self.snap(images)
        _, _, height, width = images.shape
        grid = (height // self.patch_size, width // self.patch_size)
        return tokens_to_output(self.forward_tokens(images), self.num_prefix_tokens, grid, self.return_token)


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


def register_vit_family(backbone_class: type[ViTBackbone]) -> None:
    """Register each model of ``backbone_class.archs`` as ``backbone_class(name, ...)`` (the
    builders list its arguments, so a checkpoint records their defaults)."""
    for name in backbone_class.archs:
        BACKBONES.register(name)(_vit_builder(backbone_class, name))


def _vit_builder(backbone_class: type[ViTBackbone], name: str) -> Callable[..., Backbone]:
    def build(
        num_trainable_blocks: int = PUBLISHED_VIT_OPTIONS.num_trainable_blocks,
        norm_layer: bool = PUBLISHED_VIT_OPTIONS.norm_layer,
        return_token: bool = PUBLISHED_VIT_OPTIONS.return_token,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        resize_to_patch_multiple: bool = False,
    ) -> Backbone:
        return backbone_class(
            name, num_trainable_blocks, norm_layer, return_token, pretrained, pretrained_path,
            resize_to_patch_multiple=resize_to_patch_multiple,
        )

    build.__name__ = name
    build.__doc__ = f"{backbone_class.family} backbone {name} (see :class:`{backbone_class.__name__}` for the arguments)."
    return build
