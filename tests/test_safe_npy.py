"""No ``.npy`` file runs code: planted pickles are refused through every entry point that reads
index files, and the published files still load exactly as numpy reads them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import eval as eval_cli
from dataloaders.safe_npy import RefusedPickleError, load_npy
from dataloaders.vpr_datamodule import VPRDataModule
from tests.planted_pickles import RunsPython, RunsShell
from tools import build_index

FIXTURES = Path(__file__).parent / "fixtures"
PUBLISHED = sorted((FIXTURES / "salad_index").glob("*.npy")) + sorted((FIXTURES / "vprbench").glob("*.npy"))


def plant(path: Path, marker: Path, template: Path, payload: str = "shell") -> Path:
    """``template``'s object array (a real index file) with its first item replaced by a pickle
    that writes ``marker`` when unpickled."""
    array = np.load(template, allow_pickle=True)  # trusted: written by the toy-world generator
    array.reshape(-1)[0] = RunsShell(f"touch {marker}") if payload == "shell" else RunsPython(f"open({str(marker)!r}, 'w')")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=True)
    return path


@pytest.fixture(scope="module")
def toy_world(small_toy_world: Path) -> Path:
    return small_toy_world


def planted_nordland_index(toy_world: Path, index_dir: Path, marker: Path) -> Path:
    """The toy world's Nordland index files in a flat ``index_dir``, ``Nordland_gt.npy`` planted."""
    for source in (toy_world / "datasets" / "Nordland").glob("*.npy"):
        index_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, index_dir / source.name)
    return plant(index_dir / "Nordland_gt.npy", marker, index_dir / "Nordland_gt.npy")


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda path: path.name)
def test_published_files_load_as_numpy_reads_them(path: Path) -> None:
    loaded = load_npy(path, "index file")
    reference = np.load(path, allow_pickle=True)  # trusted: files shipped with the published code
    assert loaded.dtype == reference.dtype and loaded.shape == reference.shape
    for ours, theirs in zip(loaded.reshape(-1), reference.reshape(-1)):
        assert type(ours) is type(theirs)
        np.testing.assert_array_equal(ours, theirs)


def test_object_arrays_of_numpy_and_plain_python_values_round_trip(tmp_path: Path) -> None:
    array = np.empty(5, dtype=object)
    array[:] = [np.arange(3, dtype=np.int64), np.int64(7), "train_val/cph/a.jpg", [1, 2.5, (3, b"x")], {"k": None}]
    np.save(tmp_path / "mixed.npy", array, allow_pickle=True)
    loaded = load_npy(tmp_path / "mixed.npy")
    np.testing.assert_array_equal(loaded[0], np.arange(3))
    assert loaded[0].dtype == np.int64 and type(loaded[1]) is np.int64 and loaded[1] == 7
    assert loaded[2:].tolist() == ["train_val/cph/a.jpg", [1, 2.5, (3, b"x")], {"k": None}]


@pytest.mark.parametrize(("payload", "global_name"), [("shell", "system"), ("python", "builtins.exec")])
def test_a_planted_pickle_is_refused_and_never_runs(tmp_path: Path, payload: str, global_name: str) -> None:
    marker = tmp_path / "marker"
    planted = plant(tmp_path / "Nordland_gt.npy", marker, FIXTURES / "salad_index" / "Nordland_gt.npy", payload)
    with pytest.raises(RefusedPickleError) as refused:
        load_npy(planted, "index file")
    message = str(refused.value)
    assert "\n" not in message
    assert f"index file {planted}" in message and global_name in message and "refused, not executed" in message
    assert not marker.exists()


def test_numeric_only_files_refuse_object_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "strings.npy", np.array(["a", None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object array"):
        load_npy(tmp_path / "strings.npy", "cached descriptors", allow_objects=False)
    with pytest.raises(ValueError, match="object array"):
        load_npy(tmp_path / "strings.npy", mmap_mode="r")


def test_truncated_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "gt.npy"
    np.save(path, np.array([np.arange(3), np.arange(2)], dtype=object), allow_pickle=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=rf"index file {path} is not a readable \.npy array"):
        load_npy(path, "index file")


def test_eval_refuses_a_planted_index_file(toy_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "marker"
    planted = planted_nordland_index(toy_world, tmp_path / "index", marker)
    with pytest.raises(SystemExit):
        eval_cli.main([
            "--val_datasets", "nordland", "--data_dir", str(toy_world), "--index_dir", str(tmp_path / "index"),
            "--random_weights", "--backbone", "resnet18", "--image_size", "56", "56", "--device", "cpu",
            "--num_workers", "0", "--log_dir", str(tmp_path / "logs"),
        ])
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(planted) in last_line and "refused, not executed" in last_line
    assert not marker.exists()


def test_training_validation_refuses_a_planted_index_file(toy_world: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    planted = planted_nordland_index(toy_world, tmp_path / "index", marker)
    data = VPRDataModule(
        val_set_names=["nordland"], data_dir=str(toy_world), index_dir=str(tmp_path / "index"),
        data_root=str(toy_world / "gsv-cities"), num_workers=0,
    )
    with pytest.raises(RefusedPickleError, match=str(planted)):
        data.setup("validate")
    assert not marker.exists()


def test_vprbench_builder_refuses_a_planted_ground_truth(toy_world: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    planted = plant(tmp_path / "ground_truth_new.npy", marker, toy_world / "Nordland" / "ground_truth_new.npy")
    with pytest.raises(SystemExit) as exit_info:
        build_index.main([
            "vprbench", "--dataset_root", str(toy_world / "Nordland"), "--name", "Nordland",
            "--ground_truth", str(planted), "--out_dir", str(tmp_path / "out"),
        ])
    assert str(planted) in str(exit_info.value) and "refused, not executed" in str(exit_info.value)
    assert not marker.exists() and not (tmp_path / "out").exists()
