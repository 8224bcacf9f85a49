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


def dinov2_salad(
    backbone: str | None = None,
    pretrained: bool = True,
    backbone_args: dict[str, Any] | None = None,
    agg_args: dict[str, Any] | None = None,
    ckpt_path: str | None = None,
    verify: bool = True,
) -> VPRNet:
    """DINOv2 SALAD, 8448-d descriptors (64 clusters x 128 + 256). ``pretrained`` downloads
    the released ``dino_salad.ckpt`` through torch.hub's cache; ``ckpt_path`` loads a local file.
    ``backbone``, ``backbone_args`` and ``agg_args`` change the architecture (for a fine-tune of
    another shape, loaded with ``ckpt_path``). ``verify=False`` skips the SHA-256 check of a file
    named as the release (a fine-tune of one's own)."""
    architecture = released_model("dinov2_salad").architecture
    architecture = replace(architecture, backbone_arch=backbone or architecture.backbone_arch)
    if backbone_args is not None:
        architecture = replace(architecture, backbone_config=dict(backbone_args))
    if agg_args is not None:
        architecture = replace(architecture, agg_config=dict(agg_args))
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
