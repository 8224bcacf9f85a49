"""Configurations of the released DINOv2 SALAD checkpoints, kept apart from the architecture code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The published backbone options: last 4 blocks fine-tuned, final norm, class token returned.
DINOV2_SALAD_BACKBONE_ARGS: dict[str, Any] = {"num_trainable_blocks": 4, "return_token": True, "norm_layer": True}


@dataclass(frozen=True)
class ReleasedModel:
    """A released checkpoint: its architecture, file and where it is published.

    ``url`` is ``None`` for the files the authors publish only for download by hand.
    """

    backbone: str
    num_clusters: int
    cluster_dim: int
    token_dim: int
    file_name: str
    url: str | None
    image_size: tuple[int, int] = (322, 322)
    backbone_args: dict[str, Any] = field(default_factory=lambda: dict(DINOV2_SALAD_BACKBONE_ARGS))

    @property
    def descriptor_dim(self) -> int:
        return self.token_dim + self.num_clusters * self.cluster_dim

    def agg_args(self, num_channels: int) -> dict[str, Any]:
        return {
            "num_channels": num_channels,
            "num_clusters": self.num_clusters,
            "cluster_dim": self.cluster_dim,
            "token_dim": self.token_dim,
        }


RELEASED_MODELS: dict[str, ReleasedModel] = {
    # 8448-d: MSLS-val R@1 92.2, Nordland 76.0, SPED 92.1, Pitts250k 95.1 (paper, Table 1).
    "dinov2_salad": ReleasedModel(
        "dinov2_vitb14", 64, 128, 256, "dino_salad.ckpt",
        "https://github.com/serizba/salad/releases/download/v1.0.0/dino_salad.ckpt",
    ),
    "dinov2_salad_512_32": ReleasedModel("dinov2_vitb14", 16, 32, 32, "dino_salad_512_32.ckpt", None),
    "dinov2_salad_2048_64": ReleasedModel("dinov2_vitb14", 32, 64, 64, "dino_salad_2048_64.ckpt", None),
}
