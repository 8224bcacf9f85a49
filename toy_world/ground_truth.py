"""Ground truth from positions: database images within a radius of each query."""

from __future__ import annotations

import numpy as np


POSITIVE_RADIUS_M = 25.0


def positives_within(query_xy: np.ndarray, db_xy: np.ndarray, radius: float = POSITIVE_RADIUS_M) -> list[np.ndarray]:
    """For each query ``[M, 2]``, the sorted int64 indices of database points ``[N, 2]`` within
    ``radius`` metres (inclusive, as ``NearestNeighbors.radius_neighbors``)."""
    distance = np.sqrt(((query_xy[:, None, :] - db_xy[None, :, :]) ** 2).sum(axis=2))
    return [np.flatnonzero(row <= radius).astype(np.int64) for row in distance]
