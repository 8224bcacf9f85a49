"""Resuming with the README's command continues the same files (last.ckpt, metrics.csv, the best-k
ranking), names the flags the checkpoint overrules, changes nothing when refused; Ctrl-C saves a
checkpoint that resumes to the weights of an uninterrupted run; validating a NaN checkpoint is one line."""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import shutil
import signal
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

import main as train_cli
from models.vpr_model import NonFiniteError
from tests.file_writes import Writes, watching_writes
from tests.test_train_cli import train_args
from utils.atomic_write import TEMPORARY_SUFFIX
from utils.checkpoint_files import check_resume_checkpoint
from utils.training import resume
from utils.training.resume import InterruptCheckpoint
from utils.checkpoint_digest import DIGEST_KEY, with_digest

RUN = Path("logs") / "lightning_logs" / "version_0"


def relative_run_args(world: Path, *extra: str) -> list[str]:
    """The tiny run of test_train_cli (6 steps an epoch), under ``logs/`` relative to the working
    folder as the README's commands are, a resume checkpoint every 4 steps."""
    args = train_args(world, Path("logs"), "--trainer.max_epochs", "1", "--resume_checkpoint.every_n_train_steps", "4", *extra)
    for flag in ("--checkpoint.dirpath", "--resume_checkpoint.dirpath"):
        del args[args.index(flag):args.index(flag) + 2]
    return args


