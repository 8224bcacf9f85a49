"""DINOv3 ViT backbones (S/16, S+/16, B/16, L/16, H+/16) on timm.

timm's ``vit_*_patch16_dinov3_qkvb`` models (``timm.models.eva.Eva``) provide the patch embedding,
the transformer blocks and the final norm: LayerNorm with eps 1e-5, LayerScale, a GELU MLP (a
SwiGLU one for S+ and H+), and rotary position embeddings (RoPE, base 100) applied to the patch
tokens of q and k only. Only the ``_qkvb`` variants are DINOv3 (the plain ones drop the q and v
biases). The tokens in front of the blocks are prepared here as DINOv3 does:
``[class, 4 storage, patches]`` with no absolute position embedding, and the RoPE table of the
image's patch grid (patch centres normalised per axis to [-1, 1]).

The module's state dict is the official layout of facebookresearch/dinov3's released ``.pth``
files under ``model.`` (188 entries for ViT-S/B), so those files load strictly and a checkpoint
trained here holds an official backbone. Two parts are the official code's own rather than
timm's, so that the file's tensors are used as the official code uses them:

- the qkv projection (:class:`MaskedBiasQKV`): ``qkv.bias`` ``[3C]`` times the file's
  ``qkv.bias_mask`` (1 on the q and v thirds, 0 on the k third) where timm keeps separate q and v
  biases and a k bias fixed at 0;
- the RoPE periods (:class:`DinoV3RoPE`): a persistent buffer. The official code uses the
  ``rope_embed.periods`` stored in the file (the released files reportedly hold them rounded to
  bfloat16), not the float32 formula timm recomputes; here too the file's values replace the
  formula, stay float32 (``.half()`` does not touch them) and are saved with every checkpoint.

The other differences are names, converted by state-dict hooks: ``storage_tokens`` (timm's
``reg_token``), ``blocks.N.ls1.gamma``/``ls2.gamma`` (``gamma_1``/``gamma_2``), SwiGLU's
``mlp.w1``/``w2``/``w3`` (``mlp.fc1_g``/``fc1_x``/``fc2``), ``rope_embed.periods``
(``rope.periods``). ``mask_token`` (used only in DINOv3's pretraining) is kept so the official
files load strictly; the SAT-493M ViT-L file's ``local_cls_norm`` (used only for local crops in
pretraining) is dropped on load.

In eval mode the outputs are the official code's (``tests/test_dinov3.py``). In training mode one
thing differs from the official hub models, as in timm: their RoPE coordinate rescaling
(``rescale_coords=2``, a pretraining augmentation that stays on whenever the module trains) is not
applied, so the trainable blocks see the same positions in training and evaluation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers.pos_embed_sincos import RotaryEmbeddingDinoV3

from models.backbones.vit import ViTBackbone, register_vit_family, rename_keys, run_blocks, tokens_to_output
from models.contract import BackboneOutput
from models.pretrained import check_published_file, read_state_dict

PATCH_SIZE = 16
NUM_STORAGE_TOKENS = 4
ROPE_BASE = 100.0
#: Where Meta hands out the official weights, after a license form (signed, expiring URLs).
WEIGHTS_ACCESS_PAGE = "https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/"


@dataclass(frozen=True)
class DinoV3Arch:
    """One DINOv3 model: its timm builder, the official pretraining file, and its MLP kind."""

    timm_name: str
    official_file: str
    swiglu: bool = False


DINOV3_ARCHS: dict[str, DinoV3Arch] = {
    "dinov3_vits16": DinoV3Arch("vit_small_patch16_dinov3_qkvb", "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"),
    "dinov3_vits16plus": DinoV3Arch(
        "vit_small_plus_patch16_dinov3_qkvb", "dinov3_vits16plus_pretrain_lvd1689m-4057cbaa.pth", swiglu=True
    ),
    "dinov3_vitb16": DinoV3Arch("vit_base_patch16_dinov3_qkvb", "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth"),
    "dinov3_vitl16": DinoV3Arch("vit_large_patch16_dinov3_qkvb", "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth"),
    "dinov3_vith16plus": DinoV3Arch(
        "vit_huge_plus_patch16_dinov3_qkvb", "dinov3_vith16plus_pretrain_lvd1689m-7c1da9a5.pth", swiglu=True
    ),
}

# Official name -> timm name, for the parameters whose timm name differs.
_OFFICIAL_TO_TIMM = {
    "storage_tokens": "reg_token",
    "rope_embed.periods": "rope.periods",
    ".ls1.gamma": ".gamma_1",
    ".ls2.gamma": ".gamma_2",
}
_SWIGLU_OFFICIAL_TO_TIMM = {".mlp.w1.": ".mlp.fc1_g.", ".mlp.w2.": ".mlp.fc1_x.", ".mlp.w3.": ".mlp.fc2."}
#: Parts of some official files that no forward pass uses (SAT-493M ViT-L: local-crop norm).
_UNUSED_OFFICIAL_PREFIXES = ("local_cls_norm.",)


def official_to_timm(state_dict: dict[str, Any], prefix: str, swiglu: bool) -> None:
    """Rename, in place, the official DINOv3 keys under ``prefix`` to timm's (dropping the
    unused ones)."""
    for key in [k for k in state_dict if k.startswith(tuple(prefix + p for p in _UNUSED_OFFICIAL_PREFIXES))]:
        del state_dict[key]
    rename_keys(state_dict, prefix, _OFFICIAL_TO_TIMM)
    if swiglu:
        rename_keys(state_dict, prefix, _SWIGLU_OFFICIAL_TO_TIMM)


def timm_to_official(state_dict: dict[str, Any], prefix: str, swiglu: bool) -> None:
    """Rename, in place, timm's keys under ``prefix`` to the official DINOv3 layout."""
    rename_keys(state_dict, prefix, {v: k for k, v in _OFFICIAL_TO_TIMM.items()})
    if swiglu:
        rename_keys(state_dict, prefix, {v: k for k, v in _SWIGLU_OFFICIAL_TO_TIMM.items()})


