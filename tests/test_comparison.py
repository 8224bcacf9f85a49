"""The comparison table of several models (``eval.py --released A=FILE B=FILE --ckpt_path mine.ckpt``)
on the toy world: two released architectures given files of seeded random weights in their authors'
layouts, and the checkpoint of the tiny training run (conftest's ``short_run``)."""

from __future__ import annotations

import csv
import json
import threading
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import eval as eval_cli
from dataloaders.eval_sets import DataRoots, load_eval_set
from models.compared import released_row
from models.released import RELEASED_MODELS, released_model
from models.seeded_weights import synthesize_state_dict
from models.vpr_net import build_network
from tests import parity
from utils.evaluation.comparison import TABLE_FILES, ComparisonTable, compare_models
from utils.evaluation.pipeline import EvalOptions, Evaluator

torch.set_num_threads(2)

SALAD, BOQ = "dinov2_salad_512_32", "resnet50_boq"
#: Each release's evaluation size, made small for the CPU (and different, to see each row keep its own).
SMALL_SIZES = {SALAD: (70, 70), BOQ: (64, 64)}  # SALAD 16 clusters: more than 16 patches
SETS = ["sped", "nordland"]


@pytest.fixture(scope="module")
def released_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two releases' files: SALAD's layout is this project's (a bare state dict), BoQ's ResNet-50
    its authors' (``backbone.net.*``, from the parity fixture); both weights drawn from seeds."""
    folder = tmp_path_factory.mktemp("releases")
    with torch.device("meta"):
        salad = build_network(released_model(SALAD).architecture, pretrained_backbone=False)
    files = {name: folder / released_model(name).file_name for name in (SALAD, BOQ)}
    torch.save(synthesize_state_dict({key: list(t.shape) for key, t in salad.state_dict().items()}, 3), files[SALAD])
    torch.save(parity.released_state_dict("boq_resnet50"), files[BOQ])
    return files


@pytest.fixture
def small_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, size in SMALL_SIZES.items():
        monkeypatch.setitem(RELEASED_MODELS, name, replace(RELEASED_MODELS[name], image_size=size))


def comparison_args(world: Path, files: dict[str, Path], checkpoint: Path, tmp_path: Path) -> list[str]:
    return [
        "--released", f"{SALAD}={files[SALAD]}", f"{BOQ}={files[BOQ]}", "--ckpt_path", str(checkpoint),
        "--data_dir", str(world), "--val_datasets", *SETS, "--device", "cpu", "--num_workers", "0",
        "--batch_size", "8", "--cache_descriptors", "--cache_dir", str(tmp_path / "cache"),
        "--log_dir", str(tmp_path / "eval"),
    ]


