"""How Lightning writes this project's checkpoints: atomically, with a digest of their tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.cloud_io import get_filesystem
from pytorch_lightning.plugins.io import TorchCheckpointIO

from utils.atomic_write import write_atomically
from utils.checkpoint_digest import with_digest


def on_local_disk(path: Any) -> bool:
    """``path`` is on the local filesystem (not an fsspec URL such as ``s3://``)."""
    return isinstance(get_filesystem(path), type(get_filesystem(".")))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's :class:`TorchCheckpointIO`, writing through :func:`utils.atomic_write.write_atomically`
    (a write killed or a full disk never leaves a torn ``last.ckpt`` under its name; the error
    names the file) and storing :func:`utils.checkpoint_digest.with_digest` in each checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options, got {storage_options}")
        if not on_local_disk(path):
            return super().save_checkpoint(with_digest(checkpoint), path)  # a remote filesystem: fsspec's writer
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda stream: torch.save(with_digest(checkpoint), stream))


def use_atomic_checkpoints(trainer: pl.Trainer) -> None:
    """Give ``trainer`` an :class:`AtomicCheckpointIO` unless a plugin chose another writer than
    Lightning's default."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
