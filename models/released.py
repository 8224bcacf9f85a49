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
from typing import Any, NamedTuple

import torch

from dataloaders.transforms import IMAGENET_MEAN, IMAGENET_STD
from models.architecture import Architecture
from models.backbones.vit import PUBLISHED_VIT_OPTIONS
from models.pretrained import StateDictFilter, check_published_file, filter_state_dict
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


class Normalization(NamedTuple):
    """Per-channel ``(x - mean) / std`` of RGB values in [0, 1]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


#: ImageNet statistics: what every released model here was trained and is evaluated with.
IMAGENET_NORMALIZATION = Normalization(IMAGENET_MEAN, IMAGENET_STD)


@dataclass(frozen=True)
class ReleasedModel:
    """A released checkpoint.

    Attributes:
        architecture: the network the file holds the weights of.
        file_name: the file's published name.
        url: where it downloads from; ``None`` for files the authors publish only for download
            by hand.
        descriptor_dim: the size of its descriptors.
        image_size: ``(height, width)`` the authors evaluate at; ``None``: each image at its own
            resolution.
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
        normalization: the images' normalisation (mean and std the authors evaluate with).
        page: where a person downloads the file by hand, when that is not ``url``.
    """

    architecture: Architecture
    file_name: str
    url: str | None
    descriptor_dim: int
    image_size: tuple[int, int] | None = (322, 322)
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
    normalization: Normalization = IMAGENET_NORMALIZATION
    page: str | None = None

    def network_state(self, state_dict: dict[str, torch.Tensor], source: str | PathLike[str]) -> dict[str, torch.Tensor]:
        """``state_dict`` of this release's file (read from ``source``) in this project's layout."""
        return filter_state_dict(state_dict, self.checkpoint_filter, source)


#: This project's key prefix of every backbone's wrapped network (``models.backbones``).
BACKBONE_PREFIX = "backbone.model."
#: The prefix of the aggregator's keys, the same in this project's layout and in the BoQ releases.
AGGREGATOR_PREFIX = "aggregator."


@dataclass(frozen=True)
class ReleasedLayout:
    """A checkpoint filter for released files whose keys sit under other prefixes (and possibly
    other module names) than this project's.

    A state dict in the release's layout has its keys renamed; one already in this project's
    layout (a fine-tune saved here: ``backbone.model.*``) is returned as it is; any other is
    refused with one line naming both layouts.

    Attributes:
        file_name: the released file, for messages.
        backbone_prefix: where the release keeps the backbone (``"backbone.dino."``).
        renames: ``(theirs, ours)`` pairs of key beginnings after ``backbone_prefix``, first match
            wins (``("", "")`` keeps the rest of the key; ``("0.", "conv1.")`` renames a module).
        aggregator_renames: ``(theirs, ours)`` pairs of whole-key beginnings outside the backbone
            (``("aggregation.3.", "aggregator.fc.")``); other keys outside it are kept.
        absent: ``(key, shape)`` of tensors of this project's network the release does not hold
            and that inference does not use (DINOv2's ``mask_token``): added as zeros.
    """

    file_name: str
    backbone_prefix: str
    renames: tuple[tuple[str, str], ...] = (("", ""),)
    aggregator_renames: tuple[tuple[str, str], ...] = ()
    absent: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __call__(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if any(key.startswith(BACKBONE_PREFIX) for key in state_dict):
            return state_dict
        if not any(key.startswith(self.backbone_prefix) for key in state_dict):
            first = next(iter(state_dict), None)
            raise UserError(
                f"holds neither the layout of {self.file_name} ({self.backbone_prefix}*, {AGGREGATOR_PREFIX}*) "
                f"nor this project's ({BACKBONE_PREFIX}*, {AGGREGATOR_PREFIX}*); its first key is {first!r}"
            )
        renamed = {self._rename(key): value for key, value in state_dict.items()}
        for key, shape in self.absent:
            renamed.setdefault(key, torch.zeros(shape))
        return renamed

    def _rename(self, key: str) -> str:
        """``key`` in this project's layout."""
        if not key.startswith(self.backbone_prefix):
            for theirs, ours in self.aggregator_renames:
                if key.startswith(theirs):
                    return ours + key.removeprefix(theirs)
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


#: What the CosPlace releases share (gmberton/CosPlace; MIT code, no separate terms for the files).
COSPLACE_CARD: dict[str, Any] = {
    "authors": "Gabriele Berton, Carlo Masone, Barbara Caputo",
    "paper": "Rethinking Visual Geo-localization for Large-Scale Applications (CVPR 2022)",
    "paper_url": "https://arxiv.org/abs/2204.02287",
    "code_url": "https://github.com/gmberton/CosPlace",
    "code_license": "MIT",
    "weights_license": "none stated",
    "parity": "descriptors within 1e-5 (ResNet-50 2048-d fixture); the other sizes share the code",
}
#: What the EigenPlaces releases share (gmberton/EigenPlaces; MIT code, no separate terms for the files).
EIGENPLACES_CARD: dict[str, Any] = {
    "authors": "Gabriele Berton, Gabriele Trivigno, Barbara Caputo, Carlo Masone",
    "paper": "EigenPlaces: Training Viewpoint Robust Models for Visual Place Recognition (ICCV 2023)",
    "paper_url": "https://arxiv.org/abs/2308.10832",
    "code_url": "https://github.com/gmberton/EigenPlaces",
    "code_license": "MIT",
    "weights_license": "none stated",
    "parity": "descriptors within 1e-5 (ResNet-50 2048-d fixture); the other sizes share the code",
}


#: MegaLoc's network: DINOv2 ViT-B/14 (final norm; sides that are not multiples of 14 resized inside
#: the model), a SALAD of 64 x 256 + 256 = 16640 dims projected to 8448.
MEGALOC_ARCHITECTURE = Architecture(
    "dinov2_vitb14", {**DINOV2_SALAD_BACKBONE, "resize_to_patch_multiple": True}, "ProjectedSALAD",
    {"num_clusters": 64, "cluster_dim": 256, "token_dim": 256, "out_dim": 8448},
)
#: MegaLoc's files: ``model.safetensors`` holds the ViT under ``backbone.`` without DINOv2's mask token;
#: the earlier ``megaloc.torch`` is in this project's layout already (``backbone.model.``, mask token included).
MEGALOC_LAYOUT = ReleasedLayout("model.safetensors", "backbone.", absent=(("backbone.model.mask_token", (1, 768)),))


def cosplace_layout(file_name: str, backbone: str) -> ReleasedLayout:
    """The key layout of a CosPlace or EigenPlaces file: the backbone as one ``nn.Sequential``
    (``backbone.0`` conv1, ``backbone.1`` bn1, ``backbone.4``-``7`` layer1-4 of a ResNet;
    torchvision's own indices of a VGG-16), the aggregation as ``Sequential(L2Norm, GeM, Flatten,
    Linear, L2Norm)``."""
    resnet = (("0.", "conv1."), ("1.", "bn1."), ("4.", "layer1."), ("5.", "layer2."), ("6.", "layer3."), ("7.", "layer4."))
    return ReleasedLayout(
        file_name, "backbone.", resnet if backbone.startswith("ResNet") else (("", ""),),
        aggregator_renames=(("aggregation.1.", "aggregator.gem."), ("aggregation.3.", "aggregator.fc.")),
    )


#: The authors' backbone names (their hub's ``backbone=``) -> this project's, for CosPlace and EigenPlaces.
COSPLACE_BACKBONES: dict[str, tuple[str, dict[str, object]]] = {
    "VGG16": ("vgg16", {}),
    **{f"ResNet{depth}": (f"resnet{depth}", {"layers_to_crop": [], "layers_to_freeze": 2}) for depth in (18, 50, 101, 152)},
}


def cosplace_family(
    family: str, releases_url: str, available: dict[str, tuple[int, ...]], card: dict[str, Any]
) -> dict[str, ReleasedModel]:
    """The rows of CosPlace or EigenPlaces: one per backbone and ``fc_output_dim`` the authors' hub
    offers, named ``<family>_<backbone>_<dim>`` (``cosplace_resnet50_2048``), each file
    ``<Backbone>_<dim>_<family>.pth`` under ``releases_url``. Evaluated at full resolution."""
    rows = {}
    for backbone, dims in available.items():
        backbone_arch, backbone_config = COSPLACE_BACKBONES[backbone]
        for dim in dims:
            file_name = f"{backbone}_{dim}_{family}.pth"
            rows[f"{family}_{backbone.lower()}_{dim}"] = ReleasedModel(
                Architecture(backbone_arch, dict(backbone_config), "CosPlace", {"out_dim": dim}), file_name,
                releases_url + file_name, dim, None, cosplace_layout(file_name, backbone),
                summary=f"{backbone} + GeM + fully connected {dim}", **card,
            )
    return rows


def google_drive_download(file_id: str) -> str:
    """The direct download address of a file shared on Google Drive."""
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


def google_drive_page(file_id: str) -> str:
    """The page of a file shared on Google Drive, for a download by hand."""
    return f"https://drive.google.com/file/d/{file_id}/view"


CLIQUEMINING_DRIVE_ID = "1B06ysb-Wjb4KDcNrl-7pyj1mJve1jqdk"
MIXVPR_DRIVE_ID = "1vuz3PvnR7vxnDDLQrdHJaOA04SQrtk5L"

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
    "resnet50_boq": replace(
        boq_release(
            "resnet50", {"layers_to_crop": [4], "layers_to_freeze": 2}, 512, "resnet50_16384.pth", 384,
            ReleasedLayout(
                "resnet50_16384.pth", "backbone.net.",
                (("0.", "conv1."), ("1.", "bn1."), ("4.", "layer1."), ("5.", "layer2."), ("6.", "layer3.")),
            ),
        ),
        summary="ResNet-50 up to layer3 + BoQ 2 x 64 queries, 512 x 32",
        published_recalls={"msls_val": 91.2, "nordland": 70.7, "sped": 86.5, "pitts30k_test": 92.4, "pitts250k_test": 95.0},
        parity="max abs diff 2.2e-8",
    ),
    # MegaLoc (Berton & Masone, 2025). Evaluated with the authors' VPR-methods-evaluation, which passes
    # images at their own resolution; the model rounds the sides to multiples of 14 itself.
    "megaloc": ReleasedModel(
        MEGALOC_ARCHITECTURE, "model.safetensors", "https://huggingface.co/gberton/MegaLoc/resolve/main/model.safetensors",
        8448, None, MEGALOC_LAYOUT,
        summary="DINOv2 ViT-B/14 + SALAD 64 x 256 + 256 projected to 8448", authors="Gabriele Berton, Carlo Masone",
        paper="MegaLoc: One Retrieval to Place Them All (arXiv 2025)", paper_url="https://arxiv.org/abs/2502.17237",
        code_url="https://github.com/gmberton/MegaLoc", code_license="MIT", weights_license="none stated",
        parity="descriptors within 1e-6, feature map 2e-5, token 1e-4", page="https://huggingface.co/gberton/MegaLoc",
    ),
    # CliqueMining (Izquierdo & Civera, ECCV 2024): DINOv2 SALAD's network and file layout, a Lightning
    # checkpoint shared on Google Drive; evaluated as SALAD (322 x 322).
    "cliquemining": ReleasedModel(
        dinov2_salad_architecture(64, 128, 256), "cliquemining.ckpt", google_drive_download(CLIQUEMINING_DRIVE_ID), 8448,
        summary="DINOv2 ViT-B/14 (last 4 blocks trained) + SALAD 64 x 128 + 256, trained with CliqueMining",
        authors="Sergio Izquierdo, Javier Civera", paper="Close, But Not There: Boosting Geographic Distance "
        "Sensitivity in Visual Place Recognition (ECCV 2024)", paper_url="https://arxiv.org/abs/2407.02422",
        code_url="https://github.com/serizba/cliquemining", code_license="GPL-3.0", weights_license="none stated",
        parity="the code of dinov2_salad", page=google_drive_page(CLIQUEMINING_DRIVE_ID),
    ),
    # MixVPR (Ali-bey et al., WACV 2023): ResNet-50 cut after layer3, 4096-d, at 320 x 320 only (its first
    # mixer is Linear(400, 400) over a 20 x 20 map). The file is in this project's layout.
    "mixvpr_resnet50_4096": ReleasedModel(
        Architecture(
            "resnet50", {"layers_to_crop": [4], "layers_to_freeze": 1}, "MixVPR",
            {"in_h": 20, "in_w": 20, "out_channels": 1024, "mix_depth": 4, "mlp_ratio": 1, "out_rows": 4},
        ),
        "resnet50_MixVPR_4096_channels(1024)_rows(4).ckpt", google_drive_download(MIXVPR_DRIVE_ID), 4096, (320, 320),
        summary="ResNet-50 up to layer3 + MixVPR 4 mixers, 1024 x 4",
        authors="Amar Ali-bey, Brahim Chaib-draa, Philippe Giguère",
        paper="MixVPR: Feature Mixing for Visual Place Recognition (WACV 2023)", paper_url="https://arxiv.org/abs/2303.02190",
        code_url="https://github.com/amaralibey/MixVPR", code_license="MIT", weights_license="none stated",
        published_recalls={"msls_val": 88.2, "pitts30k_test": 91.6, "pitts250k_test": 94.3},
        published_source="MixVPR paper", parity="descriptors and feature map within 1e-5",
        page=google_drive_page(MIXVPR_DRIVE_ID),
    ),
    # CosPlace and EigenPlaces: every backbone and size their hubs offer.
    **cosplace_family(
        "cosplace", "https://github.com/gmberton/CosPlace/releases/download/v1.0/",
        {"VGG16": (64, 128, 256, 512), "ResNet18": (32, 64, 128, 256, 512),
         **{f"ResNet{depth}": (32, 64, 128, 256, 512, 1024, 2048) for depth in (50, 101, 152)}},
        COSPLACE_CARD,
    ),
    **cosplace_family(
        "eigenplaces", "https://github.com/gmberton/EigenPlaces/releases/download/v1.0/",
        {"VGG16": (512,), "ResNet18": (256, 512), "ResNet50": (128, 256, 512, 1024, 2048),
         "ResNet101": (128, 256, 512, 1024, 2048)},
        EIGENPLACES_CARD,
    ),
}

