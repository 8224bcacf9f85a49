"""Released checkpoints: each one's architecture, file, and where it is published.

This is the project's table of pretrained configurations, kept apart from the architecture code
(as timm keeps its pretrained configs apart from its model classes). The defaults of the DINOv2
backbone and of the SALAD aggregator are the paper's, so the paper's model is
``Architecture("dinov2_vitb14", {}, "SALAD", {})``; the entries below spell their arguments out
so that a release never depends on a default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from os import PathLike

import torch

from models.architecture import Architecture
from models.pretrained import fetch_state_dict, read_state_dict
from models.vpr_net import VPRNet, build_network, build_network_with_weights

StateDictFilter = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
"""Turns a released file's state dict into this project's layout (``backbone.*``, ``aggregator.*``)."""

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
            the file is in it already (the SALAD releases).
    """

    architecture: Architecture
    file_name: str
    url: str | None
    descriptor_dim: int
    image_size: tuple[int, int] = (322, 322)
    checkpoint_filter: StateDictFilter | None = None

    def network_state(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state_dict`` of this release's file in this project's layout."""
        return state_dict if self.checkpoint_filter is None else self.checkpoint_filter(state_dict)


RELEASED_MODELS: dict[str, ReleasedModel] = {
    # 8448-d: MSLS-val R@1 92.2, Nordland 76.0, SPED 92.1, Pitts250k 95.1 (paper, Table 1).
    "dinov2_salad": ReleasedModel(
        dinov2_salad_architecture(64, 128, 256), "dino_salad.ckpt",
        "https://github.com/serizba/salad/releases/download/v1.0.0/dino_salad.ckpt", 8448,
    ),
    "dinov2_salad_512_32": ReleasedModel(dinov2_salad_architecture(16, 32, 32), "dino_salad_512_32.ckpt", None, 544),
    "dinov2_salad_2048_64": ReleasedModel(dinov2_salad_architecture(32, 64, 64), "dino_salad_2048_64.ckpt", None, 2112),
}


def paper_architecture(backbone: str = "dinov2_vitb14") -> Architecture:
    """The paper's DINOv2 SALAD (the ``dinov2_salad`` release) on ``backbone``."""
    return replace(RELEASED_MODELS["dinov2_salad"].architecture, backbone_arch=backbone)


def released_model(name: str) -> ReleasedModel:
    """The release called ``name`` (a key of :data:`RELEASED_MODELS`)."""
    try:
        return RELEASED_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown released model {name!r}; released: {', '.join(RELEASED_MODELS)}") from None


def build_released(
    name: str,
    pretrained: bool = True,
    ckpt_path: str | PathLike[str] | None = None,
    architecture: Architecture | None = None,
) -> VPRNet:
    """The released model ``name`` in eval mode.

    Args:
        name: a key of :data:`RELEASED_MODELS`.
        pretrained: load the released weights (downloaded through torch.hub's cache).
        ckpt_path: a local copy of the released file (or of a fine-tune of the same
            architecture) to load instead of downloading.
        architecture: another architecture to build instead of the release's (the weights must
            fit it).

    Raises:
        ValueError: ``pretrained`` for a file published only for download by hand, or weights
            that do not fit.
        RuntimeError: the download failed (the message says which file to fetch by hand).
    """
    release = released_model(name)
    architecture = architecture or release.architecture
    if ckpt_path is not None:
        return build_network_with_weights(architecture, release.network_state(read_state_dict(ckpt_path)), ckpt_path)
    if not pretrained:
        return build_network(architecture, pretrained_backbone=False).eval()
    if release.url is None:
        raise ValueError(
            f"{name}: the authors publish {release.file_name} only for download by hand; "
            f"pass its path as ckpt_path=..., or pretrained=False for an untrained model"
        )
    state_dict = fetch_state_dict(release.url, None, release.file_name, "ckpt_path")
    return build_network_with_weights(architecture, release.network_state(state_dict), release.url)
