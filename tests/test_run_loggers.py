"""A run's metrics.csv, hparams.yaml and event files: columns in natural order, continued on resume,
written whole; a full disk names the file it could not write."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.file_writes import watching_writes
from utils.errors import UserWriteError
from utils.training.loggers import MetricsCSVLogger, RunTensorBoardLogger, run_loggers


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as stream:
        return list(csv.reader(stream))


def test_metrics_csv_keeps_natural_order_and_its_rows_when_continued(tmp_path: Path):
    logger = MetricsCSVLogger(tmp_path, name="runs", version=0)
    logger.log_metrics({"R10": 3.0, "R5": 2.0, "R1": 1.0}, step=0)
    logger.save()
    continued = MetricsCSVLogger(tmp_path, name="runs", version=0)  # a resumed run
    continued.log_metrics({"loss": 0.5}, step=1)
    continued.save()
    assert read_csv(Path(continued.log_dir) / "metrics.csv") == [
        ["R1", "R5", "R10", "loss", "step"], ["1.0", "2.0", "3.0", "", "0"], ["", "", "", "0.5", "1"]]


def test_steps_logged_again_after_a_resume_replace_their_rows(tmp_path: Path):
    """Killed after step 3 was logged, resumed from a checkpoint of step 1: steps 2 and 3 come again."""
    first = MetricsCSVLogger(tmp_path, name="runs", version=0)
    for step in range(4):
        first.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    first.log_metrics({"R1": 50.0}, step=3)  # a validation at step 3: another row of the same step
    first.save()
    resumed = MetricsCSVLogger(tmp_path, name="runs", version=0)
    for step in (2, 3, 4):
        resumed.log_metrics({"loss": 2.0 / (step + 1)}, step=step)
    resumed.log_metrics({"R1": 60.0}, step=4)
    resumed.save()
    rows = read_csv(Path(resumed.log_dir) / "metrics.csv")
    assert rows == [["R1", "loss", "step"], ["", "1.0", "0"], ["", "0.5", "1"], ["", str(2.0 / 3), "2"],
                    ["", "0.5", "3"], ["50.0", "", "3"], ["", "0.4", "4"], ["60.0", "", "4"]]


def test_a_full_disk_leaves_metrics_and_hparams_whole_and_names_them(tmp_path: Path):
    csv_logger = MetricsCSVLogger(tmp_path, name="runs", version=0)
    csv_logger.log_hyperparams({"lr": 0.1})
    csv_logger.log_metrics({"loss": 1.0}, step=0)
    csv_logger.save()
    folder = Path(csv_logger.log_dir)
    before = {name: (folder / name).read_bytes() for name in ("metrics.csv", "hparams.yaml")}
    with watching_writes(tmp_path) as writes:
        writes.disk_full = True
        csv_logger.log_metrics({"loss": 0.5}, step=1)
        with pytest.raises(UserWriteError, match=rf"^could not write {folder / 'metrics.csv'}: No space left on device$"):
            csv_logger.save()
        with pytest.raises(UserWriteError, match=rf"^could not write {folder / 'hparams.yaml'}: No space left on device$"):
            csv_logger.log_hyperparams({"lr": 0.2})
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert sorted(path.name for path in folder.iterdir()) == ["hparams.yaml", "metrics.csv"]


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # no thread traceback either
def test_an_event_file_that_cannot_be_written_is_named(tmp_path: Path):
    logger = RunTensorBoardLogger(tmp_path, name="runs", version=0, default_hp_metric=False)
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.save()
    events = next(Path(logger.log_dir).glob("events.out.tfevents.*"))
    assert (Path(logger.log_dir) / "hparams.yaml").is_file()
    with watching_writes(tmp_path) as writes:
        writes.disk_full = True
        with pytest.raises(UserWriteError, match=rf"^could not write {events}: No space left on device$"):
            logger.log_metrics({"loss": 0.5}, step=1)
            logger.save()


def test_a_run_logs_to_tensorboard_and_csv_in_one_folder(tmp_path: Path):
    loggers = run_loggers(tmp_path)
    assert [type(logger) for logger in loggers] == [RunTensorBoardLogger, MetricsCSVLogger]
    assert len({logger.log_dir for logger in loggers}) == 1
