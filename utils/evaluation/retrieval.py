"""Retrieval on one evaluation set: search its queries against its database, score recall.

Used by validation during training and by ``eval.py``, so both report the same numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dataloaders.eval_sets.base import EvalSet
from utils.errors import UserError
from utils.evaluation.metrics import RECALL_KS, recall_at_k, recall_curve
from utils.evaluation.search import search, search_per_group
from utils.evaluation.streaming import SidedDescriptors, split_sides

log = logging.getLogger(__name__)

CURVE_LENGTH = 25


@dataclass
class Retrieval:
    """Ranked predictions of every query of a set.

    Attributes:
        distances: ``[M, K]`` squared L2 distances, best first.
        indices: ``[M, K]`` database indices, best first.
        recalls: ``{K: percent}`` for the set's ``ks``, ``None`` without ground truth.
        curve: ``[CURVE_LENGTH]`` Recall@N for N = 1.., ``None`` without ground truth.
    """

    distances: np.ndarray
    indices: np.ndarray
    recalls: dict[int, float] | None
    curve: np.ndarray | None


IDENTICAL_DISTANCE = 1e-10
"""A squared L2 distance this small between two descriptors: the same image, in all likelihood."""


def warn_identical_images(eval_set: EvalSet, distances: np.ndarray) -> None:
    """One warning when queries have a database image of identical descriptor (the database copied
    into the queries folder: those queries are found whatever the model)."""
    if distances.size == 0:
        return
    identical = int(np.count_nonzero(np.asarray(distances)[:, 0] <= IDENTICAL_DISTANCE))
    if identical:
        log.warning("%s: %d of the %d queries have a database image of identical descriptor (the same image in "
                    "both?): they are found whatever the model; check the queries", eval_set.name, identical,
                    len(distances))


def retrieve(
    eval_set: EvalSet,
    descriptors: np.ndarray | SidedDescriptors,
    ks: Sequence[int] = RECALL_KS,
    num_results: int | None = None,
    per_group: bool = False,
    backend: str = "auto",
    storage: str = "fp32",
) -> Retrieval:
    """Search the queries of ``eval_set`` against its database and score recall.

    Args:
        eval_set: the set; ``descriptors`` hold its database then its queries.
        descriptors: ``[num_db + num_queries, D]`` float32, L2-normalised (in memory, memory-mapped,
            or the two sides of ``utils.evaluation.streaming``).
        ks: recall cut-offs. A K beyond the database size is reported too: every database
            image is then retrieved, so Recall@K is Recall@(database size).
        num_results: predictions kept per query (default: the largest of ``ks`` and the curve).
        per_group: search each query only among database images of its group (MSLS city).
        backend: search backend of :func:`utils.evaluation.search.search`.
        storage: ``"fp32"`` or ``"fp16"`` (half the memory for very large databases).
    """
    expected = eval_set.num_db + eval_set.num_queries
    if descriptors.shape[0] != expected:
        raise ValueError(f"{eval_set.name}: got {descriptors.shape[0]} descriptors for {expected} images")
    database, queries = split_sides(descriptors, eval_set.num_db)
    k = min(num_results or max(*ks, CURVE_LENGTH), eval_set.num_db)
    if per_group:
        if eval_set.db_groups is None or eval_set.query_groups is None:
            raise UserError(f"{eval_set.name} has no groups (cities) to restrict the search to")
        distances, indices = search_per_group(
            database, queries, eval_set.db_groups, eval_set.query_groups, k, metric="l2", backend=backend,
            storage=storage,
        )
    else:
        distances, indices = search(database, queries, k, metric="l2", backend=backend, storage=storage)
    warn_identical_images(eval_set, distances)
    if eval_set.ground_truth is None:
        return Retrieval(distances, indices, None, None)
    # K beyond what was retrieved: exact when everything was (k is the database size), else unknown.
    usable_ks = [kk for kk in ks if kk <= k or k == eval_set.num_db]
    at_k = recall_at_k(indices, eval_set.ground_truth, sorted({min(kk, k) for kk in usable_ks}))
    recalls = {kk: at_k[min(kk, k)] for kk in usable_ks}
    curve = recall_curve(indices, eval_set.ground_truth, min(CURVE_LENGTH, k))
    return Retrieval(distances, indices, recalls, curve)
