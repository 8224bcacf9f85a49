"""A callback for tests run through main.py: each rank writes the labels of every training batch
to ``<out>/rank<R>.json`` (``{set name: [[labels of each place], ...] per step]}``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl


class RecordBatches(pl.Callback):
    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.steps: dict[str, list[list[int]]] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        for name, (_, labels) in (batch.items() if isinstance(batch, dict) else {"": batch}.items()):
            self.steps.setdefault(name, []).append(labels[:, 0].tolist())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.steps))
