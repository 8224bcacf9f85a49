"""The toy demo end to end on a small world: train, evaluate trained and untrained, the final line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_the_whole_pipeline_and_ends_with_the_toy_line(small_toy_world: Path, tmp_path: Path):
    world = small_toy_world
    completed = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--data", str(world), "--max_epochs", "1", "--log_dir", str(tmp_path / "logs")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    last = completed.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"toy R@1: untrained=\d+\.\d trained=\d+\.\d", last), last
    run = next((tmp_path / "logs").glob("demo_*"))
    assert list((run / "train").rglob("last.ckpt"))
    assert len(list((run / "eval_trained").rglob("results.json"))) == 1
    assert len(list((run / "eval_untrained").rglob("results.json"))) == 1
