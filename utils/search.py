"""Exact k-nearest-neighbour search of query descriptors in a database of descriptors.

Two interchangeable backends give the same rankings:

- ``faiss``: a flat (brute-force) ``IndexFlatL2`` / ``IndexFlatIP``, copied to every GPU faiss
  can see. faiss is imported only when this backend is used.
- ``torch``: a matrix-product top-k that walks the database in blocks of ``db_chunk`` items
  and the queries in blocks of ``query_chunk`` items, merging each block's top-k into a
  running top-k, so no score matrix is ever larger than ``[query_chunk, db_chunk]``.
  It runs on CUDA when torch sees a GPU, else on the CPU.

Distances follow faiss: ``"l2"`` gives squared Euclidean distances, smallest first;
``"ip"`` gives inner products, largest first. On L2-normalised descriptors (as SALAD's) both
metrics give the same ranking, since ``|q - d|^2 = 2 - 2 q.d``.

``k`` larger than the number of database items is an error (``ValueError``), never a silent
clamp, so every result has exactly ``k`` columns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import ModuleType
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

Metric = Literal["ip", "l2"]
Backend = Literal["auto", "faiss", "torch"]

METRICS: tuple[str, ...] = ("ip", "l2")
BACKENDS: tuple[str, ...] = ("auto", "faiss", "torch")
DEFAULT_DB_CHUNK = 65_536
"""Database block size of the torch backend when ``db_chunk`` is None: with the default
``query_chunk`` of 1024 a score block holds 64 Mi floats (256 MiB)."""
FAISS_GPU_MAX_K = 2048
"""Largest ``k`` faiss's GPU flat search accepts; larger ``k`` stays on the CPU index."""


def search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: Metric = "l2",
    backend: Backend = "auto",
    query_chunk: int = 1024,
    db_chunk: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Find the ``k`` nearest database items of every query.

    Args:
        database: ``[N, D]`` descriptors (converted to contiguous float32).
        queries: ``[M, D]`` descriptors (converted to contiguous float32).
        k: neighbours per query, ``1 <= k <= N``.
        metric: ``"l2"`` (squared Euclidean, ascending) or ``"ip"`` (inner product, descending).
        backend: ``"faiss"``, ``"torch"``, or ``"auto"`` (faiss when it can be imported,
            otherwise torch).
        query_chunk: queries searched per step (both backends; bounds memory).
        db_chunk: database items per step of the torch backend; None means
            ``DEFAULT_DB_CHUNK``. The faiss backend blocks the database itself.
        device: torch backend only: where to compute; None means CUDA when available.

    Returns:
        ``(distances, indices)``: ``[M, k]`` float32 distances and ``[M, k]`` int64 database
        indices, best first.

    Raises:
        ValueError: bad shapes, non-finite values, unknown metric/backend, or ``k`` out of range.
        ImportError: ``backend="faiss"`` but faiss is not installed.
    """
    database, queries = _validated_descriptors(database, queries)
    _check_options(k, metric, backend, query_chunk, db_chunk, database.shape[0])
    if backend != "torch":
        faiss_module = _import_faiss(required=backend == "faiss")
        if faiss_module is not None:
            return _faiss_search(faiss_module, database, queries, k, metric, query_chunk)
        logger.info("faiss is not installed: searching with the torch backend")
    return _torch_search(
        database, queries, k, metric, query_chunk, db_chunk or DEFAULT_DB_CHUNK, device
    )


def search_per_group(
    database: np.ndarray,
    queries: np.ndarray,
    db_groups: Sequence[object] | np.ndarray,
    query_groups: Sequence[object] | np.ndarray,
    k: int,
    metric: Metric = "l2",
    backend: Backend = "auto",
    query_chunk: int = 1024,
    db_chunk: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Search every query only among the database items of its own group (e.g. MSLS city).

    Args:
        database: ``[N, D]`` descriptors.
        queries: ``[M, D]`` descriptors.
        db_groups: ``[N]`` group label of each database item (any hashable, e.g. city names).
        query_groups: ``[M]`` group label of each query.
        k: neighbours per query; every query's group needs at least ``k`` database items.
        metric, backend, query_chunk, db_chunk, device: as in :func:`search`.

    Returns:
        ``(distances, indices)``: ``[M, k]`` float32 and ``[M, k]`` int64, where the indices
        are positions in the whole ``database`` (not within the group), best first.

    Raises:
        ValueError: label counts that do not match the descriptors, or a query group with
            fewer than ``k`` database items (including none).
    """
    database, queries = _validated_descriptors(database, queries)
    db_labels = np.asarray(db_groups)
    query_labels = np.asarray(query_groups)
    if db_labels.shape != (database.shape[0],):
        raise ValueError(
            f"db_groups must hold one label per database item ({database.shape[0]}), "
            f"got shape {db_labels.shape}"
        )
    if query_labels.shape != (queries.shape[0],):
        raise ValueError(
            f"query_groups must hold one label per query ({queries.shape[0]}), "
            f"got shape {query_labels.shape}"
        )
    _check_options(k, metric, backend, query_chunk, db_chunk, database.shape[0])

    distances = np.empty((queries.shape[0], k), dtype=np.float32)
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    groups = list(dict.fromkeys(query_labels.tolist()))  # first-seen order
    for group in tqdm(groups, desc="search per group", unit="group", leave=False):
        query_rows = np.flatnonzero(query_labels == group)
        db_rows = np.flatnonzero(db_labels == group)
        if db_rows.size < k:
            raise ValueError(
                f"group {group!r} has {db_rows.size} database items, fewer than k={k}"
            )
        group_distances, group_indices = search(
            database[db_rows], queries[query_rows], k, metric, backend,
            query_chunk, db_chunk, device,
        )
        distances[query_rows] = group_distances
        indices[query_rows] = db_rows[group_indices]
    return distances, indices


