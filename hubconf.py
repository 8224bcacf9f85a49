"""torch.hub entries: the released DINOv2 SALAD models and the BoQ authors' released models (see the
README for the repository string).

A thin layer over ``models.released``: importing it needs only torch, torchvision and timm. Every entry
takes ``ckpt_path`` to load a local file instead of downloading, and ``verify=False`` to skip the
SHA-256 check of a file named as the release.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

dependencies = ["torch", "torchvision", "timm"]

from models.released import build_released, released_model  # noqa: E402
from models.vpr_net import VPRNet  # noqa: E402


def _one_of(name: str, value: Any, old_name: str, old_value: Any) -> Any:
    """The value of an argument that also has an older name (``backbone_args`` for ``backbone_config``)."""
    if value is not None and old_value is not None:
        raise TypeError(f"give {name} or its older name {old_name}, not both")
    return value if value is not None else old_value


def dinov2_salad(
    backbone_arch: str | None = None,
    pretrained: bool = True,
    backbone_config: dict[str, Any] | None = None,
    agg_config: dict[str, Any] | None = None,
    ckpt_path: str | None = None,
    verify: bool = True,
    *,
    backbone: str | None = None,
    backbone_args: dict[str, Any] | None = None,
    agg_args: dict[str, Any] | None = None,
) -> VPRNet:
    """DINOv2 SALAD, 8448-d descriptors (64 clusters x 128 + 256). ``pretrained`` downloads
    the released ``dino_salad.ckpt`` through torch.hub's cache; ``ckpt_path`` loads a local file.
    ``backbone_arch``, ``backbone_config`` and ``agg_config`` change the architecture (for a fine-tune
    of another shape, loaded with ``ckpt_path``): the configs are merged over the released ones, as
    eval.py's flags of the same names are. ``verify=False`` skips the SHA-256 check of a file
    named as the release (a fine-tune of one's own). The older names ``backbone``,
    ``backbone_args`` and ``agg_args`` are accepted too."""
    backbone_arch = _one_of("backbone_arch", backbone_arch, "backbone", backbone)
    backbone_config = _one_of("backbone_config", backbone_config, "backbone_args", backbone_args)
    agg_config = _one_of("agg_config", agg_config, "agg_args", agg_args)
    architecture = released_model("dinov2_salad").architecture
    architecture = replace(architecture, backbone_arch=backbone_arch or architecture.backbone_arch)
    architecture = architecture.with_configs(backbone_config or {}, agg_config or {})
    return build_released("dinov2_salad", pretrained, ckpt_path, architecture, verify)


def dinov2_salad_512_32(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """DINOv2 SALAD, 544-d descriptors (16 clusters x 32 + 32). Its weights are published only
    for download by hand: pass the file as ``ckpt_path``."""
    return build_released("dinov2_salad_512_32", pretrained, ckpt_path, verify=verify)


def dinov2_salad_2048_64(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """DINOv2 SALAD, 2112-d descriptors (32 clusters x 64 + 64). Its weights are published only
    for download by hand: pass the file as ``ckpt_path``."""
    return build_released("dinov2_salad_2048_64", pretrained, ckpt_path, verify=verify)


def dinov2_boq(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """BoQ on DINOv2 ViT-B/14 (Ali-bey et al., CVPR 2024), 12288-d descriptors, evaluated at
    322 x 322. ``pretrained`` downloads the authors' ``dinov2_12288.pth`` through torch.hub's cache;
    ``ckpt_path`` loads a local copy of it (or a fine-tune saved by this project)."""
    return build_released("dinov2_boq", pretrained, ckpt_path, verify=verify)


def resnet50_boq(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """BoQ on ResNet-50 cropped after layer3, 16384-d descriptors, evaluated at 384 x 384.
    ``pretrained`` downloads the authors' ``resnet50_16384.pth``; ``ckpt_path`` loads a local copy."""
    return build_released("resnet50_boq", pretrained, ckpt_path, verify=verify)