def contents(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def first_run_writes(small_toy_world: Path, tmp_path_factory) -> Iterator[tuple[Path, Writes]]:
    """One epoch trained in ``<root>/logs``: a pristine copy of ``<root>`` (tests copy it), and what
    the run wrote there."""
    root, pristine = tmp_path_factory.mktemp("first_run"), tmp_path_factory.mktemp("pristine") / "root"
    here = os.getcwd()
    os.chdir(root)
    try:
        with watching_writes(root) as writes:
            train_cli.main(relative_run_args(small_toy_world))
    finally:
        os.chdir(here)
    shutil.copytree(root, pristine)
    yield pristine, writes


@pytest.fixture(scope="module")
def first_run(first_run_writes: tuple[Path, Writes]) -> Path:
    return first_run_writes[0]


@pytest.fixture
def in_copy(first_run: Path, tmp_path: Path) -> Iterator[Path]:
    """The working folder is a copy of the first run's root."""
    root = tmp_path / "root"
    shutil.copytree(first_run, root)
    here = os.getcwd()
    os.chdir(root)
    yield root
    os.chdir(here)


def readme_resume(*extra: str) -> pl.Trainer:
    """The README's resume command, from last.ckpt unless ``extra`` says otherwise."""
    return train_cli.main(["--config", str(RUN / "config.yaml"), "--ckpt_path", str(RUN / "checkpoints" / "last.ckpt"),
                           *extra]).trainer


def test_resuming_twice_continues_the_same_files_and_names_overruled_flags(in_copy: Path):
    killed_write = in_copy / RUN / "checkpoints" / f".last.ckpt.x1y2z3{TEMPORARY_SUFFIX}"  # a kill -9 mid-write
    killed_write.write_bytes(b"PK\x03\x04 half")
    os.utime(killed_write, (1e9, 1e9))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # --model.lr 6e-05 is the default: named all the same, as the user typed it
        trainer = readme_resume("--trainer.max_epochs", "2", "--model.agg_arch", "GeM", "--model.lr", "6e-5")
    messages = [str(warning.message) for warning in caught]
    overruled = [message for message in messages if "resumes the checkpoint's model" in message]
    assert len(overruled) == 1 and "\n" not in overruled[0]
    assert "--model.agg_arch GeM (the checkpoint's: SALAD)" in overruled[0]
    assert "--model.lr 6e-05 (the checkpoint's: 0.001)" in overruled[0]
    assert "lr_sched_args" not in overruled[0]  # null in the run's config.yaml: the model computed it
    assert not [message for message in messages if "won't be reloaded" in message or "exists and is not empty" in message]
    ranking = next(callback for callback in trainer.checkpoint_callbacks if callback.monitor)
    assert sorted(Path(path).name.split("-R1=")[0] for path in ranking.best_k_models) == ["epoch00-step6", "epoch01-step12"]

    readme_resume("--trainer.max_epochs", "3")
    checkpoints = in_copy / RUN / "checkpoints"
    assert not killed_write.exists()
    assert sorted(path.name for path in checkpoints.glob("last*")) == ["last.ckpt"]
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 18 and len(last[DIGEST_KEY]) == 64  # written with a digest of its tensors
    with (in_copy / RUN / "metrics.csv").open() as stream:
        validated = [row["epoch"] for row in csv.DictReader(stream) if row.get("pitts30k_val/R1")]
    assert validated == ["0", "1", "2"]


EVENT_FILES = "events.out.tfevents.*"
"""TensorBoard's event files: appended to, record by record (each with its own checksum)."""


def test_every_file_a_run_writes_is_written_whole(first_run_writes: tuple[Path, Writes]):
    """Each file is written under a temporary name and renamed (a reader, a kill or a full disk
    never meets half of it), except the event files."""
    root, writes = first_run_writes
    direct = {path.relative_to(root).as_posix() for path in writes.opened
              if not (path.name.startswith(".") and path.name.endswith(TEMPORARY_SUFFIX)) and not path.match(EVENT_FILES)}
    assert direct == set()
    renamed = {path.name for path in writes.renamed_to}
    assert {"config.yaml", "hparams.yaml", "metrics.csv", "last.ckpt", "resume-latest.ckpt"} <= renamed
    assert any(path.match(EVENT_FILES) for path in writes.opened)


def test_a_disk_filling_up_mid_run_names_the_file_and_leaves_every_file_whole(in_copy: Path, capsys):
    """The disk fills once the resumed run has written a checkpoint: the run stops with one line
    naming the file it could not write, and every file in the run folder is whole."""
    args = ["--config", str(RUN / "config.yaml"), "--ckpt_path", str(RUN / "checkpoints" / "last.ckpt"),
            "--trainer.max_epochs", "2"]
    with watching_writes(in_copy, fill_disk_after=lambda path: path.suffix == ".ckpt") as writes, \
            pytest.raises(SystemExit) as info:
        train_cli.cli(args)
    assert writes.disk_full and info.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(r"main\.py: error: could not write (\S+): No space left on device", line), line
    named = Path(line.split("could not write ")[1].split(": No space")[0])
    assert named.resolve().is_relative_to((in_copy / RUN).resolve())
    assert [path.name for path in in_copy.rglob(f"*{TEMPORARY_SUFFIX}")] == []
    for checkpoint in (in_copy / RUN / "checkpoints").glob("*.ckpt"):
        check_resume_checkpoint(checkpoint)  # whole, its digest verified
    assert torch.load(RUN / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] >= 6
    with (in_copy / RUN / "metrics.csv").open(newline="") as stream:
        rows = list(csv.reader(stream))
    assert len(rows) > 1 and {len(row) for row in rows} == {len(rows[0])}
    for config in (in_copy / RUN).glob("*.yaml"):
        assert isinstance(yaml.safe_load(config.read_text()), dict), config


def test_going_back_to_an_older_checkpoint_is_said_and_repeats_no_metrics_row(in_copy: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="main"):
        readme_resume("--ckpt_path", str(RUN / "checkpoints" / "resume-latest.ckpt"))  # step 4 of a run at step 6
    assert (f"--ckpt_path {RUN / 'checkpoints' / 'resume-latest.ckpt'} is step 4 of a run whose last.ckpt is at step 6: "
            "training goes back to step 4") in caplog.text
    assert torch.load(RUN / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 6
    with (in_copy / RUN / "metrics.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    recorded = [(row["step"], frozenset(key for key, value in row.items() if value)) for row in rows]
    assert len(recorded) == len(set(recorded)), rows  # steps 5 and 6 and the validation were logged again


def test_a_refused_resume_changes_nothing_in_the_run_folder(in_copy: Path):
    before = contents(in_copy)
    with pytest.raises(ValueError, match="data order is over 24 GSV-Cities places but the data now has 16"):
        readme_resume("--ckpt_path", str(RUN / "checkpoints" / "resume-latest.ckpt"), "--data.cities", '["Bangkok", "Boston"]')
    assert contents(in_copy) == before


def test_a_second_ctrl_c_interrupts_at_once_unless_it_is_the_first_one_forwarded(monkeypatch):
    callback = InterruptCheckpoint()
    clock = iter([100.0, 100.5, 103.0])
    monkeypatch.setattr(resume, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    callback._note(signal.SIGINT, None)
    callback._note(signal.SIGINT, None)  # 0.5 s later: torchrun forwarding the terminal's Ctrl-C
    assert callback.requested
    with pytest.raises(KeyboardInterrupt):
        callback._note(signal.SIGINT, None)  # 3 s later: pressed again


class SigintAtStep(pl.Callback):
    """Sends this process SIGINT, as Ctrl-C does, when training is about to take ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_a_checkpoint_that_resumes_to_the_uninterrupted_weights(small_toy_world, first_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    defaults = train_cli.default_trainer_settings
    monkeypatch.setattr(train_cli, "default_trainer_settings",
                        lambda: {**defaults(), "callbacks": [*defaults()["callbacks"], SigintAtStep(2)]})
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's exit on Ctrl-C
            train_cli.main(relative_run_args(small_toy_world))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl-C from then on
    saved = tmp_path / RUN / "checkpoints" / "interrupted.ckpt"
    assert torch.load(saved, map_location="cpu", weights_only=True)["global_step"] == 3  # the step under way finished
    monkeypatch.setattr(train_cli, "default_trainer_settings", defaults)
    resumed = train_cli.main([*relative_run_args(small_toy_world), "--ckpt_path", str(saved)]).trainer
    expected = torch.load(first_run / RUN / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    weights = resumed.lightning_module.state_dict()
    assert resumed.global_step == 6 and [name for name in expected if not torch.equal(weights[name], expected[name])] == []


class SigintInValidation(pl.Callback):
    """Sends this process SIGINT, as Ctrl-C does, when the first validation of the training starts."""

    def on_validation_start(self, trainer: pl.Trainer, *args: object) -> None:
        if not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_during_a_validation_stops_when_it_ends_with_last_ckpt_to_resume(small_toy_world, first_run, tmp_path,
                                                                                 monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    defaults = train_cli.default_trainer_settings
    monkeypatch.setattr(train_cli, "default_trainer_settings",
                        lambda: {**defaults(), "callbacks": [*defaults()["callbacks"], SigintInValidation()]})
    handler = signal.getsignal(signal.SIGINT)
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(SystemExit):  # Lightning's exit on Ctrl-C
            train_cli.main([*relative_run_args(small_toy_world), "--trainer.max_epochs", "2"])
    finally:
        signal.signal(signal.SIGINT, handler)
    last = tmp_path / RUN / "checkpoints" / "last.ckpt"
    assert f"interrupted at step 6: resume with --ckpt_path {RUN / 'checkpoints' / 'last.ckpt'}" in caplog.text
    saved = torch.load(last, map_location="cpu", weights_only=True)
    expected = torch.load(first_run / RUN / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 6 and saved["epoch"] == expected["epoch"]  # no step of the second epoch
    assert [name for name in expected["state_dict"] if not torch.equal(saved["state_dict"][name], expected["state_dict"][name])] == []
    assert not (tmp_path / RUN / "checkpoints" / "interrupted.ckpt").exists()


def test_validating_a_nan_checkpoint_is_one_line_naming_it(in_copy: Path):
    payload = torch.load(RUN / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    payload["state_dict"]["aggregator.dust_bin"].fill_(float("nan"))
    nan = in_copy / "nan.ckpt"
    torch.save(with_digest(payload), nan)
    with pytest.raises(NonFiniteError) as info:
        train_cli.main(["validate", "--config", str(RUN / "config.yaml"), "--ckpt_path", str(nan)])
    line = train_cli.render(info.value, train_cli.PARAMETER_FLAGS)
    assert line.startswith("non-finite descriptors in validation") and f"the weights of {nan} hold NaN" in line
    assert "\n" not in line
