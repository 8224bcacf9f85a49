"""torch.hub entries: ``torch.hub.load("serizba/salad", "dinov2_salad")`` and the smaller variants.

A thin layer over the builders in ``models``: importing it needs only torch and timm.
Every entry takes ``ckpt_path`` to load a local file instead of downloading.
"""

from __future__ import annotations

from typing import Any

dependencies = ["torch", "timm"]

from models.backbones.dinov2 import DINOV2_ARCHS  # noqa: E402
from models.pretrained import fetch_state_dict  # noqa: E402
from models.released import RELEASED_MODELS  # noqa: E402
from models.vpr_net import VPRNet, build_vpr_net, load_weights  # noqa: E402


def _released(
    name: str,
    backbone: str | None,
    pretrained: bool,
    backbone_args: dict[str, Any] | None,
    agg_args: dict[str, Any] | None,
    ckpt_path: str | None,
) -> VPRNet:
    release = RELEASED_MODELS[name]
    backbone = backbone or release.backbone
    if backbone not in DINOV2_ARCHS:
        raise ValueError(f"backbone={backbone!r} is not a DINOv2 backbone; known: {', '.join(DINOV2_ARCHS)}")
    model = build_vpr_net(
        backbone,
        backbone_args or release.backbone_args,
        "SALAD",
        agg_args or release.agg_args(DINOV2_ARCHS[backbone].embed_dim),
    )
    if ckpt_path is not None:
        load_weights(model, ckpt_path)
    elif pretrained:
        if release.url is None:
            raise ValueError(
                f"{name}: the authors publish {release.file_name} only for download by hand; "
                f"pass its path as ckpt_path=..., or pretrained=False for an untrained model"
            )
        model.load_state_dict(fetch_state_dict(release.url, None, release.file_name, "ckpt_path"), strict=True)
    return model.eval()


def dinov2_salad(
    backbone: str = "dinov2_vitb14",
    pretrained: bool = True,
    backbone_args: dict[str, Any] | None = None,
    agg_args: dict[str, Any] | None = None,
    ckpt_path: str | None = None,
) -> VPRNet:
    """DINOv2 SALAD, 8448-d descriptors (64 clusters x 128 + 256). ``pretrained`` downloads
    the released ``dino_salad.ckpt`` through torch.hub's cache; ``ckpt_path`` loads a local file."""
    return _released("dinov2_salad", backbone, pretrained, backbone_args, agg_args, ckpt_path)


def dinov2_salad_512_32(pretrained: bool = True, ckpt_path: str | None = None) -> VPRNet:
    """DINOv2 SALAD, 544-d descriptors (16 clusters x 32 + 32). Its weights are published only
    for download by hand: pass the file as ``ckpt_path``."""
    return _released("dinov2_salad_512_32", None, pretrained, None, None, ckpt_path)


def dinov2_salad_2048_64(pretrained: bool = True, ckpt_path: str | None = None) -> VPRNet:
    """DINOv2 SALAD, 2112-d descriptors (32 clusters x 64 + 64). Its weights are published only
    for download by hand: pass the file as ``ckpt_path``."""
    return _released("dinov2_salad_2048_64", None, pretrained, None, None, ckpt_path)
