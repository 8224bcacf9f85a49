"""Resuming a training run: the checkpoint is checked before Lightning opens it, the random
generators continue where they were, and the run goes on in its own folder."""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import signal
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.cli import SaveConfigCallback
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from utils.atomic_write import remove_stale_temporaries, write_atomically
from utils.checkpoint_files import check_resume_checkpoint, missing_file_problem, reads_checkpoint
from utils.errors import UserFileError
from utils.training.loggers import run_loggers

log = logging.getLogger(__name__)

RUN_VERSION = re.compile(r"version_(\d+)")
"""A version folder of Lightning's default loggers, ``<save_dir>/<name>/version_<N>``."""
LIGHTNING_CHECKPOINT_KEYWORDS = ("last", "hpc", "registry", "best")
"""``--ckpt_path`` values that Lightning resolves itself."""
STALE_TEMPORARY_S = 60.0
"""A checkpoint's temporary file untouched for this long was left by a killed write (a live one grows)."""


@reads_checkpoint
def check_resume_path(ckpt_path: str | PathLike[str] | None) -> str | PathLike[str] | None:
    """Check ``main.py --ckpt_path`` (see :func:`utils.checkpoint_files.check_resume_checkpoint`)
    and return the local file to resume from: a ``file://`` or ``http(s)://`` URL is read or
    downloaded first (:func:`utils.checkpoint_files.reads_checkpoint`: a download lasts until the
    process ends, errors name the URL), so that Lightning, which would unpickle a URL with
    ``weights_only=False``, only ever opens a checked local file.

    ``None`` and Lightning's keywords (:data:`LIGHTNING_CHECKPOINT_KEYWORDS`) are left to Lightning.

    Raises:
        ValueError: the file is refused, missing or a folder (one line naming it and what to do instead).
    """
    if ckpt_path is None:
        return None
    if Path(ckpt_path).is_file():
        check_resume_checkpoint(ckpt_path)
    elif str(ckpt_path) not in LIGHTNING_CHECKPOINT_KEYWORDS:
        raise UserFileError(f"ckpt_path={ckpt_path} {missing_file_problem(ckpt_path)}")
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


def overruled_settings(given: dict[str, Any], resumed: dict[str, Any], defaults: dict[str, Any],
                       explicit: Collection[str] = ()) -> list[str]:
    """``--model.<key> <given> (the checkpoint's: <value>)`` for each model setting the user gave
    (named in ``explicit``, or changed from its default) that the checkpoint's hyperparameters replace;
    ``None`` (the model computes the value, as a run's saved ``config.yaml`` holds it) overrules nothing."""
    def differs(mine: Any, theirs: Any) -> bool:  # a dict setting: the keys given (the model adds some)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            return any(key not in theirs or differs(value, theirs[key]) for key, value in mine.items())
        return mine != theirs

    return [f"--model.{key} {given[key]} (the checkpoint's: {resumed[key]})" for key in given
            if key in resumed and given[key] is not None and differs(given[key], resumed[key])
            and (key in explicit or given[key] != defaults.get(key))]


def explicit_model_keys(args: Sequence[str], config_files: Sequence[str]) -> set[str]:
    """The model settings a command line names: each ``--model.<key>`` flag, and each key of the
    ``model`` section of its configuration files."""
    keys = {arg.removeprefix("--model.").split("=", 1)[0].split(".", 1)[0] for arg in args if arg.startswith("--model.")}
    for file in config_files:
        try:
            section = (yaml.safe_load(Path(file).read_text()) or {}).get("model")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if isinstance(section, dict):
            keys.update(section.get("init_args", section) if "class_path" in section else section)
    return keys


def run_folder_of(ckpt_path: str | PathLike[str]) -> tuple[Path, str, int] | None:
    """``(save_dir, name, version)`` of a checkpoint at ``<save_dir>/<name>/version_<N>/checkpoints/<file>``
    (where Lightning's default logger and checkpoints put it), else None."""
    path = Path(ckpt_path).expanduser().absolute()
    version = RUN_VERSION.fullmatch(path.parents[1].name) if len(path.parents) > 3 else None
    if path.parent.name != "checkpoints" or version is None:
        return None
    return path.parents[3], path.parents[2].name, int(version.group(1))