class MaskedBiasQKV(nn.Module):
    """DINOv3's qkv projection ``[..., C] -> [..., 3C]``: ``x W^T + bias * bias_mask``.

    ``bias_mask`` ``[3C]`` is a buffer of the official files (1 on the q and v thirds, 0 on the
    k third: DINOv3's blocks have no key bias) and is used as the official code uses it.

    Args:
        weight: the ``[3C, C]`` projection weight (timm's, taken over).
        bias: the ``[3C]`` bias (timm's q, k and v biases, concatenated).
    """

    def __init__(self, weight: nn.Parameter, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight
        self.bias = nn.Parameter(bias.detach().clone())
        third = bias.numel() // 3
        ones = torch.ones(third, device=bias.device)
        self.register_buffer("bias_mask", torch.cat((ones, torch.zeros_like(ones), ones)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., C]`` -> ``[..., 3C]``."""
        return F.linear(x, self.weight, self.bias * self.bias_mask)


def use_masked_qkv_bias(attention: nn.Module) -> None:
    """Make timm's attention (q and v biases, a k bias fixed at 0) project with a
    :class:`MaskedBiasQKV`: the official parameters and buffer (``qkv.weight``, ``qkv.bias``,
    ``qkv.bias_mask``), the same values."""
    bias = torch.cat((attention.q_bias, attention.k_bias, attention.v_bias))
    attention.qkv = MaskedBiasQKV(attention.qkv.weight, bias)
    attention.q_bias = attention.k_bias = attention.v_bias = None  # timm then calls attention.qkv(x)


class DinoV3RoPE(RotaryEmbeddingDinoV3):
    """timm's DINOv3 rotary embedding with ``periods`` ``[head_dim / 4]`` in the state dict.

    The periods start at DINOv3's formula ``100 ** (2i / (head_dim / 2))`` (float32); a loaded
    state dict replaces them. Casting the module to a lower precision keeps them in float32 with
    their values (timm would recompute the formula and drop them from the state dict).
    """

    def __init__(self, head_dim: int) -> None:
        super().__init__(dim=head_dim, temperature=ROPE_BASE, normalize_coords="separate", rotate_half=True)
        self._non_persistent_buffers_set.discard("periods")

    def _apply(self, fn: Any, recurse: bool = True) -> DinoV3RoPE:
        periods = self.periods
        nn.Module._apply(self, fn, recurse)
        if self.periods.dtype.is_floating_point and torch.finfo(self.periods.dtype).bits < 32:
            self.periods = periods.to(self.periods.device)
        return self


class DINOv3(ViTBackbone):
    """DINOv3 ViT with its first blocks frozen, returning the patch feature map and the class token.

    Args:
        model_name: one of ``DINOV3_ARCHS`` (e.g. ``"dinov3_vitb16"``).
        num_trainable_blocks: the last N blocks train; the others (and the embeddings) are frozen
            and run without gradients.
        norm_layer: apply the final LayerNorm to the tokens.
        return_token: return the class token with the feature map (``False``: ``token`` is
            ``None``, and an aggregator that uses one falls back on the map).
        pretrained: load the official weights; they cannot be downloaded here (Meta hands them
            out after a license form), so this needs ``pretrained_path``.
        pretrained_path: the official ``dinov3_vit*16*_pretrain_*.pth`` file (implies
            ``pretrained``).
        resize_to_patch_multiple: take images of any size, resized to the nearest multiples of
            16 first (bilinear, antialiased), instead of refusing them.

    Shapes:
        input ``[B, 3, H, W]`` with H and W multiples of 16; output ``BackboneOutput`` with
        ``feature_map [B, C, H/16, W/16]`` (the patch tokens; the storage tokens are left out) and
        ``token [B, C]``.
    """

    def __init__(
        self,
        model_name: str = "dinov3_vitb16",
        num_trainable_blocks: int = 4,
        norm_layer: bool = True,
        return_token: bool = True,
        pretrained: bool = False,
        pretrained_path: str | PathLike[str] | None = None,
        resize_to_patch_multiple: bool = False,
    ) -> None:
        super().__init__()
        self.resize_to_patch_multiple = resize_to_patch_multiple
        if model_name not in DINOV3_ARCHS:
            raise ValueError(f"unknown DINOv3 model {model_name!r}; known: {', '.join(DINOV3_ARCHS)}")
        arch = DINOV3_ARCHS[model_name]
        self.model_name = model_name
        self.official_file = arch.official_file
        if pretrained and pretrained_path is None:
            raise ValueError(f"{model_name}: pretrained=True needs pretrained_path; {self.pretrained_weights_hint()}")
        if pretrained_path is not None and not Path(pretrained_path).is_file():
            hint = self.pretrained_weights_hint()
            raise FileNotFoundError(f"pretrained_path {pretrained_path}: no such file; {hint}")
        # With a file to load, the model is built on the meta device and takes the file's tensors
        # (timm's random initialisation of a ViT-H+ takes tens of seconds, only to be overwritten).
        # Built on the meta device otherwise too (to load a checkpoint into), it costs nothing.
        with torch.device("meta") if pretrained_path is not None else contextlib.nullcontext():
            self.model = timm.create_model(arch.timm_name, pretrained=False, num_classes=0, global_pool="")
            embed_dim = self.model.embed_dim
            self.model.rope = DinoV3RoPE(embed_dim // self.model.blocks[0].attn.num_heads)
            self.model.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
            for block in self.model.blocks:
                use_masked_qkv_bias(block.attn)
        depth = len(self.model.blocks)
        if not 0 <= num_trainable_blocks <= depth:
            raise ValueError(f"num_trainable_blocks={num_trainable_blocks} must be in [0, {depth}] for {model_name}")
        self.model._register_state_dict_hook(
            lambda module, state_dict, prefix, local_metadata: timm_to_official(state_dict, prefix, arch.swiglu)
        )
        self.model._register_load_state_dict_pre_hook(
            lambda state_dict, prefix, *args: official_to_timm(state_dict, prefix, arch.swiglu)
        )

        self.num_trainable_blocks = num_trainable_blocks
        self.norm_layer = norm_layer
        self.return_token = return_token
        self.out_channels = embed_dim
        self.patch_size = PATCH_SIZE

        if pretrained_path is not None:
            self._load_official_file(Path(pretrained_path))
        self._freeze_leading_parts()

    def pretrained_weights_hint(self) -> str:
        """The official file: Meta hands it out after a license form, so it is passed as a local file."""
        return (
            f"DINOv3's weights come from Meta after a license form ({WEIGHTS_ACCESS_PAGE}), with no fixed URL "
            f"to download from: get {self.official_file} there and pass "
            f"""--model.backbone_config '{{"pretrained_path": "FILE"}}'"""
        )

    def _load_official_file(self, path: Path) -> None:
        """Give the model (built on the meta device) the tensors of an official DINOv3 ``.pth``
        file: its exact keys and shapes, in float32.

        Raises:
            ValueError: the file is not this model's official checkpoint (one line: a SHA-256 that
                is not the one its official name carries, or the first missing, unexpected or
                mis-shaped key).
        """
        check_published_file(path, self.official_file, None)  # its name carries the leading digits of its SHA-256
        state_dict = read_state_dict(path)
        expected = {key: tuple(value.shape) for key, value in self.model.state_dict().items()}
        used = [key for key in state_dict if not key.startswith(_UNUSED_OFFICIAL_PREFIXES)]
        found = {key: tuple(state_dict[key].shape) for key in used}
        problems = [f"missing {key}" for key in expected if key not in found]
        problems += [f"unexpected {key}" for key in found if key not in expected]
        problems += [
            f"{key} is {list(found[key])}, expected {list(shape)}"
            for key, shape in expected.items()
            if found.get(key, shape) != shape
        ]
        if problems:
            raise ValueError(
                f"pretrained_path {path} is not the official {self.model_name} checkpoint ({self.official_file}): "
                f"{len(problems)} problems, first: {problems[0]}"
            )
        state_dict = {key: value.float() if value.is_floating_point() else value for key, value in state_dict.items()}
        self.model.load_state_dict(state_dict, strict=True, assign=True)

    def _freeze_leading_parts(self) -> None:
        """Turn off gradients for everything that runs before the trainable blocks."""
        frozen_blocks = len(self.model.blocks) - self.num_trainable_blocks
        frozen: list[nn.Module | nn.Parameter] = [self.model.patch_embed, *self.model.blocks[:frozen_blocks]]
        frozen += [self.model.cls_token, self.model.reg_token, self.model.mask_token]
        for part in frozen:
            part.requires_grad_(False)

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, 3, H, W]`` -> tokens ``[B, 1 + 4 + H/16 * W/16, C]``: the class token, the 4
        storage tokens, then the patch tokens in row-major order; after the final norm if
        ``norm_layer``."""
        batch, _, height, width = images.shape
        self.check_image_size(int(height), int(width))
        # int(): under tracing (ONNX export) shapes are tensors; the grid is fixed per export.
        grid = (int(height) // PATCH_SIZE, int(width) // PATCH_SIZE)
        patches = self.model.patch_embed(images).flatten(1, 2)  # [B, H/16 * W/16, C]
        prefix = torch.cat((self.model.cls_token, self.model.reg_token), dim=1)  # [1, 1 + 4, C]
        tokens = torch.cat((prefix.expand(batch, -1, -1), patches), dim=1)
        rope = self.model.rope.get_embed(shape=grid)  # [H/16 * W/16, 2 * head_dim]: sin, cos
        tokens = run_blocks(self.model.blocks, tokens, self.num_trainable_blocks, rope=rope)
        return self.model.norm(tokens) if self.norm_layer else tokens

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """``images [B, 3, H, W]`` -> feature map ``[B, C, H/16, W/16]`` and token ``[B, C]``
        (H and W rounded to multiples of 16 first with ``resize_to_patch_multiple``)."""
        images = self.snap(images)
        _, _, height, width = images.shape
        grid = (height // PATCH_SIZE, width // PATCH_SIZE)
        return tokens_to_output(self.forward_tokens(images), 1 + NUM_STORAGE_TOKENS, grid, self.return_token)


register_vit_family(DINOv3, DINOV3_ARCHS, "DINOv3")
