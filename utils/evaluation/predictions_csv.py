"""A CSV of every query's ranked predictions, for inspecting results outside Python.

Columns: ``query, pred_1, dist_1, pred_2, dist_2, ..., pred_K, dist_K``; one row per query in
query order, ``pred_r`` being the database image at rank ``r`` and ``dist_r`` its distance
(as returned by ``utils.evaluation.search``, so squared L2 or inner product).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from utils.errors import UserFileExistsError


def predictions_header(num_preds: int) -> list[str]:
    """``["query", "pred_1", "dist_1", ..., "pred_K", "dist_K"]`` for ``K = num_preds``."""
    header = ["query"]
    for rank in range(1, num_preds + 1):
        header += [f"pred_{rank}", f"dist_{rank}"]
    return header


def write_predictions_csv(
    path: str | PathLike[str],
    query_paths: Sequence[str | PathLike[str]],
    db_paths: Sequence[str | PathLike[str]],
    indices: np.ndarray,
    distances: np.ndarray,
) -> Path:
    """Write the ranked predictions of every query.

    Args:
        path: output ``.csv``; must not exist yet (its folder is created if needed).
        query_paths: ``M`` query image paths (written as given).
        db_paths: ``N`` database image paths.
        indices: ``[M, K]`` database indices, best first.
        distances: ``[M, K]`` the matching distances.

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
    try:
        stream = path.open("x", newline="", encoding="utf-8")
    except FileExistsError:
        raise UserFileExistsError(f"predictions CSV already exists, not overwriting it: {path}") from None
    with stream:
        writer = csv.writer(stream)
        writer.writerow(predictions_header(indices.shape[1]))
        for query_path, row_indices, row_distances in zip(query_paths, indices, distances):
            row = [os.fspath(query_path)]
            for index, distance in zip(row_indices.tolist(), row_distances):
                row += [os.fspath(db_paths[index]), str(distance)]
            writer.writerow(row)
    return path
