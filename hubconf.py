"""torch.hub entries: the released DINOv2 SALAD models and the released models of other authors (BoQ,
MegaLoc, CliqueMining, CosPlace, EigenPlaces, MixVPR); see the README for the repository string.

A thin layer over ``models.loading.load_network``: importing it needs only torch, torchvision and timm. Every entry
takes ``ckpt_path`` to load a local file (or one at an ``http(s)://`` or ``file://`` URL: downloaded,
then checked like a local file) instead of downloading the release, and ``verify=False`` to skip the
SHA-256 check of a file named as the release.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

dependencies = ["torch", "torchvision", "timm"]

from models.loading import load_network  # noqa: E402
from models.released import cosplace_release_name, released_model  # noqa: E402
from models.vpr_net import VPRNet  # noqa: E402


def _released(name: str, pretrained: bool, ckpt_path: str | None, verify: bool, architecture: Any = None) -> VPRNet:
    """Release ``name``: ``ckpt_path`` (a local copy of its file in the authors' layout, or a checkpoint of
    this project, whose own architecture is built) or, with ``pretrained``, its download."""
    return load_network(ckpt_path, release=name, architecture=architecture, pretrained=pretrained, verify=verify).network


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
    architecture = None
    if backbone_arch is not None or backbone_config is not None or agg_config is not None:
        architecture = released_model("dinov2_salad").architecture
        architecture = replace(architecture, backbone_arch=backbone_arch or architecture.backbone_arch)
        architecture = architecture.with_configs(backbone_config or {}, agg_config or {})
    return _released("dinov2_salad", pretrained, ckpt_path, verify, architecture)


def dinov2_salad_512_32(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """DINOv2 SALAD, 544-d descriptors (16 clusters x 32 + 32). Its weights are published only
    for download by hand: pass the file as ``ckpt_path``."""
    return _released("dinov2_salad_512_32", pretrained, ckpt_path, verify)


def dinov2_salad_2048_64(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """DINOv2 SALAD, 2112-d descriptors (32 clusters x 64 + 64). Its weights are published only
    for download by hand: pass the file as ``ckpt_path``."""
    return _released("dinov2_salad_2048_64", pretrained, ckpt_path, verify)


def dinov2_boq(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """BoQ on DINOv2 ViT-B/14 (Ali-bey et al., CVPR 2024), 12288-d descriptors, evaluated at
    322 x 322. ``pretrained`` downloads the authors' ``dinov2_12288.pth`` through torch.hub's cache;
    ``ckpt_path`` loads a local copy of it (or a fine-tune saved by this project)."""
    return _released("dinov2_boq", pretrained, ckpt_path, verify)


def resnet50_boq(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """BoQ on ResNet-50 cropped after layer3, 16384-d descriptors, evaluated at 384 x 384.
    ``pretrained`` downloads the authors' ``resnet50_16384.pth``; ``ckpt_path`` loads a local copy."""
    return _released("resnet50_boq", pretrained, ckpt_path, verify)


def megaloc(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """MegaLoc (Berton & Masone), 8448-d descriptors; images of any size (sides rounded to multiples of
    14 inside the model). ``pretrained`` downloads the authors' ``model.safetensors``; ``ckpt_path``
    loads a local copy of it, or of the earlier ``megaloc.torch``."""
    return _released("megaloc", pretrained, ckpt_path, verify)


def cliquemining(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """CliqueMining (Izquierdo & Civera, ECCV 2024): DINOv2 SALAD's network, 8448-d, evaluated at
    322 x 322. ``pretrained`` downloads CliqueMining's own checkpoint (not SALAD's); ``ckpt_path`` loads a
    local copy of it."""
    return _released("cliquemining", pretrained, ckpt_path, verify)


def cosplace(
    backbone: str = "ResNet50", fc_output_dim: int = 2048, pretrained: bool = True, ckpt_path: str | None = None,
    verify: bool = True,
) -> VPRNet:
    """CosPlace (Berton et al., CVPR 2022) with the authors' arguments: ``backbone`` VGG16, ResNet18,
    ResNet50, ResNet101 or ResNet152 and a released ``fc_output_dim``; evaluated at full resolution.
    ``ckpt_path`` loads a local copy of their ``<backbone>_<dim>_cosplace.pth``."""
    return _released(cosplace_release_name("cosplace", backbone, fc_output_dim), pretrained, ckpt_path, verify)


def eigenplaces(
    backbone: str = "ResNet50", fc_output_dim: int = 2048, pretrained: bool = True, ckpt_path: str | None = None,
    verify: bool = True,
) -> VPRNet:
    """EigenPlaces (Berton et al., ICCV 2023) with the authors' arguments: ``backbone`` VGG16, ResNet18,
    ResNet50 or ResNet101 and a released ``fc_output_dim``; evaluated at full resolution. ``ckpt_path``
    loads a local copy of their ``<backbone>_<dim>_eigenplaces.pth``."""
    return _released(cosplace_release_name("eigenplaces", backbone, fc_output_dim), pretrained, ckpt_path, verify)


def mixvpr(pretrained: bool = True, ckpt_path: str | None = None, verify: bool = True) -> VPRNet:
    """MixVPR (Ali-bey et al., WACV 2023), ResNet-50 4096-d, at 320 x 320 only. ``pretrained`` downloads
    the authors' checkpoint; ``ckpt_path`` loads a local copy of it."""
    return _released("mixvpr_resnet50_4096", pretrained, ckpt_path, verify)
