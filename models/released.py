"""Released checkpoints: each one's architecture, file, and where it is published.

This is the project's table of pretrained configurations, kept apart from the architecture code
(as timm keeps its pretrained configs apart from its model classes). The defaults of the DINOv2
backbone and of the SALAD aggregator are the paper's, so the paper's model is
``Architecture("dinov2_vitb14", {}, "SALAD", {})``; the entries below spell their arguments out
so that a release never depends on a default.

Releases of other authors (BoQ's) keep their own key layout: their ``checkpoint_filter`` (a
:class:`ReleasedLayout`) renames the keys of their files into this project's, so the files load
as published.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from os import PathLike

import torch

from models.architecture import Architecture
from models.pretrained import (
    StateDictFilter,
    check_published_file,
    fetch_state_dict,
    filter_state_dict,
    read_state_dict,
)
from models.vpr_net import VPRNet, build_network, build_network_with_weights
from utils.errors import UserError

#: The published DINOv2 backbone options: last 4 blocks fine-tuned, final norm, class token returned.
DINOV2_SALAD_BACKBONE: dict[str, object] = {"num_trainable_blocks": 4, "return_token": True, "norm_layer": True}


def dinov2_salad_architecture(num_clusters: int, cluster_dim: int, token_dim: int, backbone: str = "dinov2_vitb14") -> Architecture:
    """A DINOv2 SALAD of ``token_dim + num_clusters * cluster_dim`` dimensions (dropout 0.3, as trained)."""
    return Architecture(
        backbone,
        dict(DINOV2_SALAD_BACKBONE),
        "SALAD",
        {"num_clusters": num_clusters, "cluster_dim": cluster_dim, "token_dim": token_dim, "dropout": 0.3},
    )


@dataclass(frozen=True)
class ReleasedModel:
    """A released checkpoint.

    Attributes:
        architecture: the network the file holds the weights of.
        file_name: the file's published name.
        url: where it downloads from; ``None`` for files the authors publish only for download
            by hand.
        descriptor_dim: the size of its descriptors.
        image_size: ``(height, width)`` the authors evaluate at.
        checkpoint_filter: turns the file's state dict into this project's layout; ``None`` when
            the file is in it already (the SALAD releases; BoQ's files need a :class:`ReleasedLayout`).
        sha256: the file's SHA-256, checked after a download and when a local file of that name is
            loaded; ``None`` where it is not recorded yet (the file is then not checked).
    """

    architecture: Architecture
    file_name: str
    url: str | None
    descriptor_dim: int
    image_size: tuple[int, int] = (322, 322)
    checkpoint_filter: StateDictFilter | None = None
    sha256: str | None = None

    def network_state(self, state_dict: dict[str, torch.Tensor], source: str | PathLike[str]) -> dict[str, torch.Tensor]:
        """``state_dict`` of this release's file (read from ``source``) in this project's layout."""
        return filter_state_dict(state_dict, self.checkpoint_filter, source)


#: This project's key prefix of every backbone's wrapped network (``models.backbones``).
BACKBONE_PREFIX = "backbone.model."
#: The prefix of the aggregator's keys, the same in this project's layout and in the BoQ releases.
AGGREGATOR_PREFIX = "aggregator."


@dataclass(frozen=True)
class ReleasedLayout:
    """A checkpoint filter for released files whose backbone keys sit under another prefix (and
    possibly other module names) than this project's; the aggregator keys are the same.

    A state dict in the release's layout has its backbone keys renamed; one already in this
    project's layout (a fine-tune saved here) is returned as it is; any other is refused with
    one line naming both layouts.

    Attributes:
        file_name: the released file, for messages.
        backbone_prefix: where the release keeps the backbone (``"backbone.dino."``).
        renames: ``(theirs, ours)`` pairs of key beginnings after ``backbone_prefix``, first match
            wins (``("", "")`` keeps the rest of the key; ``("0.", "conv1.")`` renames a module).
    """

    file_name: str
    backbone_prefix: str
    renames: tuple[tuple[str, str], ...] = (("", ""),)

    def __call__(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not any(key.startswith(self.backbone_prefix) for key in state_dict):
            if any(key.startswith(BACKBONE_PREFIX) for key in state_dict):
                return state_dict
            first = next(iter(state_dict), None)
            raise UserError(
                f"holds neither the layout of {self.file_name} ({self.backbone_prefix}*, {AGGREGATOR_PREFIX}*) "
                f"nor this project's ({BACKBONE_PREFIX}*, {AGGREGATOR_PREFIX}*); its first key is {first!r}"
            )
        return {self._rename(key): value for key, value in state_dict.items()}

    def _rename(self, key: str) -> str:
        """``key`` in this project's layout (keys outside the backbone are kept)."""
        if not key.startswith(self.backbone_prefix):
            return key
        rest = key.removeprefix(self.backbone_prefix)
        for theirs, ours in self.renames:
            if rest.startswith(theirs):
                return BACKBONE_PREFIX + ours + rest.removeprefix(theirs)
        raise UserError(
            f"key {key!r} has no place in the network of {self.file_name} (known under {self.backbone_prefix}: "
            f"{', '.join(theirs + '*' for theirs, _ in self.renames)})"
        )


#: Where the BoQ authors publish their models (GitHub release v1.0 of amaralibey/Bag-of-Queries).
BOQ_RELEASES = "https://github.com/amaralibey/Bag-of-Queries/releases/download/v1.0/"


def boq_release(
    backbone: str, backbone_config: dict[str, object], proj_channels: int, file_name: str, image_size: int,
    layout: ReleasedLayout,
) -> ReleasedModel:
    """A released BoQ model (2 blocks of 64 queries, 32 rows: ``proj_channels * 32`` dims)."""
    agg_config = {"proj_channels": proj_channels, "num_queries": 64, "num_layers": 2, "row_dim": 32}
    return ReleasedModel(
        Architecture(backbone, backbone_config, "BoQ", agg_config), file_name, BOQ_RELEASES + file_name,
        proj_channels * agg_config["row_dim"], (image_size, image_size), layout,
    )


RELEASED_MODELS: dict[str, ReleasedModel] = {
    # 8448-d: MSLS-val R@1 92.2, Nordland 76.0, SPED 92.1, Pitts250k 95.1 (paper, Table 1).
    "dinov2_salad": ReleasedModel(
        dinov2_salad_architecture(64, 128, 256), "dino_salad.ckpt",
        "https://github.com/serizba/salad/releases/download/v1.0.0/dino_salad.ckpt", 8448,
    ),
    "dinov2_salad_512_32": ReleasedModel(dinov2_salad_architecture(16, 32, 32), "dino_salad_512_32.ckpt", None, 544),
    "dinov2_salad_2048_64": ReleasedModel(dinov2_salad_architecture(32, 64, 64), "dino_salad_2048_64.ckpt", None, 2112),
    # BoQ (Ali-bey et al., CVPR 2024), DINOv2 ViT-B/14, 12288-d, evaluated at 322 x 322: MSLS-val R@1 93.8,
    # MSLS challenge 79.0, Nordland 81.3, SPED 92.5, Pitts250k 96.6 (the authors' figures). Their wrapper
    # runs every block but not DINOv2's final LayerNorm, drops the class token and fine-tunes 2 blocks.
    "dinov2_boq": boq_release(
        "dinov2_vitb14", {"num_trainable_blocks": 2, "norm_layer": False, "return_token": False}, 384,
        "dinov2_12288.pth", 322, ReleasedLayout("dinov2_12288.pth", "backbone.dino."),
    ),
    # BoQ, ResNet-50 cropped after layer3 (1024 channels, stride 16), 16384-d, evaluated at 384 x 384.
    # The authors keep the stem and stages in one nn.Sequential: net.0 conv1, net.1 bn1, net.4-6 layer1-3.
    "resnet50_boq": boq_release(
        "resnet50", {"layers_to_crop": [4], "layers_to_freeze": 2}, 512, "resnet50_16384.pth", 384,
        ReleasedLayout(
            "resnet50_16384.pth", "backbone.net.",
            (("0.", "conv1."), ("1.", "bn1."), ("4.", "layer1."), ("5.", "layer2."), ("6.", "layer3.")),
        ),
    ),
}


def paper_architecture(backbone: str = "dinov2_vitb14") -> Architecture:
    """The paper's DINOv2 SALAD (the ``dinov2_salad`` release) on ``backbone``."""
    return replace(RELEASED_MODELS["dinov2_salad"].architecture, backbone_arch=backbone)


def released_model(name: str) -> ReleasedModel:
    """The release called ``name`` (a key of :data:`RELEASED_MODELS`)."""
    try:
        return RELEASED_MODELS[name]
    except KeyError:
        raise UserError(f"unknown released model {name!r}; released: {', '.join(RELEASED_MODELS)}") from None


#: How to skip the check of a released file's SHA-256 (for a fine-tune saved under the released name).
SKIP_CHECK_HINT = "pass verify=False"


def check_released_file(name: str, path: str | PathLike[str]) -> bool:
    """Check a local file that carries release ``name``'s file name against its SHA-256
    (``models.pretrained.check_published_file``); returns whether it was checked.

    Raises:
        ValueError: the digest differs (one line naming the file and how to skip the check).
    """
    release = released_model(name)
    return check_published_file(path, release.file_name, release.sha256, SKIP_CHECK_HINT)


def build_released(
    name: str,
    pretrained: bool = True,
    ckpt_path: str | PathLike[str] | None = None,
    architecture: Architecture | None = None,
    verify: bool = True,
) -> VPRNet:
    """The released model ``name`` in eval mode.

    Args:
        name: a key of :data:`RELEASED_MODELS`.
        pretrained: load the released weights (downloaded through torch.hub's cache).
        ckpt_path: a local copy of the released file (or of a fine-tune of the same
            architecture) to load instead of downloading.
        architecture: another architecture to build instead of the release's (the weights must
            fit it).
        verify: check the SHA-256 of a download, and of a ``ckpt_path`` named as the release
            (``False`` for a fine-tune of one's own saved under that name).

    Raises:
        ValueError: ``pretrained`` for a file published only for download by hand, or weights
            that do not fit.
        RuntimeError: the download failed (the message says which file to fetch by hand).
    """
    release = released_model(name)
    architecture = architecture or release.architecture
    if ckpt_path is not None:
        if verify:
            check_released_file(name, ckpt_path)
        return build_network_with_weights(architecture, release.network_state(read_state_dict(ckpt_path), ckpt_path), ckpt_path)
    if not pretrained:
        return build_network(architecture, pretrained_backbone=False).eval()
    if release.url is None:
        raise UserError(
            f"{name}: the authors publish {release.file_name} only for download by hand; "
            f"pass its path as ckpt_path=..., or pretrained=False for an untrained model"
        )
    state_dict = fetch_state_dict(
        release.url, None, release.file_name, "ckpt_path", release.sha256 if verify else None, SKIP_CHECK_HINT
    )
    return build_network_with_weights(architecture, release.network_state(state_dict, release.url), release.url)
