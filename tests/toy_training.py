"""The tiny training run of the tests: a few seconds of main.py on the toy world."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def train_args(world: Path, out: Path, *extra: str) -> list[str]:
    """A tiny run: ResNet-18 (layers 3-4 cropped) + SALAD with 4 clusters, 56 px, 4 places x 4 images."""
    return [
        "--model.backbone_arch", "resnet18",
        "--model.backbone_config", '{"layers_to_crop": [3, 4], "layers_to_freeze": -1, "pretrained": false}',
        "--model.agg_config", '{"num_clusters": 4, "cluster_dim": 8, "token_dim": 8, "dropout": 0.0}',
        "--model.lr", "0.001",
        "--data.data_root", str(world / "gsv-cities"),
        "--data.cities", '["Bangkok", "Boston", "PRS"]',
        "--data.batch_size", "4", "--data.img_per_place", "4", "--data.image_size", "[56, 56]",
        "--data.num_workers", "0", "--data.persistent_workers", "false",
        "--data.val_set_names", '["pitts30k_val"]', "--data.data_dir", str(world),
        "--trainer.accelerator", "cpu", "--trainer.devices", "1",
        "--trainer.default_root_dir", str(out),
        "--trainer.enable_progress_bar", "false",
        "--checkpoint.dirpath", str(out / "checkpoints"),
        "--resume_checkpoint.dirpath", str(out / "checkpoints"),
        *extra,
    ]


def same_threads_env() -> dict[str, str]:
    """The environment for a subprocess whose training is compared bit for bit with this process's:
    the same number of torch threads (another number sums in another order)."""
    return {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