@dataclass
class RunFolderSnapshot:
    """What a run folder held before a resume: the files' names, and the content of its small
    text files (``hparams.yaml``, ``metrics.csv``, configurations), to put back if the resume
    fails before training a step (a refused checkpoint, data that changed)."""

    folder: Path
    names: frozenset[Path]
    texts: dict[Path, bytes]

    @classmethod
    def take(cls, folder: Path) -> RunFolderSnapshot:
        names = frozenset(path for path in folder.rglob("*") if path.is_file())
        return cls(folder, names, {path: path.read_bytes() for path in names if path.suffix in SNAPSHOT_TEXTS})

    def restore(self) -> list[Path]:
        """Remove the files added since, put back the text files changed; returns the files touched."""
        touched = []
        for path in sorted(self.folder.rglob("*")):
            if path.is_file() and path not in self.names:
                path.unlink()
                touched.append(path)
        for path, content in self.texts.items():
            if not path.is_file() or path.read_bytes() != content:
                write_atomically(path, lambda stream, content=content: stream.write(content))
                touched.append(path)
        return touched


SNAPSHOT_TEXTS = (".yaml", ".csv")


def continue_checkpoint_state(callback: ModelCheckpoint, folder: Path) -> None:
    """Let ``callback`` take back its saved state (best ``save_top_k`` scores, ``last.ckpt``) when
    the run folder is the same one written another way (relative then absolute, through a link,
    or moved):
    Lightning compares the two paths as strings, and on a difference drops the ranking ("won't be
    reloaded") and writes ``last-v1.ckpt`` beside a stale ``last.ckpt``. The saved paths are
    rewritten into the callback's ``dirpath`` before Lightning's own ``load_state_dict`` runs."""
    original = callback.load_state_dict

    def load_state_dict(state_dict: dict[str, Any]) -> None:
        saved, current = state_dict.get("dirpath"), callback.dirpath
        if saved and current and saved != current and _same_folder(saved, folder) and _same_folder(current, folder):
            # the state comes from a checkpoint in ``folder``: its paths are this folder's
            def moved(path: Any) -> Any:
                if isinstance(path, str) and path and _same_folder(os.path.dirname(path), folder):
                    return os.path.join(current, os.path.basename(path))
                return path

            state_dict = {**state_dict, "dirpath": current,
                          "best_k_models": {moved(path): score for path, score in state_dict.get("best_k_models", {}).items()},
                          **{key: moved(state_dict[key]) for key in
                             ("best_model_path", "kth_best_model_path", "last_model_path") if key in state_dict}}
        original(state_dict)

    callback.load_state_dict = load_state_dict


def _same_folder(path: str | PathLike[str], folder: Path) -> bool:
    """``path`` names ``folder``: both resolved (links and ``..`` followed), or, for a run folder
    moved or copied since, the same last three parts (``<name>/version_<N>/checkpoints``)."""
    if os.path.realpath(path) == os.path.realpath(folder):
        return True
    return Path(os.path.normpath(path)).parts[-3:] == Path(os.path.realpath(folder)).parts[-3:]


