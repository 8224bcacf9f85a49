"""Validate one fixed model on a synthetic set with N processes (gloo) and write the recalls.

Run by tests/test_distributed.py as ``python -m tests.scripts.ddp_validate N OUT.json``; Lightning's
DDP launcher starts the other ranks by re-running this script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from dataloaders.eval_sets import EvalSet
from models.vpr_model import VPRModel

NUM_DB, NUM_QUERIES, SIZE = 21, 10, 56


class SyntheticImages(Dataset):
    """Database image i is noise seeded by i; query j is database image 2j plus a perturbation."""

    def __len__(self) -> int:
        return NUM_DB + NUM_QUERIES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        place = index if index < NUM_DB else 2 * (index - NUM_DB)
        image = torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(place))
        if index >= NUM_DB:
            image = image + 0.8 * torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(1000 + index))
        return image, index


class SyntheticValidation(pl.LightningDataModule):
    def setup(self, stage: str | None = None) -> None:
        ground_truth = [np.array([2 * j, 2 * j + 1]) for j in range(NUM_QUERIES)]
        self.val_sets = [
            EvalSet("synthetic", Path("."), [f"db{i}" for i in range(NUM_DB)], [f"q{j}" for j in range(NUM_QUERIES)], ground_truth)
        ]

    def val_dataloader(self) -> DataLoader:
        return DataLoader(SyntheticImages(), batch_size=4)


def main() -> None:
    devices, out = int(sys.argv[1]), Path(sys.argv[2])
    torch.manual_seed(0)
    model = VPRModel(
        "resnet18", {"layers_to_crop": [3, 4], "layers_to_freeze": -1, "pretrained": False}, "SALAD",
        {"num_clusters": 4, "cluster_dim": 8, "token_dim": 8, "dropout": 0.0},
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        logger=False, enable_progress_bar=False, enable_model_summary=False,
    )
    metrics = trainer.validate(model, datamodule=SyntheticValidation(), verbose=False)[0]
    if trainer.is_global_zero:
        out.write_text(json.dumps({k: float(v) for k, v in metrics.items()}))


if __name__ == "__main__":
    main()
