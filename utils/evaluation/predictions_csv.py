"""A CSV of every query's ranked predictions, for inspecting results outside Python.

Columns: ``query, pred_1, sq_l2_dist_1[, correct_1], ..., pred_K, sq_l2_dist_K[, correct_K]``; one
row per query in query order, ``pred_r`` being the database image at rank ``r``, ``sq_l2_dist_r``
its squared L2 distance to the query's descriptor (as ``utils.evaluation.search`` returns it; 0 to 4
for L2-normalised descriptors), and ``correct_r`` (1 or 0, sets with ground truth only) whether it
is one of the query's positives. The paths are written as given: ``eval.py`` gives them relative to
the set's image root.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import BinaryIO

import numpy as np

from utils.atomic_write import write_atomically
from utils.errors import UserFileExistsError


DISTANCE_COLUMN = "sq_l2_dist"
"""The distance columns' name: squared L2 between descriptors."""


def predictions_header(num_preds: int, with_correct: bool = False) -> list[str]:
    """``["query", "pred_1", "sq_l2_dist_1", ("correct_1",) ..., "pred_K", "sq_l2_dist_K", ("correct_K")]``."""
    header = ["query"]
    for rank in range(1, num_preds + 1):
        header += [f"pred_{rank}", f"{DISTANCE_COLUMN}_{rank}", *([f"correct_{rank}"] if with_correct else [])]
    return header


def write_predictions_csv(
    path: str | PathLike[str],
    query_paths: Sequence[str | PathLike[str]],
    db_paths: Sequence[str | PathLike[str]],
    indices: np.ndarray,
    distances: np.ndarray,
    ground_truth: Sequence[np.ndarray] | None = None,
) -> Path:
    """Write the ranked predictions of every query.

    Args:
        path: output ``.csv``; must not exist yet (its folder is created if needed). Written
            atomically: a full disk or a kill leaves no half file under this name.
        query_paths: ``M`` query image paths (written as given).
        db_paths: ``N`` database image paths.
        indices: ``[M, K]`` database indices, best first.
        distances: ``[M, K]`` the matching squared L2 distances.
        ground_truth: ``M`` arrays of each query's positive database indices: adds the
            ``correct_r`` columns.

    Raises:
        FileExistsError: ``path`` exists.
        ValueError: shapes that disagree or indices outside ``[0, N)``.
    """
    path = Path(path)
    indices = np.asarray(indices)
    distances = np.asarray(distances, dtype=np.float32)
    if indices.ndim != 2 or indices.shape[0] != len(query_paths):
        raise ValueError(
            f"indices must be [{len(query_paths)} queries, K], got shape {indices.shape}"
        )
    if distances.shape != indices.shape:
        raise ValueError(f"distances shape {distances.shape} differs from indices shape {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= len(db_paths)):
        raise ValueError(
            f"prediction indices must lie in [0, {len(db_paths)}), found {indices.min()} .. {indices.max()}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(stream: BinaryIO) -> None:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(predictions_header(indices.shape[1], ground_truth is not None))
        for query, (query_path, row_indices, row_distances) in enumerate(zip(query_paths, indices, distances)):
            row = [os.fspath(query_path)]
            hits = np.isin(row_indices, ground_truth[query]).tolist() if ground_truth is not None else None
            for rank, (index, distance) in enumerate(zip(row_indices.tolist(), row_distances)):
                row += [os.fspath(db_paths[index]), str(distance), *([str(int(hits[rank]))] if hits is not None else [])]
            writer.writerow(row)
        text.flush()
        text.detach()

    try:
        return write_atomically(path, write, exclusive=True)
    except FileExistsError:
        raise UserFileExistsError(f"predictions CSV already exists, not overwriting it: {path}") from None
