"""Ground truth from positions: database images within a distance of each query."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from dataloaders.constants import POSITIVE_RADIUS_M
from utils.errors import UserError


MAX_COORDINATE = 1e9
"""Largest UTM easting or northing magnitude taken as a position, in metres (real ones stay below
1e7); a larger value or a NaN/infinity is a corrupt label, which would silently match nothing."""


def is_position(value: float) -> bool:
    """Whether ``value`` can be a UTM coordinate: finite and at most :data:`MAX_COORDINATE` in magnitude."""
    return bool(are_positions(np.float64(value)))


def are_positions(values: np.ndarray) -> np.ndarray:
    """:func:`is_position` of each value: ``values [...]`` float -> bool of the same shape."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (np.abs(values) <= MAX_COORDINATE)


def positives_within(
    db_utm: np.ndarray, query_utm: np.ndarray, max_distance: float = POSITIVE_RADIUS_M
) -> list[np.ndarray]:
    """Database indices within ``max_distance`` of each query (Euclidean, inclusive).

    Args:
        db_utm: ``[N, 2]`` database positions (UTM easting, northing in metres).
        query_utm: ``[M, 2]`` query positions.
        max_distance: radius in metres; a database image at exactly this distance counts
            (default: the published 25 m).

    Returns:
        ``M`` int64 arrays of ascending database indices (possibly empty).
    """
    db_utm = _as_points(db_utm, "db_utm")
    query_utm = _as_points(query_utm, "query_utm")
    if not math.isfinite(max_distance) or max_distance < 0:  # nan would make every recall 0 without a word
        raise UserError(f"positive_dist_threshold={max_distance} is not a distance: pass a finite number of metres >= 0")
    if len(db_utm) == 0:
        return [np.empty(0, dtype=np.int64) for _ in range(len(query_utm))]
    neighbours = cKDTree(db_utm).query_ball_point(query_utm, r=max_distance, return_sorted=True)
    return [np.asarray(indices, dtype=np.int64) for indices in neighbours]


def _as_points(points: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise UserError(f"{what} must have shape [N, 2], got {list(array.shape)}")
    return array
