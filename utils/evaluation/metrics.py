"""Recall@K of ranked retrieval results.

A query is correct at K when any of its first K predictions is in its ground truth (the
database indices of its positives). A query whose ground truth is empty can never be
correct: it counts as a miss at every K and stays in the denominator, so recall is always
"correct queries / all queries given". (Evaluation sets that drop such queries, like MSLS
val, do so when they are built, not here.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RECALL_KS: tuple[int, ...] = (1, 5, 10, 15, 20, 25)
"""The K of Recall@K reported by default (the published tables: 1, 5, 10, ..., 25)."""


def first_correct_rank(
    predictions: np.ndarray, ground_truth: Sequence[np.ndarray] | np.ndarray
) -> np.ndarray:
    """Rank (0-based) of each query's first correct prediction.

    Args:
        predictions: ``[M, K]`` database indices, best first.
        ground_truth: ``M`` arrays of positive database indices (an object array, a list, or
            a 2-d integer array with one row per query).

    Returns:
        ``[M]`` int64: the position of the first prediction found in the ground truth, or
        ``K`` (one past the last column) when none of the ``K`` predictions is correct.
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must be a [queries, K] array, got shape {predictions.shape}")
    if len(ground_truth) != predictions.shape[0]:
        raise ValueError(
            f"ground truth has {len(ground_truth)} entries but predictions has "
            f"{predictions.shape[0]} queries"
        )
    num_columns = predictions.shape[1]
    ranks = np.full(predictions.shape[0], num_columns, dtype=np.int64)
    for query, (row, positives) in enumerate(zip(predictions, ground_truth)):
        hits = np.flatnonzero(np.isin(row, np.asarray(positives).ravel()))
        if hits.size:
            ranks[query] = hits[0]
    return ranks


def recall_at_k(
    predictions: np.ndarray,
    ground_truth: Sequence[np.ndarray] | np.ndarray,
    ks: Sequence[int] = RECALL_KS,
) -> dict[int, float]:
    """Recall@K in percent for every K of ``ks``.

    Args:
        predictions: ``[M, >= max(ks)]`` database indices, best first.
        ground_truth: ``M`` arrays of positive database indices.
        ks: the cut-offs, each at least 1.

    Returns:
        ``{K: percent of the M queries with a correct prediction in their first K}``, in the
        order of ``ks``.
    """
    predictions = np.asarray(predictions)
    if len(ks) == 0 or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty list of positive integers, got {list(ks)}")
    if predictions.ndim != 2 or predictions.shape[0] == 0:
        raise ValueError(f"predictions must be a non-empty [queries, K] array, got shape {predictions.shape}")
    if predictions.shape[1] < max(ks):
        raise ValueError(
            f"predictions has {predictions.shape[1]} columns, fewer than the largest K {max(ks)}"
        )
    ranks = first_correct_rank(predictions, ground_truth)
    return {int(k): float(np.mean(ranks < int(k)) * 100.0) for k in ks}


def recall_curve(
    predictions: np.ndarray,
    ground_truth: Sequence[np.ndarray] | np.ndarray,
    max_n: int | None = None,
) -> np.ndarray:
    """Recall@N in percent for N = 1 .. ``max_n``.

    Args:
        predictions: ``[M, >= max_n]`` database indices, best first.
        ground_truth: ``M`` arrays of positive database indices.
        max_n: the last N; None means every column of ``predictions``.

    Returns:
        ``[max_n]`` float64, entry ``n - 1`` holding Recall@n (non-decreasing).
    """
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[0] == 0:
        raise ValueError(f"predictions must be a non-empty [queries, K] array, got shape {predictions.shape}")
    if max_n is None:
        max_n = predictions.shape[1]
    if not 1 <= max_n <= predictions.shape[1]:
        raise ValueError(
            f"max_n must be between 1 and the {predictions.shape[1]} prediction columns, got {max_n}"
        )
    ranks = first_correct_rank(predictions[:, :max_n], ground_truth)
    hits_per_rank = np.bincount(ranks, minlength=max_n + 1)[:max_n]
    return np.cumsum(hits_per_rank) / predictions.shape[0] * 100.0
