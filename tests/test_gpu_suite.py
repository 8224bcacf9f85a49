"""``bench/gpu_suite.sh`` driven with a stand-in ``python3`` (its ``PYTHON`` variable): which benches
it runs and with which flags, how it reports a failure or a bench past its time limit, the wheels
it installs first, and the error for an unknown bench name. No bench really runs here.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SUITE = REPO_ROOT / "bench" / "gpu_suite.sh"
ALL_BENCHES = ["inference", "inference_compiled", "eval_e2e", "train", "train_compiled", "aggregation", "native", "search"]

# Appends "<PYTHONPATH>|<arguments>" to $CALLS; `-m bench.<module>` exits with $EXIT_<module> (0 if unset).
FAKE_PYTHON = """#!/usr/bin/env bash
echo "${PYTHONPATH:-}|$*" >> "$CALLS"
if [[ "$1" == "-m" && "$2" == bench.* ]]; then
    echo "output of $2"
    code_name="EXIT_${2#bench.}"
    exit "${!code_name:-0}"
fi
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def run_suite(tmp_path: Path, **environment: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the suite from ``tmp_path`` with the stand-in python; returns the process and the calls it made."""
    python = tmp_path / "fake_python"
    python.write_text(FAKE_PYTHON)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls.txt"
    inherited = {name: value for name, value in os.environ.items() if name != "BENCHES"}
    env = {**inherited, "PYTHON": str(python), "CALLS": str(calls), "OUT": str(tmp_path / "out"), **environment}
    completed = subprocess.run(["bash", str(SUITE)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return completed, calls.read_text().splitlines() if calls.is_file() else []


def bench_calls(calls: list[str]) -> list[str]:
    """The arguments of the calls that ran a bench module, in order."""
    return [arguments for _, arguments in (call.split("|", 1) for call in calls) if arguments.startswith("-m bench.")]


def test_runs_every_bench_in_order_with_a_log_each(tmp_path: Path) -> None:
    completed, calls = run_suite(tmp_path)
    assert completed.returncode == 0, completed.stderr
    ran = bench_calls(calls)
    assert len(ran) == len(ALL_BENCHES)
    assert ran[0] == "-m bench.inference_speed --device cuda --batch 256"
    assert ran[1] == "-m bench.inference_speed --device cuda --batch 256 --compile"
    assert ran[-1].startswith("-m bench.search_scale ")
    for name in ALL_BENCHES:
        assert (tmp_path / "out" / f"{name}.log").read_text().startswith("output of bench.")
    assert (tmp_path / "out" / "device.txt").is_file()


def test_benches_selects_a_subset(tmp_path: Path) -> None:
    completed, calls = run_suite(tmp_path, BENCHES="train aggregation")
    assert completed.returncode == 0, completed.stderr
    assert bench_calls(calls) == ["-m bench.train_throughput --device cuda", "-m bench.salad_aggregation --device cuda"]
    assert sorted(path.name for path in (tmp_path / "out").glob("*.log")) == ["aggregation.log", "train.log"]


def test_a_failing_bench_is_reported_and_the_next_still_runs(tmp_path: Path) -> None:
    completed, calls = run_suite(tmp_path, BENCHES="train aggregation", EXIT_train_throughput="3")
    assert completed.returncode == 1
    assert "=== train: FAILED (exit 3)" in completed.stdout
    assert "FAILED (exit 3)" in (tmp_path / "out" / "train.log").read_text()
    assert bench_calls(calls)[-1] == "-m bench.salad_aggregation --device cuda"


def test_a_bench_past_its_limit_is_reported_as_such(tmp_path: Path) -> None:
    # `timeout` exits 124 when the limit strikes; a command exiting 124 itself reads the same.
    completed, _ = run_suite(tmp_path, BENCHES="aggregation", EXIT_salad_aggregation="124")
    assert completed.returncode == 1
    assert "=== aggregation: FAILED (ran past its 60s limit)" in completed.stdout


def test_carried_wheels_are_installed_first_and_put_on_the_path(tmp_path: Path) -> None:
    (tmp_path / ".whl").mkdir()
    (tmp_path / ".whl" / "timm-1.0.31-py3-none-any.whl").write_bytes(b"")
    completed, calls = run_suite(tmp_path, BENCHES="aggregation", PYTHONPATH="")
    assert completed.returncode == 0, completed.stderr
    first_path, first_arguments = calls[0].split("|", 1)
    assert first_arguments.startswith("-m pip install ") and "--no-index" in first_arguments
    assert first_arguments.endswith("--target /tmp/site .whl/timm-1.0.31-py3-none-any.whl")
    bench_path, _ = calls[-1].split("|", 1)
    assert bench_path.split(":")[0] == "/tmp/site"


def test_an_unknown_bench_name_is_an_error_naming_it(tmp_path: Path) -> None:
    completed, calls = run_suite(tmp_path, BENCHES="inference infernce")
    assert completed.returncode == 2
    assert "unknown bench 'infernce'" in completed.stderr
    assert "inference_compiled" in completed.stderr  # the names it accepts
    assert bench_calls(calls) == []
