"""Where a training run's metrics go: TensorBoard event files and ``metrics.csv``, side by side in
one ``<default_root_dir>/lightning_logs/version_<N>/`` folder (with the checkpoints and the
configuration).

Lightning's default is one logger (TensorBoard when installed, else CSV). Here every run gets
both: event files for ``tensorboard --logdir logs``, and a CSV readable anywhere whose columns
are in natural order (``R1, R5, R10, ...`` rather than ``R1, R10, R15, ...``). A resumed run
continues its folder: the CSV keeps its rows and header (Lightning's own writer deletes the file).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

RUNS_FOLDER = "lightning_logs"
"""The folder under ``--trainer.default_root_dir`` that holds the run folders (Lightning's name)."""
_NUMBER = re.compile(r"(\d+)")


def natural_key(name: str) -> list[str | int]:
    """Sort key reading the numbers in ``name`` as numbers: ``R5`` before ``R10``."""
    return [int(part) if part.isdigit() else part for part in _NUMBER.split(name)]


class MetricsWriter(ExperimentWriter):
    """Lightning's CSV writer with columns in natural order, continuing an existing ``metrics.csv``
    (its rows kept, its header the start of the columns)."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as stream:
                self.metrics_keys = next(csv.reader(stream), [])

    def _record_new_keys(self) -> set[str]:
        new_keys = super()._record_new_keys()
        self.metrics_keys.sort(key=natural_key)
        return new_keys


class MetricsCSVLogger(CSVLogger):
    """A :class:`CSVLogger` writing through :class:`MetricsWriter`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = MetricsWriter(log_dir=self.log_dir)
        return self._experiment


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
        TensorBoardLogger(root, name=name, version=version, default_hp_metric=False),
        MetricsCSVLogger(root, name=name, version=version),
    ]
