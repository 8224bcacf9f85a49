"""What a researcher keeps of an evaluation: the report page (checked in headless Chromium where
one is installed), eval.log, the predictions CSV in the run folder, and errors that say what to do."""

from __future__ import annotations

import csv
import logging
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_eval_cli import (  # noqa: F401 (fixtures)
    checkpoints,
    common_flags,
    run_eval,
    run_eval_error,
    sped_one_wrong_dir,
    write_image,
)
from utils.evaluation.report import gallery_order

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def test_the_gallery_shows_wrong_queries_first() -> None:
    indices = np.array([[0, 1], [1, 0], [2, 0], [0, 2]])
    ground_truth = [np.array([0]), np.array([0]), np.array([2]), np.array([2])]
    assert gallery_order(indices, ground_truth, 10) == [1, 3, 0, 2]
    assert gallery_order(indices, ground_truth, 1) == [1]
    assert gallery_order(indices, None, 3) == [0, 1, 2]


@pytest.fixture
def run_dir(sped_one_wrong_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Path:
    """One labelled run (SPED, 3 queries, query 1 wrong at rank 1) asking for its predictions CSV."""
    caplog.set_level(logging.INFO)  # as eval.py's own logging setup does, which pytest's handlers pre-empt
    return run_eval([
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_one_wrong_dir), "--val_datasets", "SPED",
        "--save_predictions", *common_flags(tmp_path),
    ])


def test_a_run_folder_holds_its_report_log_and_predictions(run_dir: Path) -> None:
    page = (run_dir / "index.html").read_text()
    assert re.search(r"<tr><td>sped</td><td>3</td><td>6</td><td>66\.67</td>", page)  # R@1: 2 of 3
    assert 'src="recall_sped.png"' in page and (run_dir / "recall_sped.png").is_file()
    figures = re.findall(r'<figure class="(\w+)"><img src="([^"]+)"', page)
    assert [kind for kind, _ in figures] == ["wrong", "right", "right"]  # the wrong query first
    assert all((run_dir / image).is_file() for _, image in figures)
    assert "http" not in page and "<script" not in page  # offline, plain

    log = (run_dir / "eval.log").read_text()
    assert "dinov2_vits14 + SALAD (architecture from the checkpoint" in log  # logged before the folder existed
    assert "R@1" in log and f"report: {run_dir / 'index.html'}" in log

    with open(run_dir / "predictions_sped.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0][:4] == ["query", "pred_1", "sq_l2_dist_1", "correct_1"]
    assert [row[3] for row in rows[1:]] == ["1", "0", "1"]
    assert rows[1][0] == "query/0000000.jpg" and rows[1][1].startswith("ref/")  # relative to the set's root


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_the_report_opens_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    page = (run_dir / "index.html").as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *profile, "--dump-dom", page],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table class="recalls">' in dom.stdout and dom.stdout.count("<figure") == 3
    screenshot = tmp_path / "report.png"
    shot = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, *profile, f"--screenshot={screenshot}", "--window-size=1000,1400",
                           page], capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    red_frame = (pixels[..., 0] > 180) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red_frame.sum() > 100  # the wrong query's frame is drawn: the gallery's images loaded


def test_folders_without_positions_suggest_no_labels(
    tmp_path: Path, checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for folder in ("db", "queries"):
        write_image(tmp_path / folder / "photo.jpg", seed=1)
    line = run_eval_error([
        "--ckpt_path", str(checkpoints["lightning"]), "--database_folder", str(tmp_path / "db"),
        "--queries_folder", str(tmp_path / "queries"), *common_flags(tmp_path),
    ], capsys)
    assert "not a gmberton file name" in line and line.endswith("add --no_labels (predictions only, no recall)")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_eval_log_on_a_full_disk_is_one_error_naming_it(tmp_path: Path, monkeypatch, capsys) -> None:
    from utils.errors import UserWriteError
    from utils.evaluation import console_log

    log_path = tmp_path / "eval.log"
    # the kernel's full disk: every write to /dev/full fails with ENOSPC
    monkeypatch.setattr(console_log, "open", lambda path, mode, encoding: open("/dev/full", "w", encoding=encoding),
                        raising=False)
    with console_log.ConsoleLog() as log:
        print("the model line")
        with pytest.raises(UserWriteError, match=rf"^could not write {log_path}: No space left on device$"):
            log.open(log_path)
        print("on the console only from now on")
    assert capsys.readouterr().out == "the model line\non the console only from now on\n"
