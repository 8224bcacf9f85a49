"""Resuming a training run: the checkpoint is checked before Lightning opens it, the random
generators continue where they were, and the run goes on in its own folder."""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from utils.checkpoint_files import check_resume_checkpoint, local_checkpoint
from utils.training.loggers import run_loggers

log = logging.getLogger(__name__)

RUN_VERSION = re.compile(r"version_(\d+)")
"""A version folder of Lightning's default loggers, ``<save_dir>/<name>/version_<N>``."""


def check_resume_path(ckpt_path: str | PathLike[str] | None) -> str | None:
    """Check ``main.py --ckpt_path`` (see :func:`utils.checkpoint_files.check_resume_checkpoint`)
    and return the local file to resume from: a ``file://`` or ``http(s)://`` URL is read or
    downloaded first (:func:`utils.checkpoint_files.local_checkpoint`), so that Lightning, which
    would unpickle a URL with ``weights_only=False``, only ever opens a checked local file.

    ``None`` and Lightning's keywords (``last``, ``hpc``, ``registry``) are left to Lightning,
    as is a path that does not exist (it names it in its own error).

    Raises:
        ValueError: the file is refused (one line naming it and what to do instead).
    """
    if ckpt_path is None:
        return None
    ckpt_path = local_checkpoint(ckpt_path)
    if Path(ckpt_path).is_file():
        check_resume_checkpoint(ckpt_path)
    return ckpt_path


class RandomStateCheckpoint(Callback):
    """Saves the random generators' states in every checkpoint and restores them on resume, so
    that a resumed run draws the dropout masks (and anything else random) that the uninterrupted
    run draws. Lightning restores callback states before training starts.

    States are stored as tensors, lists and numbers (``weights_only`` loads them): torch's CPU
    generator, each CUDA device's, numpy's legacy global generator and Python's ``random``.
    """

    def state_dict(self) -> dict[str, Any]:
        numpy_kind, numpy_keys, numpy_position, has_gauss, cached_gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [numpy_kind, torch.from_numpy(numpy_keys.astype(np.int64)), numpy_position, has_gauss, cached_gauss],
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available() and len(state_dict["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        kind, keys, position, has_gauss, cached_gauss = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))


def run_folder_of(ckpt_path: str | PathLike[str]) -> tuple[Path, str, int] | None:
    """``(save_dir, name, version)`` of a checkpoint at ``<save_dir>/<name>/version_<N>/checkpoints/<file>``
    (where Lightning's default logger and checkpoints put it), else None."""
    path = Path(ckpt_path).expanduser().absolute()
    version = RUN_VERSION.fullmatch(path.parents[1].name) if len(path.parents) > 3 else None
    if path.parent.name != "checkpoints" or version is None:
        return None
    return path.parents[3], path.parents[2].name, int(version.group(1))


def continue_run_folder(trainer: pl.Trainer, ckpt_path: str | PathLike[str] | None, logger_setting: object) -> Path | None:
    """Log a resumed run into the version folder of its checkpoint instead of a new ``version_N``.

    With the folder, the checkpoint callbacks (``dirpath`` unset) write to the same
    ``checkpoints/`` as before, so Lightning restores their state (the best ``save_top_k``
    checkpoints) rather than starting it over. TensorBoard events go on in the folder, metrics are
    appended to ``metrics.csv`` (``utils.training.loggers``) and the configuration is saved beside the
    first one as ``config_resumed<k>.yaml`` (nothing is overwritten). Left alone: a checkpoint
    elsewhere, or a logger the user configured (``logger_setting`` not ``None``/``True``).

    Returns:
        the version folder continued, or None.
    """
    located = None if ckpt_path is None else run_folder_of(ckpt_path)
    if located is None or logger_setting not in (None, True) or not trainer.loggers:
        return None
    if not all(isinstance(logger, (TensorBoardLogger, CSVLogger)) for logger in trainer.loggers):
        return None
    save_dir, name, version = located
    trainer.loggers = run_loggers(save_dir, version, name)
    folder = save_dir / name / f"version_{version}"
    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback) and (folder / callback.config_filename).exists():
            stem, suffix = os.path.splitext(callback.config_filename)
            free = next(k for k in itertools.count(1) if not (folder / f"{stem}_resumed{k}{suffix}").exists())
            callback.config_filename = f"{stem}_resumed{free}{suffix}"
    log.info("resuming in %s", folder)
    return folder
