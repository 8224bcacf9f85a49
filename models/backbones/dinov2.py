"""DINOv2 ViT backbones (S/14, B/14, L/14, g/14 and their 4-register variants) on timm.

timm provides the patch embedding, the transformer blocks (attention through PyTorch's
``scaled_dot_product_attention``) and the final norm. The tokens in front of them are prepared
here exactly as the DINOv2 code does, because that is what the released SALAD weights were
trained with: the class token is prepended, position embeddings are resized from the 518-px
table (37 x 37) with bicubic interpolation, no antialiasing and DINOv2's scale factor
``(side / 14 + 0.1) / 37`` on every forward, and register tokens (if any) are inserted after the
class token without a position embedding.

The module's state dict uses the official DINOv2 layout under ``model.``: ``cls_token``,
``pos_embed``, ``mask_token``, ``register_tokens``, ``patch_embed.*``, ``blocks.<i>.*``,
``norm.*`` (ViT-g's SwiGLU weights as ``mlp.w12`` / ``mlp.w3``), so both the official
``dinov2_vit*14_pretrain.pth`` files and the released SALAD checkpoints load strictly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike
from typing import Any

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.backbones.vit import ViTBackbone, register_vit_family, rename_keys, run_blocks, tokens_to_output
from models.contract import BackboneOutput, building_on_meta_device
from models.pretrained import fetch_state_dict

PATCH_SIZE = 14
# DINOv2 was trained at 518 px: its position-embedding table holds 37 x 37 patches.
PRETRAIN_IMAGE_SIZE = 518
# DINOv2 resizes the table with scale factor (n + offset) / 37 rather than to an exact size.
POS_EMBED_INTERPOLATE_OFFSET = 0.1


@dataclass(frozen=True)
class DinoV2Arch:
    """Architecture of one DINOv2 model: the timm builder and the number of register tokens."""

    timm_name: str
    embed_dim: int
    num_register_tokens: int = 0
    swiglu: bool = False


DINOV2_ARCHS: dict[str, DinoV2Arch] = {
    "dinov2_vits14": DinoV2Arch("vit_small_patch14_dinov2", 384),
    "dinov2_vitb14": DinoV2Arch("vit_base_patch14_dinov2", 768),
    "dinov2_vitl14": DinoV2Arch("vit_large_patch14_dinov2", 1024),
    "dinov2_vitg14": DinoV2Arch("vit_giant_patch14_dinov2", 1536, swiglu=True),
    "dinov2_vits14_reg": DinoV2Arch("vit_small_patch14_dinov2", 384, num_register_tokens=4),
    "dinov2_vitb14_reg": DinoV2Arch("vit_base_patch14_dinov2", 768, num_register_tokens=4),
    "dinov2_vitl14_reg": DinoV2Arch("vit_large_patch14_dinov2", 1024, num_register_tokens=4),
    "dinov2_vitg14_reg": DinoV2Arch("vit_giant_patch14_dinov2", 1536, num_register_tokens=4, swiglu=True),
}


def official_weights_url(name: str) -> str:
    """URL of the official DINOv2 pretraining checkpoint of backbone ``name``."""
    base = name.removesuffix("_reg")
    suffix = "_reg4" if name.endswith("_reg") else ""
    return f"https://dl.fbaipublicfiles.com/dinov2/{base}/{base}{suffix}_pretrain.pth"


# timm packs ViT-g's SwiGLU into fc1/fc2; the official checkpoints call them w12/w3.
_SWIGLU_OFFICIAL_TO_TIMM = {".mlp.w12.": ".mlp.fc1.", ".mlp.w3.": ".mlp.fc2."}


def resize_dinov2_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Resize DINOv2's position embeddings to a ``grid_h x grid_w`` patch grid, as DINOv2 does.

    Args:
        pos_embed: ``[1, 1 + M*M, C]``, the class token's embedding then the ``M x M`` table.
        grid_h, grid_w: the patch grid of the input, ``H/14`` and ``W/14``.

    Returns:
        ``[1, 1 + grid_h*grid_w, C]`` in the dtype of ``pos_embed``.
    """
    num_table = pos_embed.shape[1] - 1
    side = int(math.sqrt(num_table))
    if side * side != num_table:
        raise ValueError(f"position-embedding table of {num_table} entries is not square")
    if grid_h == grid_w == side:
        return pos_embed
    dim = pos_embed.shape[-1]
    class_embed, table = pos_embed[:, :1], pos_embed[:, 1:].float()
    table = table.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    scale = (
        (grid_h + POS_EMBED_INTERPOLATE_OFFSET) / side,
        (grid_w + POS_EMBED_INTERPOLATE_OFFSET) / side,
    )
    table = F.interpolate(table, scale_factor=scale, mode="bicubic", antialias=False)
    if table.shape[-2:] != (grid_h, grid_w):
        raise RuntimeError(f"resized position table is {tuple(table.shape[-2:])}, expected {(grid_h, grid_w)}")
    table = table.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim).to(pos_embed.dtype)
    return torch.cat((class_embed, table), dim=1)


