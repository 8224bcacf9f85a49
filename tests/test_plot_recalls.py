"""tools/plot_recalls: one figure per evaluation set from several runs' results files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.plot_recalls import main
from utils.evaluation.results import make_set_result, write_results_json

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_run(folder: Path, sets: dict[str, list[float]], **details: object) -> Path:
    folder.mkdir(parents=True)
    payload = {
        name: make_set_result({1: curve[0]}, curve, num_queries=10, num_db=100, **details) for name, curve in sets.items()
    }
    return write_results_json(folder / "results.json", payload)


def test_every_set_is_a_panel_of_the_one_figure_named_by_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_a = write_run(tmp_path / "run_a", {"msls_val": [80.0, 85.0, 90.0], "sped": [70.0, 75.0]})
    run_b = write_run(tmp_path / "run_b", {"msls_val": [82.0, 88.0, 91.0]})
    out = tmp_path / "fig.png"
    assert main(["--runs", str(run_a), str(run_b), "--labels", "A", "B", "--out", str(out)]) == 0
    with Image.open(out) as figure:
        assert figure.format == "PNG" and figure.width == 2 * 700 and figure.height == 500  # two panels side by side
    assert capsys.readouterr().out.split() == [str(out)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "run_a", "run_b"]


def test_default_labels_tell_runs_apart(tmp_path: Path) -> None:
    from tools.plot_recalls import default_labels

    trained = {"checkpoint": "logs/lightning_logs/version_0/checkpoints/last.ckpt", "weights": "checkpoint"}
    runs = [
        write_run(tmp_path / "a", {"sped": [70.0]}, image_size=[322, 322], **trained),
        write_run(tmp_path / "b", {"sped": [60.0]}, image_size=[224, 224], **trained),
        write_run(tmp_path / "c", {"sped": [10.0]}, image_size=[322, 322], checkpoint=None, weights="random (seed 1)"),
    ]
    assert default_labels(runs) == ["version_0/last @322x322", "version_0/last @224x224", "random weights (seed 1) @322x322"]
    assert default_labels(runs[:1] + runs[2:]) == ["version_0/last", "random weights (seed 1)"]  # Lightning's name: the run's too
    twin = write_run(tmp_path / "d", {"sped": [71.0]}, image_size=[322, 322], **trained)
    assert default_labels([runs[0], twin]) == ["version_0/last @322x322 (a)", "version_0/last @322x322 (d)"]
    other = write_run(tmp_path / "e", {"sped": [72.0]}, checkpoint="logs/lightning_logs/version_1/checkpoints/last-v1.ckpt",
                      weights="checkpoint")
    named = write_run(tmp_path / "f", {"sped": [73.0]}, checkpoint="weights/dino_salad.ckpt", weights="checkpoint")
    assert default_labels([other, named]) == ["version_1/last-v1", "dino_salad"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--labels", "only-one"], "gives 1 labels for 2 --runs"),
        (["--labels", "same", "same"], "labels must differ"),
        (["--sets", "pitts30k_test"], "no run has results for the set 'pitts30k_test'"),
    ],
)
def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    run_a = write_run(tmp_path / "run_a", {"sped": [70.0]})
    run_b = write_run(tmp_path / "run_b", {"sped": [71.0]})
    with pytest.raises(SystemExit) as exit_info:
        main(["--runs", str(run_a), str(run_b), "--out", str(tmp_path / "f.png"), *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_curve_and_existing_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", {"sped": [70.0]})
    no_curve = tmp_path / "old" / "results.json"
    no_curve.parent.mkdir()
    no_curve.write_text('{"sped": {"recall@k": {"1": 70.0}}}')
    with pytest.raises(SystemExit):
        main(["--runs", str(no_curve), "--out", str(tmp_path / "f.png")])
    assert "has no 'recall_curve' field" in capsys.readouterr().err

    existing = tmp_path / "taken.png"
    existing.write_bytes(b"user file")
    with pytest.raises(SystemExit):
        main(["--runs", str(run), "--out", str(existing)])
    assert "not overwriting" in capsys.readouterr().err
    assert existing.read_bytes() == b"user file"
    assert main(["--runs", str(run), "--out", str(existing), "--overwrite"]) == 0
    with Image.open(existing) as figure:
        assert figure.format == "PNG"


def test_a_perfect_curve_is_drawn_inside_the_frame(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", {"sped": [100.0, 100.0, 100.0]})
    out = tmp_path / "perfect.png"
    assert main(["--runs", str(run), "--out", str(out), "--title", ""]) == 0
    pixels = np.asarray(Image.open(out).convert("RGB")).astype(int)
    blue = (np.abs(pixels - (31, 119, 180)).sum(axis=2) < 40)  # matplotlib's first colour: the curve
    frame_rows = np.flatnonzero((pixels.sum(axis=2) < 100).mean(axis=1) > 0.5)  # the black top and bottom lines
    curve_rows = np.flatnonzero(blue.any(axis=1))
    assert curve_rows.size and frame_rows.size and curve_rows.min() > frame_rows.min() + 2


def test_an_empty_results_file_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", {"sped": [70.0, 80.0]})
    empty = tmp_path / "crashed" / "results.json"
    empty.parent.mkdir()
    empty.write_text("{}\n")
    for runs in ([empty], [run, empty]):
        with pytest.raises(SystemExit) as exit_info:
            main(["--runs", *map(str, runs), "--out", str(tmp_path / "f.png")])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith(f"python -m tools.plot_recalls: error: no evaluation set in {empty}")
    assert not list(tmp_path.glob("*.png"))


def test_help_runs_as_a_script() -> None:
    completed = subprocess.run(
        [sys.executable, "tools/plot_recalls.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert "--runs" in completed.stdout and "--labels" in completed.stdout


@pytest.mark.parametrize(
    ("curve", "message"),
    [
        ("[80.0, NaN, 90.0]", "recall_curve[1] is nan, not a recall in percent (a number from 0 to 100)"),
        ("[250, -3]", "recall_curve[0] is 250, not a recall in percent"),
        ("[80.0, -3]", "recall_curve[1] is -3, not a recall in percent"),
        ("[80.0, \"90\"]", "recall_curve[1] is '90', not a recall in percent"),
        ("[true]", "recall_curve[0] is True, not a recall in percent"),
        ("\"abc\"", "'recall_curve' is 'abc', not a non-empty list of recalls in percent"),
        ("[]", "'recall_curve' is '[]', not a non-empty list of recalls in percent"),
    ],
)
def test_a_hand_edited_curve_is_one_line_naming_file_set_and_index(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], curve: str, message: str) -> None:
    edited = tmp_path / "edited" / "results.json"
    edited.parent.mkdir()
    edited.write_text(f'{{"sped": {{"recall_curve": {curve}}}}}')
    with pytest.raises(SystemExit) as exit_info:
        main(["--runs", str(edited), "--out", str(tmp_path / "f.png")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"python -m tools.plot_recalls: error: {edited}, set 'sped': {message}")
    assert not (tmp_path / "f.png").exists()


def test_a_run_folder_is_read_through_its_results_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", {"sped": [70.0, 80.0]})
    out = tmp_path / "f.png"
    assert main(["--runs", str(run.parent), "--out", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    (tmp_path / "other").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["--runs", str(tmp_path / "other"), "--out", str(tmp_path / "g.png")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"python -m tools.plot_recalls: error: {tmp_path / 'other'} is a folder without results.json: "
        "pass an eval.py run folder or its results.json"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_out_naming_a_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], overwrite: list[str]) -> None:
    run = write_run(tmp_path / "run", {"sped": [70.0]})
    folder = tmp_path / "figure.png"
    folder.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["--runs", str(run), "--out", str(folder), *overwrite])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1] == f"python -m tools.plot_recalls: error: --out {folder} is a folder; name the .png file to write"
    assert folder.is_dir() and not list(folder.iterdir())


def test_a_figure_that_cannot_be_written_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from utils.errors import UserWriteError
    import tools.plot_recalls as plot_recalls

    def full_disk(*args: object, **kwargs: object) -> Path:
        raise UserWriteError(f"could not write {tmp_path / 'f.png'}: No space left on device")

    monkeypatch.setattr(plot_recalls, "plot_recall_panels", full_disk)
    run = write_run(tmp_path / "run", {"sped": [70.0]})
    with pytest.raises(SystemExit) as exit_info:
        main(["--runs", str(run), "--out", str(tmp_path / "f.png")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"python -m tools.plot_recalls: error: could not write {tmp_path / 'f.png'}: No space left on device"]