#: Short names (a method's name, as VPR-methods-evaluation spells it) -> the release they mean: the
#: configuration the authors' own hub entry loads without arguments.
RELEASE_ALIASES: dict[str, str] = {
    "salad": "dinov2_salad",
    "boq": "dinov2_boq",
    "cosplace": "cosplace_resnet50_2048",
    "eigenplaces": "eigenplaces_resnet50_2048",
    "mixvpr": "mixvpr_resnet50_4096",
}
#: Every name :func:`released_model` takes.
RELEASE_NAMES: tuple[str, ...] = tuple(sorted({*RELEASED_MODELS, *RELEASE_ALIASES}))


def paper_architecture(backbone: str = "dinov2_vitb14") -> Architecture:
    """The paper's DINOv2 SALAD (the ``dinov2_salad`` release) on ``backbone``."""
    return replace(RELEASED_MODELS["dinov2_salad"].architecture, backbone_arch=backbone)


def canonical_release_name(name: str) -> str:
    """``name``, or the release an alias of :data:`RELEASE_ALIASES` stands for.

    Raises:
        UserError: no such release.
    """
    name = RELEASE_ALIASES.get(name, name)
    if name not in RELEASED_MODELS:
        raise UserError(f"unknown released model {name!r}; released: {', '.join(RELEASE_NAMES)}")
    return name


def released_model(name: str) -> ReleasedModel:
    """The release called ``name`` (a key of :data:`RELEASED_MODELS` or an alias)."""
    return RELEASED_MODELS[canonical_release_name(name)]


def cosplace_release_name(family: str, backbone: str, fc_output_dim: int) -> str:
    """The release of CosPlace or EigenPlaces (``family``) that the authors' hub arguments name.

    Raises:
        UserError: a combination their hub does not offer (the message lists those it does).
    """
    name = f"{family}_{backbone.lower()}_{fc_output_dim}"
    if name not in RELEASED_MODELS:
        offered = [key.removeprefix(family + "_") for key in RELEASED_MODELS if key.startswith(family + "_")]
        raise UserError(
            f"{family} has no backbone={backbone!r} with fc_output_dim={fc_output_dim}; released (backbone_dim): "
            f"{', '.join(offered)}"
        )
    return name


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