def continue_run_folder(trainer: pl.Trainer, ckpt_path: str | PathLike[str] | None, logger_setting: object) -> Path | None:
    """Log a resumed run into the version folder of its checkpoint instead of a new ``version_N``.

    With the folder, the checkpoint callbacks (``dirpath`` unset) write to the same
    ``checkpoints/`` as before, so Lightning restores their state (the best ``save_top_k``
    checkpoints) rather than starting it over. TensorBoard events go on in the folder, metrics are
    appended to ``metrics.csv`` (``utils.training.loggers``) and the configuration is saved beside the
    first one as ``config_resumed<k>.yaml`` (nothing is overwritten); temporary files of checkpoint
    writes killed before are removed. Left alone: a checkpoint
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
    for stale in remove_stale_temporaries(folder / "checkpoints", STALE_TEMPORARY_S):
        log.info("removed %s, left by a write killed before", stale)
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
            continue_checkpoint_state(callback, folder / "checkpoints")
    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback) and (folder / callback.config_filename).exists():
            stem, suffix = os.path.splitext(callback.config_filename)
            free = next(k for k in itertools.count(1) if not (folder / f"{stem}_resumed{k}{suffix}").exists())
            callback.config_filename = f"{stem}_resumed{free}{suffix}"
    log.info("resuming in %s", folder)
    return folder


def rewind_notice(folder: Path, ckpt_path: str | PathLike[str], step: int) -> str | None:
    """One line when ``ckpt_path`` (at ``step``) is older than the run folder's ``last.ckpt``: the
    run goes back to that step; the later checkpoints are kept (new ones of the same names get
    ``-v1``), and their ``metrics.csv`` rows are replaced as the steps are trained again."""
    last = folder / "checkpoints" / "last.ckpt"
    if not last.is_file() or os.path.samefile(last, ckpt_path):
        return None
    try:
        last_step = checkpoint_step(last)
    except Exception:  # unreadable: the resume does not depend on it
        return None
    if last_step <= step:
        return None
    return (f"--ckpt_path {ckpt_path} is step {step} of a run whose last.ckpt is at step {last_step}: training goes "
            f"back to step {step}; the later checkpoints are kept, new ones of the same names get -v1")


def checkpoint_step(ckpt_path: str | PathLike[str]) -> int:
    """The optimizer step a (checked) Lightning checkpoint was saved at (tensors memory-mapped, not read)."""
    return int(torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True).get("global_step", 0))


def checkpoint_hyperparameters(ckpt_path: str | PathLike[str] | None) -> dict[str, Any]:
    """The model settings a (checked) Lightning checkpoint holds; none for no file."""
    if ckpt_path is None or not Path(ckpt_path).is_file():
        return {}
    payload = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    settings = payload.get("hyper_parameters") if isinstance(payload, dict) else None
    return dict(settings) if isinstance(settings, dict) else {}


class InterruptCheckpoint(Callback):
    """Ctrl-C (SIGINT) during training saves a resumable checkpoint before the run stops.

    The first SIGINT is noted; at the end of the optimizer step under way, the whole training
    state is saved to ``interrupted.ckpt`` beside the other checkpoints (the same state as a
    ``resume-latest.ckpt`` of that step: ``--ckpt_path`` resumes it, bit for bit), and the run stops
    as Lightning stops on Ctrl-C. During a validation, the run stops when it ends, once its
    checkpoints are written: ``last.ckpt`` is then the state to resume (``interrupted.ckpt`` is
    saved instead when no ``last.ckpt`` is kept). A second SIGINT interrupts at once, saving
    nothing, unless it comes within :attr:`REPEAT_WINDOW_S` of the first: that is the same Ctrl-C
    forwarded by a launcher (torchrun sends each worker the SIGINT the terminal already sent it).
    """

    FILENAME = "interrupted.ckpt"
    REPEAT_WINDOW_S = 2.0

    def __init__(self) -> None:
        self.requested = False
        self._first_at = 0.0
        self._announce = True
        self._resume_from: str | None = None
        self._previous: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.requested = False
        self._resume_from = None
        self._announce = trainer.is_global_zero
        try:
            self._previous = signal.signal(signal.SIGINT, self._note)
        except ValueError:  # not the main thread: Lightning's own handling stays
            self._previous = None

    def _note(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if not self.requested:
            self.requested, self._first_at = True, now
            if self._announce:  # at once: a validation under way can take minutes before the step ends
                print(f"\nCtrl-C: stopping at the end of the step or the validation under way, with a checkpoint to "
                      f"resume from; Ctrl-C again, {self.REPEAT_WINDOW_S:g} s or more later, stops at once without saving",
                      file=sys.stderr, flush=True)
        elif now - self._first_at > self.REPEAT_WINDOW_S:  # the user pressed Ctrl-C again
            signal.default_int_handler(signum, frame)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        # every process decides alike (under DDP a Ctrl-C may reach the ranks at different steps)
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        self._resume_from = self._save(trainer)
        self._stop(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A Ctrl-C during a validation of the training stops the run once the validation's
        checkpoints are written (Lightning's ``ModelCheckpoint`` writes them after this hook)."""
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        callback = trainer.checkpoint_callback
        if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
            self._resume_from = os.path.join(callback.dirpath, callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION)
        else:
            self._resume_from = self._save(trainer)
        trainer.should_stop = True  # ends the training after this validation; on_train_end says so

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._resume_from is not None:  # stopped after a validation
            self._stop(trainer)
        self._restore_handler()

    def _save(self, trainer: pl.Trainer) -> str:
        folder = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else trainer.default_root_dir
        path = os.path.join(folder, self.FILENAME)
        trainer.save_checkpoint(path, weights_only=False)  # the whole training state
        return path

    def _stop(self, trainer: pl.Trainer) -> None:
        """Stop as Lightning stops on Ctrl-C, saying where to resume from."""
        self._restore_handler()
        if trainer.is_global_zero:
            log.warning("interrupted at step %d: resume with --ckpt_path %s", trainer.global_step, self._resume_from)
        raise KeyboardInterrupt

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_handler()

    def _restore_handler(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
