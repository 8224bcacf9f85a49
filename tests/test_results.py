"""Recall table, results JSON and run folders."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from utils.errors import UserError
from utils.evaluation.results import (
    format_recall_table,
    make_set_result,
    new_run_dir,
    read_results_json,
    recall_curve_from_result,
    recalls_from_result,
    write_results_json,
)


def table_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_recall_table_has_title_header_and_values() -> None:
    text = format_recall_table("msls_val", {1: 92.1621, 5: 96.4865, 10: 97.0})
    content_lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(content_lines) == 3  # title, header, values
    assert table_cells(content_lines[0]) == ["msls_val"]
    assert table_cells(content_lines[1]) == ["R@1", "R@5", "R@10"]
    assert table_cells(content_lines[2]) == ["92.16", "96.49", "97.00"]


def test_results_json_round_trip(tmp_path: Path) -> None:
    entry = make_set_result(
        {1: np.float64(75.0), 5: 90.0},
        np.array([75.0, 80.0, 85.0, 88.0, 90.0]),
        num_queries=np.int64(740),
        num_db=18871,
        image_size=(322, 322),
        checkpoint=Path("weights/dino_salad.ckpt"),
    )
    path = write_results_json(tmp_path / "results.json", {"msls_val": entry})

    raw = json.loads(path.read_text())
    assert raw["msls_val"]["recall@k"] == {"1": 75.0, "5": 90.0}
    assert raw["msls_val"]["recall_curve"] == [75.0, 80.0, 85.0, 88.0, 90.0]
    assert raw["msls_val"]["num_queries"] == 740
    assert raw["msls_val"]["num_db"] == 18871
    assert raw["msls_val"]["image_size"] == [322, 322]
    assert raw["msls_val"]["checkpoint"] == "weights/dino_salad.ckpt"

    loaded = read_results_json(path)
    assert recalls_from_result(loaded["msls_val"]) == {1: 75.0, 5: 90.0}
    np.testing.assert_array_equal(recall_curve_from_result(loaded["msls_val"]), [75.0, 80.0, 85.0, 88.0, 90.0])
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left


def test_results_json_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_results_json(path, {"a": make_set_result({1: 10.0}, [10.0], 1, 1)})
    with pytest.raises(FileExistsError, match="not overwriting"):
        write_results_json(path, {"b": make_set_result({1: 20.0}, [20.0], 1, 1)})
    assert list(read_results_json(path)) == ["a"]
    write_results_json(path, {"b": make_set_result({1: 20.0}, [20.0], 1, 1)}, overwrite=True)
    assert list(read_results_json(path)) == ["b"]


def test_read_results_json_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_results_json(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_results_json(broken)
    wrong_shape = tmp_path / "list.json"
    wrong_shape.write_text("[1, 2]")
    with pytest.raises(ValueError, match="set name -> object"):
        read_results_json(wrong_shape)


def test_unserialisable_detail_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="object"):
        write_results_json(tmp_path / "r.json", {"a": make_set_result({1: 1.0}, [1.0], 1, 1, bad=object())})
    assert not any(tmp_path.iterdir())


def test_new_run_dir_never_reuses_a_folder(tmp_path: Path) -> None:
    now = datetime(2026, 11, 26, 10, 31, 2)
    first = new_run_dir(tmp_path / "eval", "", now=now)
    second = new_run_dir(tmp_path / "eval", "", now=now)
    third = new_run_dir(tmp_path / "eval", "", now=now)
    assert first == tmp_path / "eval" / "2026-11-26_10-31-02"
    assert second == tmp_path / "eval" / "2026-11-26_10-31-02_1"
    assert third == tmp_path / "eval" / "2026-11-26_10-31-02_2"
    assert all(path.is_dir() and not any(path.iterdir()) for path in (first, second, third))


def test_new_run_dir_with_prefix_skips_existing(tmp_path: Path) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5)
    (tmp_path / "salad_2026-01-02_03-04-05").mkdir()
    (tmp_path / "salad_2026-01-02_03-04-05" / "results.json").write_text("{}")
    run_dir = new_run_dir(tmp_path, "salad", now=now)
    assert run_dir == tmp_path / "salad_2026-01-02_03-04-05_1"
    assert (tmp_path / "salad_2026-01-02_03-04-05" / "results.json").read_text() == "{}"


def test_a_run_folder_parent_that_cannot_be_created_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("in the way")
    with pytest.raises(UserError, match=rf"cannot create run folders in {tmp_path / 'a_file' / 'eval'} \(.+\); choose"):
        new_run_dir(tmp_path / "a_file" / "eval")