class DINOv2(ViTBackbone):
    """DINOv2 ViT with its first blocks frozen, returning a patch feature map and the class token.

    Args:
        model_name: one of ``DINOV2_ARCHS`` (e.g. ``"dinov2_vitb14"``, ``"dinov2_vitb14_reg"``).
        num_trainable_blocks: the last N blocks train; the others (and the embeddings) are frozen
            and run without gradients.
        norm_layer: apply the final LayerNorm to the tokens.
        return_token: return the class token with the feature map (``False``: ``token`` is
            ``None``, and an aggregator that uses one falls back on the map).
        pretrained: load the official DINOv2 weights (downloaded through torch.hub's cache).
        pretrained_path: a local official ``dinov2_vit*14[_reg4]_pretrain.pth`` file to load
            instead of downloading (implies ``pretrained``).
        resize_to_patch_multiple: take images of any size, resized to the nearest multiples of
            14 first (bilinear, antialiased; MegaLoc's rule), instead of refusing them.

    Shapes:
        input ``[B, 3, H, W]`` with H and W multiples of 14; output ``BackboneOutput`` with
        ``feature_map [B, C, H/14, W/14]`` and ``token [B, C]``.
    """

    def __init__(
        self,
        model_name: str = "dinov2_vitb14",
        num_trainable_blocks: int = 4,
        norm_layer: bool = True,
        return_token: bool = True,
        pretrained: bool = False,
        pretrained_path: str | PathLike[str] | None = None,
        resize_to_patch_multiple: bool = False,
    ) -> None:
        super().__init__()
        self.resize_to_patch_multiple = resize_to_patch_multiple
        if model_name not in DINOV2_ARCHS:
            raise ValueError(f"unknown DINOv2 model {model_name!r}; known: {', '.join(DINOV2_ARCHS)}")
        arch = DINOV2_ARCHS[model_name]
        self.model_name = model_name
        self.model = timm.create_model(
            arch.timm_name,
            pretrained=False,
            img_size=PRETRAIN_IMAGE_SIZE,
            num_classes=0,
            global_pool="",
            dynamic_img_size=True,
            # On the meta device (shapes only, e.g. to load a checkpoint into) there is nothing to initialise.
            weight_init="skip" if building_on_meta_device() else "",
        )
        depth = len(self.model.blocks)
        if not 0 <= num_trainable_blocks <= depth:
            raise ValueError(f"num_trainable_blocks={num_trainable_blocks} must be in [0, {depth}] for {model_name}")
        # Parts of the official layout that timm's model lacks. The mask token is used only by
        # DINOv2's own pretraining; it is kept so the official state dicts load strictly.
        self.model.mask_token = nn.Parameter(torch.zeros(1, arch.embed_dim))
        self.num_register_tokens = arch.num_register_tokens
        if self.num_register_tokens:
            self.model.register_tokens = nn.Parameter(torch.zeros(1, self.num_register_tokens, arch.embed_dim))
        if arch.swiglu:
            self._register_swiglu_key_hooks()

        self.num_trainable_blocks = num_trainable_blocks
        self.norm_layer = norm_layer
        self.return_token = return_token
        self.out_channels = arch.embed_dim
        self.patch_size = PATCH_SIZE

        if pretrained or pretrained_path is not None:
            state_dict = fetch_state_dict(official_weights_url(model_name), pretrained_path, f"{model_name} weights")
            self.model.load_state_dict(state_dict, strict=True)
        self._freeze_leading_parts()

    def pretrained_weights_hint(self) -> str:
        """The official DINOv2 file: downloaded, or a local copy."""
        file_name = official_weights_url(self.model_name).rsplit("/", 1)[-1]
        return (
            f"""DINOv2's weights: --model.backbone_config '{{"pretrained": true}}' downloads {file_name} """
            f"""(or "pretrained_path": a local copy of it)"""
        )

    def _register_swiglu_key_hooks(self) -> None:
        def to_official(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
            rename_keys(state_dict, prefix, {v: k for k, v in _SWIGLU_OFFICIAL_TO_TIMM.items()})

        def from_official(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
            rename_keys(state_dict, prefix, _SWIGLU_OFFICIAL_TO_TIMM)

        self.model._register_state_dict_hook(to_official)
        self.model._register_load_state_dict_pre_hook(from_official)

    def _freeze_leading_parts(self) -> None:
        """Turn off gradients for everything that runs before the trainable blocks."""
        frozen_blocks = len(self.model.blocks) - self.num_trainable_blocks
        frozen: list[nn.Module | nn.Parameter] = [self.model.patch_embed, *self.model.blocks[:frozen_blocks]]
        frozen += [self.model.cls_token, self.model.pos_embed, self.model.mask_token]
        if self.num_register_tokens:
            frozen.append(self.model.register_tokens)
        for part in frozen:
            part.requires_grad_(False)

    def prepare_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Patch-embed ``images [B, 3, H, W]`` into tokens ``[B, 1 + R + H*W/196, C]``."""
        batch, _, height, width = images.shape
        self.check_image_size(int(height), int(width))
        patches = self.model.patch_embed(images).flatten(1, 2)  # [B, H/14 * W/14, C]
        tokens = torch.cat((self.model.cls_token.expand(batch, -1, -1), patches), dim=1)
        # int(): under tracing (ONNX export) shapes are tensors; the grid is fixed per export.
        grid_h, grid_w = int(height) // PATCH_SIZE, int(width) // PATCH_SIZE
        tokens = tokens + resize_dinov2_pos_embed(self.model.pos_embed, grid_h, grid_w)
        if self.num_register_tokens:
            registers = self.model.register_tokens.expand(batch, -1, -1)
            tokens = torch.cat((tokens[:, :1], registers, tokens[:, 1:]), dim=1)
        return tokens

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """``images [B, 3, H, W]`` -> feature map ``[B, C, H/14, W/14]`` and token ``[B, C]``
        (H and W rounded to multiples of 14 first with ``resize_to_patch_multiple``)."""
        images = self.snap(images)
        _, _, height, width = images.shape
        tokens = run_blocks(self.model.blocks, self.prepare_tokens(images), self.num_trainable_blocks)
        if self.norm_layer:
            tokens = self.model.norm(tokens)

        grid = (height // PATCH_SIZE, width // PATCH_SIZE)
        return tokens_to_output(tokens, 1 + self.num_register_tokens, grid, self.return_token)


register_vit_family(DINOv2, DINOV2_ARCHS, "DINOv2")