def _validated_descriptors(
    database: np.ndarray, queries: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return both arrays as C-contiguous float32 after checking shapes and values."""
    arrays = []
    for name, array in (("database", database), ("queries", queries)):
        array = np.ascontiguousarray(array, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"{name} must be a non-empty [count, dim] array, got shape {array.shape}")
        if not _all_finite(array):
            raise ValueError(f"{name} holds NaN or infinite values")
        arrays.append(array)
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(
            f"database and queries differ in dimension: {arrays[0].shape[1]} vs {arrays[1].shape[1]}"
        )
    return arrays[0], arrays[1]


def _all_finite(array: np.ndarray, rows_per_block: int = 4096) -> bool:
    """``np.isfinite(array).all()`` for ``[count, dim]`` without a full-size boolean copy."""
    return all(
        np.isfinite(array[start : start + rows_per_block]).all()
        for start in range(0, array.shape[0], rows_per_block)
    )


def _check_options(
    k: int, metric: str, backend: str, query_chunk: int, db_chunk: int | None, num_db: int
) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not 1 <= k <= num_db:
        raise ValueError(f"k must be between 1 and the database size {num_db}, got {k}")
    if query_chunk < 1:
        raise ValueError(f"query_chunk must be positive, got {query_chunk}")
    if db_chunk is not None and db_chunk < 1:
        raise ValueError(f"db_chunk must be positive or None, got {db_chunk}")


def _import_faiss(required: bool) -> ModuleType | None:
    """Import faiss, or return None (``required=False``) / raise (``required=True``) without it."""
    try:
        import faiss
    except ImportError as error:
        if required:
            raise ImportError(
                "backend='faiss' needs the faiss package (pip install faiss-cpu or faiss-gpu)"
            ) from error
        return None
    return faiss


def _faiss_search(
    faiss: ModuleType, database: np.ndarray, queries: np.ndarray, k: int, metric: str, query_chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flat faiss index over ``database`` [N, D], on all GPUs when faiss has any."""
    dim = database.shape[1]
    index = faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)
    if faiss.get_num_gpus() > 0 and k <= FAISS_GPU_MAX_K:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(database)
    distances = np.empty((queries.shape[0], k), dtype=np.float32)
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    starts = range(0, queries.shape[0], query_chunk)
    for start in tqdm(starts, desc="search (faiss)", unit="chunk", leave=False):
        stop = start + query_chunk
        distances[start:stop], indices[start:stop] = index.search(queries[start:stop], k)
    return distances, indices


@torch.no_grad()
def _torch_search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str,
    query_chunk: int,
    db_chunk: int,
    device: str | torch.device | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blockwise top-k: each database block is moved to ``device`` once and scored against
    every query block; the running ``[M, k]`` best list is merged with each block's top-k."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    largest = metric == "ip"
    num_queries = queries.shape[0]
    worst = -torch.inf if largest else torch.inf
    best_scores = torch.full((num_queries, k), worst, dtype=torch.float32, device=device)
    best_indices = torch.full((num_queries, k), -1, dtype=torch.int64, device=device)
    all_queries = torch.from_numpy(queries)
    db_starts = range(0, database.shape[0], db_chunk)
    steps = len(db_starts) * len(range(0, num_queries, query_chunk))
    with tqdm(total=steps, desc="search (torch)", unit="block", leave=False) as progress:
        for db_start in db_starts:
            db_block = torch.from_numpy(database[db_start : db_start + db_chunk]).to(device)
            db_sq_norms = db_block.square().sum(dim=1) if metric == "l2" else None
            block_k = min(k, db_block.shape[0])
            for q_start in range(0, num_queries, query_chunk):
                rows = slice(q_start, q_start + query_chunk)
                query_block = all_queries[rows].to(device)
                scores = query_block @ db_block.T  # [m, n] inner products
                if db_sq_norms is not None:
                    query_sq_norms = query_block.square().sum(dim=1, keepdim=True)
                    scores = (query_sq_norms + db_sq_norms - 2.0 * scores).clamp_(min=0.0)
                block_scores, block_indices = scores.topk(block_k, dim=1, largest=largest)
                merged_scores = torch.cat([best_scores[rows], block_scores], dim=1)
                merged_indices = torch.cat([best_indices[rows], block_indices + db_start], dim=1)
                top_scores, top_positions = merged_scores.topk(k, dim=1, largest=largest)
                best_scores[rows] = top_scores
                best_indices[rows] = merged_indices.gather(1, top_positions)
                progress.update()
    return best_scores.cpu().numpy(), best_indices.cpu().numpy()
