"""Where a training run's metrics go: TensorBoard event files and ``metrics.csv``, side by side in
one ``<default_root_dir>/lightning_logs/version_<N>/`` folder (with the checkpoints and the
configuration).

Lightning's default is one logger (TensorBoard when installed, else CSV). Here every run gets
both: event files for ``tensorboard --logdir logs``, and a CSV readable anywhere whose columns
are in natural order (``R1, R5, R10, ...`` rather than ``R1, R10, R15, ...``). A resumed run
continues its folder: the CSV keeps its rows and header (Lightning's own writer deletes the file).

``metrics.csv`` and ``hparams.yaml`` are written whole through :func:`utils.atomic_write.write_atomically`
each time (a full disk or a kill leaves the previous version, never half a file). Event files are
appended to: TensorBoard's format frames each record with its own checksum, and a file cut short
is read up to its last whole record. A write that fails names the file.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from pytorch_lightning.core.saving import save_hparams_to_yaml
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from utils.atomic_write import replaced_atomically, write_atomically
from utils.errors import UserWriteError
from utils.training.checkpoint_io import on_local_disk

RUNS_FOLDER = "lightning_logs"
"""The folder under ``--trainer.default_root_dir`` that holds the run folders (Lightning's name)."""
_NUMBER = re.compile(r"(\d+)")


def natural_key(name: str) -> list[str | int]:
    """Sort key reading the numbers in ``name`` as numbers: ``R5`` before ``R10``."""
    return [int(part) if part.isdigit() else part for part in _NUMBER.split(name)]


def write_hparams(path: Path, hparams: Mapping[str, Any]) -> None:
    """Lightning's ``hparams.yaml`` (:func:`save_hparams_to_yaml`), written atomically."""
    with replaced_atomically(path) as temporary:
        save_hparams_to_yaml(temporary, dict(hparams))


def row_key(row: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    """What a ``metrics.csv`` row records: its step and the metrics it holds a value of."""
    return str(row.get("step")), frozenset(name for name, value in row.items() if value not in ("", None) and name != "step")


class MetricsWriter(ExperimentWriter):
    """Lightning's CSV writer with columns in natural order, continuing an existing ``metrics.csv``
    (its rows kept, its header the start of the columns); ``metrics.csv`` and ``hparams.yaml`` are
    written whole and atomically.

    A resumed run logs again the steps trained after its checkpoint was written (a run killed after
    a validation, resumed from ``resume-latest.ckpt``): a row of the same step holding the same
    metrics replaces the earlier one instead of repeating it.
    """

    def _check_log_dir_exists(self) -> None:
        self.rows: list[dict[str, Any]] = []
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as stream:
                reader = csv.DictReader(stream)
                self.metrics_keys = list(reader.fieldnames or [])
                self.rows = list(reader)

    def _record_new_keys(self) -> set[str]:
        new_keys = super()._record_new_keys()
        self.metrics_keys.sort(key=natural_key)
        return new_keys

    def save(self) -> None:
        if not on_local_disk(self.log_dir):
            return super().save()  # a remote filesystem: fsspec's writer
        if not self.metrics:
            return
        self._record_new_keys()
        position = {row_key(row): index for index, row in enumerate(self.rows)}
        for row in self.metrics:
            index = position.get(row_key(row))
            if index is None:
                position[row_key(row)] = len(self.rows)
                self.rows.append(row)
            else:
                self.rows[index] = row
        write_atomically(Path(self.metrics_file_path), self._write_rows)
        self.metrics = []

    def _write_rows(self, stream: BinaryIO) -> None:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys)
        writer.writeheader()
        writer.writerows(self.rows)
        text.flush()
        text.detach()

    def log_hparams(self, params: dict[str, Any]) -> None:
        if not on_local_disk(self.log_dir):
            return super().log_hparams(params)
        self.hparams.update(params)
        write_hparams(Path(self.log_dir) / self.NAME_HPARAMS_FILE, self.hparams)


class MetricsCSVLogger(CSVLogger):
    """A :class:`CSVLogger` writing through :class:`MetricsWriter`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = MetricsWriter(log_dir=self.log_dir)
        return self._experiment


def quiet_event_writer_threads() -> None:
    """TensorBoard writes event files in a thread of its own, which prints the traceback of a failed
    write before the logger raises the error in the training thread (where
    :class:`RunTensorBoardLogger` names the file): that print is left out. Installed once."""
    previous = threading.excepthook
    if getattr(previous, "quiets_event_writers", False):
        return

    def excepthook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__module__.startswith("tensorboard."):
            return
        previous(args)

    excepthook.quiets_event_writers = True  # type: ignore[attr-defined]
    threading.excepthook = excepthook


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's :class:`TensorBoardLogger` writing ``hparams.yaml`` atomically; an event file it
    cannot write is named in the error (Lightning reports it as a value it cannot log)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quiet_event_writer_threads()

    @contextmanager
    def _naming_event_file(self) -> Iterator[None]:
        try:
            yield
        except (OSError, ValueError) as error:
            cause = error if isinstance(error, OSError) else error.__cause__
            if not isinstance(cause, OSError) or cause.errno is None or isinstance(cause, UserWriteError):
                raise
            events = sorted(Path(self.log_dir).glob("events.out.tfevents.*"), key=lambda path: path.stat().st_mtime)
            target = events[-1] if events else Path(self.log_dir) / "events.out.tfevents.*"
            raise UserWriteError(f"could not write {target}: {cause.strerror or cause}", cause.errno) from error

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        with self._naming_event_file():
            super().log_metrics(metrics, step)

    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        with self._naming_event_file():
            super().log_hyperparams(params, metrics, step)

    @rank_zero_only
    def save(self) -> None:
        if not on_local_disk(self.log_dir):
            return super().save()
        with self._naming_event_file():
            self.experiment.flush()
        hparams_file = Path(self.log_dir) / self.NAME_HPARAMS_FILE
        if hparams_file.parent.is_dir() and not hparams_file.is_file():
            write_hparams(hparams_file, self.hparams)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        with self._naming_event_file():
            super().finalize(status)


def next_version(root: str | os.PathLike[str], name: str = RUNS_FOLDER) -> int:
    """The first ``version_<N>`` not yet in ``<root>/<name>``."""
    folder = Path(root) / name
    taken = [int(match.group(1)) for path in folder.glob("version_*") if (match := re.fullmatch(r"version_(\d+)", path.name))]
    return max(taken, default=-1) + 1


def run_loggers(root: str | os.PathLike[str], version: int | None = None, name: str = RUNS_FOLDER) -> list[Logger]:
    """TensorBoard and CSV loggers of one run folder, ``<root>/<name>/version_<version>`` (the next
    free version by default; an existing one is continued)."""
    version = next_version(root, name) if version is None else version
    return [
        RunTensorBoardLogger(root, name=name, version=version, default_hp_metric=False),
        MetricsCSVLogger(root, name=name, version=version),
    ]