def markdown_values(text: str) -> dict[str, list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return {row[0]: row[1:] for row in cells[2:]}  # after the header and the alignment row


def latex_values(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    body = lines[lines.index(r"\midrule") + 1 : lines.index(r"\bottomrule")]
    rows = [[cell.strip() for cell in line.removesuffix(r"\\").split("&")] for line in body]
    return {row[0].replace(r"\_", "_"): row[1:] for row in rows}


def test_one_table_of_two_releases_and_a_trained_checkpoint(
    small_toy_world: Path, released_files: dict[str, Path], short_run, small_sizes: None, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _, checkpoint = short_run
    args = comparison_args(small_toy_world, released_files, checkpoint, tmp_path)
    eval_cli.main(args)
    printed = capsys.readouterr().out
    (run_dir,) = (tmp_path / "eval").iterdir()
    rows = [SALAD, BOQ, checkpoint.stem]

    # The CSV holds each model's own results.json recalls, exactly; each model ran at its own size.
    with (run_dir / TABLE_FILES["csv"]).open() as stream:
        table = list(csv.reader(stream))
    assert table[0] == ["model", *(f"{name} R@{k}" for name in SETS for k in (1, 5, 10))]
    assert [row[0] for row in table[1:]] == rows
    for row in table[1:]:
        results = json.loads((run_dir / row[0] / "results.json").read_text())
        expected = [results[name]["recall@k"][str(k)] for name in SETS for k in (1, 5, 10)]
        assert [float(value) for value in row[1:]] == expected
        size = json.loads((run_dir / row[0] / "run.json").read_text())["image_size"]
        assert size == (list(SMALL_SIZES[row[0]]) if row[0] in SMALL_SIZES else "native")
    assert len({tuple(row[1:]) for row in table[1:]}) > 1  # three models, not one three times

    # Markdown (printed and written) and LaTeX say the same, to one decimal.
    rounded = {row[0]: [f"{float(value):.1f}" for value in row[1:]] for row in table[1:]}
    markdown = (run_dir / TABLE_FILES["markdown"]).read_text()
    assert markdown.strip() in printed
    assert markdown_values(markdown) == rounded
    assert latex_values((run_dir / TABLE_FILES["latex"]).read_text()) == rounded

    # A second run reads every (model, set) from the descriptor cache: nothing is computed.
    def no_compute(self: Evaluator, eval_set: object) -> None:
        raise AssertionError(f"descriptors of {eval_set} computed again")

    monkeypatch.setattr(Evaluator, "compute", no_compute)
    eval_cli.main(args)
    (second,) = set((tmp_path / "eval").iterdir()) - {run_dir}
    assert (second / TABLE_FILES["csv"]).read_text() == (run_dir / TABLE_FILES["csv"]).read_text()


def test_latex_escapes_names_and_spans_each_set() -> None:
    table = ComparisonTable(["msls_val"], (1, 5), {"my_model": {"msls_val": {1: 50.0, 5: 75.25}}})
    assert table.latex().splitlines()[2:7] == [
        r"Model & \multicolumn{2}{c}{msls\_val} \\",
        r"\cmidrule(lr){2-3}",
        r" & R@1 & R@5 \\",
        r"\midrule",
        r"my\_model & 50.0 & 75.2 \\",
    ]
    assert table.csv() == "model,msls_val R@1,msls_val R@5\nmy_model,50.0,75.25\n"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--released", "dinov2_salad=", "dinov2_boq"], "argument --released/--method: 'dinov2_salad=': give the file after '='"),
        (["--released", "sallad", "dinov2_boq"], "argument --released/--method: unknown released model 'sallad'; released: "),
        (["--released", "dinov2_salad", "dinov2_boq", "--random_weights"], "a comparison of several --released models takes neither"),
    ],
)
def test_a_comparison_asked_wrongly_is_one_line(extra: list[str], expected: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.main([*extra, "--log_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("eval.py: error: " + expected)
    assert not any(tmp_path.iterdir())  # refused before any run folder


def test_a_missing_released_file_is_named_before_any_model_runs(small_toy_world: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "dino_salad.ckpt"
    for given, problem in [(missing, "does not exist"), (tmp_path, "is a folder, not a checkpoint file")]:
        with pytest.raises(SystemExit):
            eval_cli.main([
                "--released", f"dinov2_salad={given}", "--data_dir", str(small_toy_world), "--val_datasets", "sped",
                "--device", "cpu", "--log_dir", str(tmp_path / "eval"),
            ])
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"eval.py: error: dinov2_salad: the released file {given} {problem}; give the path of dino_salad.ckpt"
        )
        assert not (tmp_path / "eval").exists()


@pytest.fixture
def served_folder(released_files: dict[str, Path]):
    """The releases' folder served over HTTP on 127.0.0.1 (a download that never leaves the machine)."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(released_files[BOQ].parent))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join()


def test_a_release_named_alone_downloads_and_is_cached_on_the_downloaded_file(
    small_toy_world: Path, released_files: dict[str, Path], served_folder: str, small_sizes: None, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = RELEASED_MODELS[BOQ]
    monkeypatch.setitem(RELEASED_MODELS, BOQ, replace(release, url=served_folder + release.file_name))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch.hub's cache, for this test only
    sped = [load_eval_set("sped", DataRoots(data_dir=str(small_toy_world)))]
    options = EvalOptions(device="cpu", num_workers=0, batch_size=8, cache_dir=tmp_path / "cache")
    local = compare_models([released_row(BOQ, released_files[BOQ])], sped, options, make_folder(tmp_path / "local"))
    downloaded = compare_models([released_row(BOQ)], sped, options, make_folder(tmp_path / "downloaded"))
    assert (tmp_path / "torch" / "hub" / "checkpoints" / release.file_name).is_file()
    assert downloaded.rows == local.rows

    monkeypatch.setattr(Evaluator, "compute", lambda self, eval_set: pytest.fail("computed again"))
    again = compare_models([released_row(BOQ)], sped, options, make_folder(tmp_path / "again"))
    assert again.rows == local.rows


def make_folder(path: Path) -> Path:
    path.mkdir()
    return path
