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

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from os import PathLike
from typing import Any

import torch

from models.architecture import Architecture
from models.backbones.vit import PUBLISHED_VIT_OPTIONS
from models.pretrained import (
    StateDictFilter,
    check_published_file,
    fetch_state_dict,
    filter_state_dict,
    read_state_dict,
)
from models.vpr_net import VPRNet, build_network, build_network_with_weights
from utils.errors import UserError

#: The published DINOv2 backbone options (last 4 blocks fine-tuned, final norm, class token
#: returned), spelled out in the releases' architectures.
DINOV2_SALAD_BACKBONE: dict[str, object] = PUBLISHED_VIT_OPTIONS.as_config()


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

    What a user reads about it (``python -m tools.models``, the README's tables); empty where unknown:

    Attributes:
        summary: the network in words (``"DINOv2 ViT-B/14, last 4 blocks trained + SALAD ..."``).
        authors: who published the model.
        paper: its paper's title and venue.
        paper_url: where the paper is (arXiv).
        code_url: the authors' repository.
        code_license: the license of the authors' code (SPDX name where there is one).
        weights_license: the license of the released file, as the authors state it (or that
            they state none).
        published_recalls: Recall@1 in percent **as the authors publish it** for this file,
            by this project's set name (``"msls_val"``, ``"msls_test"``, ``"nordland"``, ...);
            never a figure measured here.
        published_source: where ``published_recalls`` are printed (``"SALAD paper, Table 1"``).
        parity: how this project's descriptors of the file compare with the authors' code (the
            figure of the parity test, or which release's test covers the same code).
    """

    architecture: Architecture
    file_name: str
    url: str | None
    descriptor_dim: int
    image_size: tuple[int, int] = (322, 322)
    checkpoint_filter: StateDictFilter | None = None
    sha256: str | None = None
    summary: str = ""
    authors: str = ""
    paper: str = ""
    paper_url: str = ""
    code_url: str = ""
    code_license: str = ""
    weights_license: str = ""
    published_recalls: Mapping[str, float] = field(default_factory=dict)
    published_source: str = ""
    parity: str = ""

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
    layout: ReleasedLayout, **card: Any,
) -> ReleasedModel:
    """A released BoQ model (2 blocks of 64 queries, 32 rows: ``proj_channels * 32`` dims); ``card``:
    the :class:`ReleasedModel` fields a user reads (summary, published recalls, ...)."""
    agg_config = {"proj_channels": proj_channels, "num_queries": 64, "num_layers": 2, "row_dim": 32}
    return ReleasedModel(
        Architecture(backbone, backbone_config, "BoQ", agg_config), file_name, BOQ_RELEASES + file_name,
        proj_channels * agg_config["row_dim"], (image_size, image_size), layout, **BOQ_CARD, **card,
    )


#: What the three SALAD releases share (serizba/salad; GPL-3.0 code, no separate terms for the files).
SALAD_CARD: dict[str, Any] = {
    "authors": "Sergio Izquierdo, Javier Civera",
    "paper": "Optimal Transport Aggregation for Visual Place Recognition (CVPR 2024)",
    "paper_url": "https://arxiv.org/abs/2311.15937",
    "code_url": "https://github.com/serizba/salad",
    "code_license": "GPL-3.0",
    "weights_license": "none stated",
}
#: What the two BoQ releases share (amaralibey/Bag-of-Queries; MIT code, no separate terms for the files).
BOQ_CARD: dict[str, Any] = {
    "authors": "Amar Ali-bey, Brahim Chaib-draa, Philippe Giguère",
    "paper": "BoQ: A Place is Worth a Bag of Learnable Queries (CVPR 2024)",
    "paper_url": "https://arxiv.org/abs/2405.07364",
    "code_url": "https://github.com/amaralibey/Bag-of-Queries",
    "code_license": "MIT",
    "weights_license": "none stated",
    "published_source": "BoQ authors' README",
}


RELEASED_MODELS: dict[str, ReleasedModel] = {
    "dinov2_salad": ReleasedModel(
        dinov2_salad_architecture(64, 128, 256), "dino_salad.ckpt",
        "https://github.com/serizba/salad/releases/download/v1.0.0/dino_salad.ckpt", 8448,
        summary="DINOv2 ViT-B/14 (last 4 blocks trained) + SALAD 64 x 128 + 256",
        published_recalls={"msls_val": 92.2, "msls_test": 75.0, "nordland": 76.0, "sped": 92.1, "pitts250k_test": 95.1},
        published_source="SALAD paper, Table 1", parity="max abs diff 3e-8 (ViT-S/14 fixture)", **SALAD_CARD,
    ),
    "dinov2_salad_512_32": ReleasedModel(
        dinov2_salad_architecture(16, 32, 32), "dino_salad_512_32.ckpt", None, 544,
        summary="DINOv2 ViT-B/14 (last 4 blocks trained) + SALAD 16 x 32 + 32",
        parity="the code of dinov2_salad", **SALAD_CARD,
    ),
    "dinov2_salad_2048_64": ReleasedModel(
        dinov2_salad_architecture(32, 64, 64), "dino_salad_2048_64.ckpt", None, 2112,
        summary="DINOv2 ViT-B/14 (last 4 blocks trained) + SALAD 32 x 64 + 64",
        parity="the code of dinov2_salad", **SALAD_CARD,
    ),
    # DINOv2 ViT-B/14, 12288-d, evaluated at 322 x 322. The authors' wrapper runs every block but not
    # DINOv2's final LayerNorm, drops the class token and fine-tunes 2 blocks.
    "dinov2_boq": boq_release(
        "dinov2_vitb14", {"num_trainable_blocks": 2, "norm_layer": False, "return_token": False}, 384,
        "dinov2_12288.pth", 322, ReleasedLayout("dinov2_12288.pth", "backbone.dino."),
        summary="DINOv2 ViT-B/14 (no final norm, last 2 blocks trained) + BoQ 2 x 64 queries, 384 x 32",
        published_recalls={
            "msls_val": 93.8, "msls_test": 79.0, "nordland": 81.3, "sped": 92.5, "pitts30k_test": 93.7,
            "pitts250k_test": 96.6,
        },
        parity="max abs diff 2.6e-8",
    ),
    # ResNet-50 cropped after layer3 (1024 channels, stride 16), 16384-d, evaluated at 384 x 384.
    # The authors keep the stem and stages in one nn.Sequential: net.0 conv1, net.1 bn1, net.4-6 layer1-3.
    "resnet50_boq": boq_release(
        "resnet50", {"layers_to_crop": [4], "layers_to_freeze": 2}, 512, "resnet50_16384.pth", 384,
        ReleasedLayout(
            "resnet50_16384.pth", "backbone.net.",
            (("0.", "conv1."), ("1.", "bn1."), ("4.", "layer1."), ("5.", "layer2."), ("6.", "layer3.")),
        ),
        summary="ResNet-50 up to layer3 + BoQ 2 x 64 queries, 512 x 32",
        published_recalls={"msls_val": 91.2, "nordland": 70.7, "sped": 86.5, "pitts30k_test": 92.4, "pitts250k_test": 95.0},
        parity="max abs diff 2.2e-8",
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
