"""Per-query predictions CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from utils.evaluation.predictions_csv import write_predictions_csv

QUERY_PATHS = ["queries_real/000/q0.jpg", "queries_real/000/q1.jpg", "queries_real/001/q2.jpg"]
DB_PATHS = [f"000/db{i}.jpg" for i in range(6)]
INDICES = np.array([[5, 0], [1, 2], [3, 4]])
DISTANCES = np.array([[0.25, 0.5], [0.125, 1.75], [0.0, 3.5]], dtype=np.float32)


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as stream:
        return list(csv.reader(stream))


def test_one_row_per_query_with_ranked_predictions(tmp_path: Path) -> None:
    path = write_predictions_csv(tmp_path / "predictions.csv", QUERY_PATHS, DB_PATHS, INDICES, DISTANCES)
    rows = read_rows(path)
    assert rows[0] == ["query", "pred_1", "sq_l2_dist_1", "pred_2", "sq_l2_dist_2"]
    assert len(rows) == 1 + len(QUERY_PATHS)
    assert rows[1] == ["queries_real/000/q0.jpg", "000/db5.jpg", "0.25", "000/db0.jpg", "0.5"]
    assert rows[2] == ["queries_real/000/q1.jpg", "000/db1.jpg", "0.125", "000/db2.jpg", "1.75"]
    assert rows[3] == ["queries_real/001/q2.jpg", "000/db3.jpg", "0.0", "000/db4.jpg", "3.5"]


def test_a_correct_column_where_labels_exist(tmp_path: Path) -> None:
    ground_truth = [np.array([0, 5]), np.array([3]), np.array([], dtype=np.int64)]
    path = write_predictions_csv(tmp_path / "p.csv", QUERY_PATHS, DB_PATHS, INDICES, DISTANCES, ground_truth)
    rows = read_rows(path)
    assert rows[0] == ["query", "pred_1", "sq_l2_dist_1", "correct_1", "pred_2", "sq_l2_dist_2", "correct_2"]
    assert [row[3::3] for row in rows[1:]] == [["1", "1"], ["0", "0"], ["0", "0"]]


def test_paths_and_commas_survive(tmp_path: Path) -> None:
    queries = [Path("a,b/q.jpg")]
    path = write_predictions_csv(tmp_path / "p.csv", queries, [Path("d,1.jpg")], np.array([[0]]), np.array([[1.5]]))
    assert read_rows(path)[1] == ["a,b/q.jpg", "d,1.jpg", "1.5"]


def test_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    path.write_text("mine\n")
    with pytest.raises(FileExistsError, match="not overwriting"):
        write_predictions_csv(path, QUERY_PATHS, DB_PATHS, INDICES, DISTANCES)
    assert path.read_text() == "mine\n"


def test_bad_shapes_and_indices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="indices must be \\[3 queries, K\\]"):
        write_predictions_csv(tmp_path / "a.csv", QUERY_PATHS, DB_PATHS, INDICES[:2], DISTANCES[:2])
    with pytest.raises(ValueError, match="differs from indices shape"):
        write_predictions_csv(tmp_path / "b.csv", QUERY_PATHS, DB_PATHS, INDICES, DISTANCES[:, :1])
    with pytest.raises(ValueError, match=r"must lie in \[0, 6\)"):
        write_predictions_csv(tmp_path / "c.csv", QUERY_PATHS, DB_PATHS, INDICES + 1, DISTANCES)
    assert not any(tmp_path.iterdir())
