"""Exact k-nearest-neighbour search of query descriptors in a database of descriptors.

Two interchangeable backends give the same rankings:

- ``faiss``: a flat (brute-force) index, on every GPU faiss can see. faiss is imported only
  when this backend is used.
- ``torch``: a matrix-product top-k that walks the database in blocks of ``db_chunk`` items
  and the queries in blocks of ``query_chunk`` items, merging each block's top-k into a
  running top-k, so no score matrix is ever larger than ``[query_chunk, db_chunk]``.
  It runs on CUDA when torch sees a GPU, else on the CPU.

Distances follow faiss: ``"l2"`` gives squared Euclidean distances, smallest first;
``"ip"`` gives inner products, largest first. On L2-normalised descriptors (as SALAD's) both
metrics give the same ranking, since ``|q - d|^2 = 2 - 2 q.d``.

Large databases (SF-XL: 2.8M x 8448 is ~95 GB in float32):

- The database may be float16, float32 or float64, in memory or memory-mapped
  (``np.load(path, mmap_mode="r")``). It is read ``db_chunk`` rows at a time and converted per
  chunk, so no float32 copy of the whole database is ever made by this module. faiss on the CPU
  searches a memory-mapped database block by block without building an index (no copy of it in
  memory at all: a database larger than memory is searched in the memory of one block), with
  the rankings of the in-memory index (same brute force per block).
- ``storage="fp16"`` keeps the searched copy of the database in float16, half the memory of
  ``"fp32"``; scores are still computed in float32 (on GPU faiss, from float16 queries too):

  * faiss on CPU: an ``IndexScalarQuantizer`` (``QT_fp16``), searched block by block: each block
    of ``db_chunk`` items is decoded to float32 and ranked with faiss's BLAS brute force
    (several times faster than the index's own per-query scan, which decodes every stored
    vector once per query).
  * faiss on GPU: a float16 ``GpuIndexFlat``; with several GPUs the database is sharded
    across them (each holds 1/n of it) instead of copied to each.
  * torch: each database block is rounded to float16 before it moves to the device, and
    widened to float32 there for the scores. The host-side saving comes from passing a
    float16 (or memory-mapped) database: it is never widened as a whole.

  Rounding to float16 (about 3 significant digits) can swap near-tied neighbours; on
  L2-normalised descriptors it leaves Recall@1 essentially unchanged (see
  ``bench/search_scale.py``).

``k`` larger than the number of database items is an error (``ValueError``), never a silent
clamp, so every result has exactly ``k`` columns.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm

from utils.errors import MissingPackageError, UserError

logger = logging.getLogger(__name__)

Metric = Literal["ip", "l2"]
Backend = Literal["auto", "faiss", "torch"]
Storage = Literal["fp32", "fp16"]

METRICS: tuple[str, ...] = ("ip", "l2")
BACKENDS: tuple[str, ...] = ("auto", "faiss", "torch")
STORAGES: tuple[str, ...] = ("fp32", "fp16")
DEFAULT_DB_CHUNK = 65_536
"""Most database items per block when ``db_chunk`` is None: with the default ``query_chunk``
of 1024 a torch score block then holds at most 64 Mi floats (256 MiB)."""
DB_BLOCK_BYTES = 256 * 2**20
"""When ``db_chunk`` is None, a block of float32 database rows also stays within this many
bytes (e.g. 7943 rows of 8448 dims), bounding the memory of wide descriptors too."""
FAISS_GPU_MAX_K = 2048
"""Largest ``k`` faiss's GPU flat search accepts; larger ``k`` stays on the CPU index."""
FAISS_GPU_ADD_BYTES = 2 * 2**30
"""Float32 bytes per ``add`` to a GPU index, at least: each add recomputes the norms of every
vector already stored, so small adds would make filling quadratic in the database size."""
FLOAT16_MAX = float(np.finfo(np.float16).max)
"""Largest magnitude float16 holds (65504); ``storage="fp16"`` rejects larger values."""
CHECK_ROWS = 4096
"""Rows per block when checking descriptor values (bounds the temporary arrays)."""


def search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: Metric = "l2",
    backend: Backend = "auto",
    query_chunk: int = 1024,
    db_chunk: int | None = None,
    device: str | torch.device | None = None,
    storage: Storage = "fp32",
) -> tuple[np.ndarray, np.ndarray]:
    """Find the ``k`` nearest database items of every query.

    Args:
        database: ``[N, D]`` descriptors, float16/32/64, in memory or memory-mapped; read and
            converted ``db_chunk`` rows at a time, never copied whole.
        queries: ``[M, D]`` descriptors (converted to contiguous float32).
        k: neighbours per query, ``1 <= k <= N``.
        metric: ``"l2"`` (squared Euclidean, ascending) or ``"ip"`` (inner product, descending).
        backend: ``"faiss"``, ``"torch"``, or ``"auto"`` (faiss when it can be imported,
            otherwise torch).
        query_chunk: queries searched per step (both backends; bounds memory).
        db_chunk: database items per block: per ``add`` to a faiss index (on GPU at least
            ``FAISS_GPU_ADD_BYTES`` of float32), per decoded block of a CPU float16 faiss
            index, per torch step. None means at most ``DEFAULT_DB_CHUNK`` items and at most
            ``DB_BLOCK_BYTES`` of float32 (``default_db_chunk``).
        device: torch backend only: where to compute; None means CUDA when available.
        storage: ``"fp32"`` (exact) or ``"fp16"`` (the database is held, and searched, as
            float16: half the memory; see the module docstring).

    Returns:
        ``(distances, indices)``: ``[M, k]`` float32 distances and ``[M, k]`` int64 database
        indices, best first.

    Raises:
        ValueError: bad shapes or dtypes, non-finite values (or, for ``"fp16"``, values beyond
            the float16 range), unknown metric/backend/storage, or ``k`` out of range.
        ImportError: ``backend="faiss"`` but faiss is not installed.
    """
    _check_options(metric, backend, storage, query_chunk, db_chunk)
    database, queries = _validated_descriptors(database, queries, storage)
    _check_k(k, database.shape[0])
    rows_per_block = db_chunk or default_db_chunk(database.shape[1])
    if backend != "torch":
        faiss_module = _import_faiss(required=backend == "faiss")
        if faiss_module is not None:
            return _faiss_search(
                faiss_module, database, queries, k, metric, storage, query_chunk, rows_per_block
            )
        logger.info("faiss is not installed: searching with the torch backend")
    return _torch_search(database, queries, k, metric, storage, query_chunk, rows_per_block, device)


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
    storage: Storage = "fp32",
) -> tuple[np.ndarray, np.ndarray]:
    """Search every query only among the database items of its own group (e.g. MSLS city).

    Args:
        database: ``[N, D]`` descriptors (as in :func:`search`; each group's rows are copied
            out in their own dtype).
        queries: ``[M, D]`` descriptors.
        db_groups: ``[N]`` group label of each database item (any hashable, e.g. city names).
        query_groups: ``[M]`` group label of each query.
        k: neighbours per query; every query's group needs at least ``k`` database items.
        metric, backend, query_chunk, db_chunk, device, storage: as in :func:`search`.

    Returns:
        ``(distances, indices)``: ``[M, k]`` float32 and ``[M, k]`` int64, where the indices
        are positions in the whole ``database`` (not within the group), best first.

    Raises:
        ValueError: label counts that do not match the descriptors, or a query group with
            fewer than ``k`` database items (including none).
    """
    _check_options(metric, backend, storage, query_chunk, db_chunk)
    database, queries = _validated_descriptors(database, queries, storage)
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
    _check_k(k, database.shape[0])

    distances = np.empty((queries.shape[0], k), dtype=np.float32)
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    groups = list(dict.fromkeys(query_labels.tolist()))  # first-seen order
    for group in tqdm(groups, desc="search per group", unit="group", leave=False, disable=len(groups) < 2):
        query_rows = np.flatnonzero(query_labels == group)
        db_rows = np.flatnonzero(db_labels == group)
        if db_rows.size < k:
            raise UserError(
                f"group {group!r} has {db_rows.size} database items, fewer than k={k}"
            )
        group_distances, group_indices = search(
            database[db_rows], queries[query_rows], k, metric, backend,
            query_chunk, db_chunk, device, storage,
        )
        distances[query_rows] = group_distances
        indices[query_rows] = db_rows[group_indices]
    return distances, indices


def default_db_chunk(dim: int) -> int:
    """Database items per block when ``db_chunk`` is None, for ``dim``-dimensional descriptors:
    ``DEFAULT_DB_CHUNK``, fewer when that many float32 rows would exceed ``DB_BLOCK_BYTES``."""
    return max(1, min(DEFAULT_DB_CHUNK, DB_BLOCK_BYTES // (4 * dim)))


def _validated_descriptors(
    database: np.ndarray, queries: np.ndarray, storage: str
) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, dtypes and values; return the database as given (no copy, memory maps
    stay mapped) and the queries as C-contiguous float32."""
    database = np.asarray(database)
    queries = np.asarray(queries)
    for name, array in (("database", database), ("queries", queries)):
        if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"{name} must be a non-empty [count, dim] array, got shape {array.shape}")
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if database.shape[1] != queries.shape[1]:
        raise ValueError(
            f"database and queries differ in dimension: {database.shape[1]} vs {queries.shape[1]}"
        )
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    _check_values("database", database, storage)
    _check_values("queries", queries, storage)
    return database, queries


def _check_values(name: str, array: np.ndarray, storage: str) -> None:
    """Reject NaN/inf in ``array`` [count, dim], and for ``"fp16"`` storage values float16 cannot
    hold, reading ``CHECK_ROWS`` rows at a time (no full-size temporary)."""
    starts = range(0, array.shape[0], CHECK_ROWS)
    for start in tqdm(starts, desc=f"check {name}", unit="block", leave=False, disable=len(starts) < 2):
        rows = array[start : start + CHECK_ROWS]
        if not np.isfinite(rows).all():
            raise UserError(f"{name} holds NaN or infinite values")
        if storage == "fp16" and np.abs(rows).max() > FLOAT16_MAX:
            raise UserError(
                f"{name} holds values beyond the float16 range (|x| > {FLOAT16_MAX:g}): "
                "use storage='fp32' or normalise the descriptors"
            )


def _check_options(
    metric: str, backend: str, storage: str, query_chunk: int, db_chunk: int | None
) -> None:
    if metric not in METRICS:
        raise UserError(f"metric must be one of {METRICS}, got {metric!r}")
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if storage not in STORAGES:
        raise UserError(f"storage must be one of {STORAGES}, got {storage!r}")
    if query_chunk < 1:
        raise UserError(f"query_chunk must be positive, got {query_chunk}")
    if db_chunk is not None and db_chunk < 1:
        raise UserError(f"db_chunk must be positive or None, got {db_chunk}")


def _check_k(k: int, num_db: int) -> None:
    if not 1 <= k <= num_db:
        raise UserError(f"k must be between 1 and the database size {num_db}, got {k}")


def _import_faiss(required: bool) -> ModuleType | None:
    """Import faiss, or return None (``required=False``) / raise (``required=True``) without it."""
    try:
        import faiss
    except ImportError as error:
        if required:
            raise MissingPackageError(
                "backend='faiss' needs the faiss package (pip install faiss-cpu or faiss-gpu)"
            ) from error
        return None
    return faiss


def _faiss_search(
    faiss: ModuleType,
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str,
    storage: str,
    query_chunk: int,
    rows_per_block: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive faiss search of ``queries`` [M, D] in ``database`` [N, D], on all GPUs when
    faiss has any (and ``k`` fits the GPU search)."""
    on_gpu = faiss.get_num_gpus() > 0 and k <= FAISS_GPU_MAX_K
    dim = database.shape[1]
    if is_memory_mapped(database) and not on_gpu:  # never copied whole into memory
        stored = _stored_rows(faiss, dim, storage)
        return search_decoded_blocks(
            faiss, lambda start, count: stored(database[start : start + count]), database.shape[0],
            queries, k, metric, rows_per_block,
        )
    if on_gpu:
        index = _faiss_gpu_index(faiss, dim, metric, storage)
        fill_faiss_index(faiss, index, database, max(rows_per_block, FAISS_GPU_ADD_BYTES // (4 * dim)))
    else:
        index = _faiss_cpu_index(faiss, dim, metric, storage)
        fill_faiss_index(faiss, index, database, rows_per_block)
    if storage == "fp16" and not on_gpu:
        return search_decoded_blocks(faiss, index.reconstruct_n, index.ntotal, queries, k, metric, rows_per_block)
    distances = np.empty((queries.shape[0], k), dtype=np.float32)
    indices = np.empty((queries.shape[0], k), dtype=np.int64)
    starts = range(0, queries.shape[0], query_chunk)
    for start in tqdm(starts, desc="search (faiss)", unit="chunk", leave=False, disable=len(starts) < 2):
        stop = start + query_chunk
        distances[start:stop], indices[start:stop] = index.search(queries[start:stop], k)
    return distances, indices


def is_memory_mapped(array: np.ndarray) -> bool:
    """Whether ``array`` views a memory-mapped file (``np.load(path, mmap_mode="r")``, a slice of
    it, or ``np.asarray`` of it, which drops the ``np.memmap`` class but keeps it as its base)."""
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


def _faiss_metric(faiss: ModuleType, metric: str) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2


def _faiss_cpu_index(faiss: ModuleType, dim: int, metric: str, storage: str) -> Any:
    """An empty CPU index: flat float32, or float16 scalar-quantised (exhaustive as well)."""
    if storage == "fp16":
        return faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, _faiss_metric(faiss, metric))
    return faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)


def _faiss_gpu_index(faiss: ModuleType, dim: int, metric: str, storage: str) -> Any:
    """An empty flat index on every GPU: float32 copies on each (``"fp32"``), or float16
    storage sharded across them, each GPU holding 1/n of the database (``"fp16"``).

    Untested on a real GPU (faiss-cpu has no GPU cloner): the tests stand in CPU indexes for
    the GPU ones to check the options asked for and how :func:`fill_faiss_index` fills them.
    """
    cpu_index = faiss.IndexFlat(dim, _faiss_metric(faiss, metric))
    if storage == "fp32":
        return faiss.index_cpu_to_all_gpus(cpu_index)
    options = faiss.GpuMultipleClonerOptions()
    options.useFloat16 = True  # float16 storage; queries are rounded too, products summed in float32
    options.shard = True  # with one GPU this is a plain GpuIndexFlat
    return faiss.index_cpu_to_all_gpus(cpu_index, co=options)


def fill_faiss_index(faiss: ModuleType, index: Any, database: np.ndarray, rows_per_chunk: int) -> None:
    """Add ``database`` [N, D] (any real dtype, possibly memory-mapped) to an empty faiss
    ``index``, ``rows_per_chunk`` rows at a time converted to float32.

    An ``IndexShards`` accepts a single ``add`` only, so each of its shards is filled directly
    with a contiguous range of rows (shard ``i`` gets rows ``[i N / n, (i + 1) N / n)``), which
    is the id layout its search expects. Each index reserves its final size first.
    """
    num_db = database.shape[0]
    if isinstance(index, faiss.IndexShards):
        num_shards = index.count()
        for shard_number in range(num_shards):
            shard = index.at(shard_number)
            rows = database[num_db * shard_number // num_shards : num_db * (shard_number + 1) // num_shards]
            _reserve(faiss, shard, rows.shape[0])
            _add_in_chunks(shard, rows, rows_per_chunk)
        index.syncWithSubIndexes()
        return
    full_copies = [index]
    if isinstance(index, faiss.IndexReplicas):  # every add goes to each GPU's copy
        full_copies = [index.at(replica) for replica in range(index.count())]
    for full_copy in full_copies:
        _reserve(faiss, full_copy, num_db)
    _add_in_chunks(index, database, rows_per_chunk)


def _reserve(faiss: ModuleType, index: Any, num_vectors: int) -> None:
    """Make room for ``num_vectors`` in an empty ``index`` before chunked adds.

    A GPU flat index reallocates to its exact new size on every add, copying what it holds;
    ``reserveMemory`` avoids it. A CPU flat or scalar-quantised index grows its code vector
    geometrically, so a regrowth near the end briefly holds the old and the new buffer (up to
    twice the index); resizing it to full size and back to empty keeps the capacity.
    """
    if hasattr(index, "reserveMemory"):
        index.reserveMemory(num_vectors)
    elif isinstance(index, faiss.IndexFlatCodes) and index.ntotal == 0:
        index.codes.resize(num_vectors * index.code_size)
        index.codes.resize(0)


def _add_in_chunks(index: Any, database: np.ndarray, rows_per_chunk: int) -> None:
    """``index.add`` of ``database`` [N, D], one float32 chunk of ``rows_per_chunk`` rows at a time."""
    starts = range(0, database.shape[0], rows_per_chunk)
    for start in tqdm(starts, desc="index (faiss)", unit="chunk", leave=False, disable=len(starts) < 2):
        index.add(np.ascontiguousarray(database[start : start + rows_per_chunk], dtype=np.float32))


def _stored_rows(faiss: ModuleType, dim: int, storage: str) -> Callable[[np.ndarray], np.ndarray]:
    """Rows ``[n, dim]`` as float32 as a faiss CPU index of ``storage`` holds them: as they are
    (``"fp32"``), or encoded to float16 and decoded by faiss's own quantizer (``"fp16"``: the
    same rounding as the float16 index, so the same distances)."""
    if storage != "fp16":
        return lambda rows: np.ascontiguousarray(rows, dtype=np.float32)
    quantizer = faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)
    return lambda rows: quantizer.decode(quantizer.compute_codes(np.ascontiguousarray(rows, dtype=np.float32)))


def search_decoded_blocks(
    faiss: ModuleType,
    read_block: Callable[[int, int], np.ndarray],
    num_db: int,
    queries: np.ndarray,
    k: int,
    metric: str,
    rows_per_block: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive search of ``queries`` [M, D] in ``num_db`` vectors read ``rows_per_block`` at a
    time as float32 by ``read_block(start, count) -> [count, D]`` (decoded from a CPU index that
    stores them compressed, e.g. float16, or read from a memory-mapped array larger than memory),
    each block ranked with faiss's BLAS brute force and merged into a running top-k.

    Returns:
        ``(distances, indices)``: ``[M, k]`` float32 and int64, best first.
    """
    faiss_metric = _faiss_metric(faiss, metric)
    best = faiss.ResultHeap(queries.shape[0], k, keep_max=metric == "ip")
    starts = range(0, num_db, rows_per_block)
    for start in tqdm(starts, desc="search (faiss, blocks)", unit="block", leave=False, disable=len(starts) < 2):
        count = min(rows_per_block, num_db - start)
        block = read_block(start, count)  # [count, D] float32
        block_distances, block_indices = faiss.knn(queries, block, min(k, count), metric=faiss_metric)
        best.add_result(block_distances, block_indices + start)
        del block  # free this block before the next one is decoded
    best.finalize()
    return best.D, best.I


def _rows_as_tensor(rows: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """``rows`` [n, D] as a CPU tensor of ``dtype``, sharing memory when no conversion is
    needed; read-only rows (a memory map) are copied."""
    if rows.flags.writeable:
        return torch.from_numpy(rows).to(dtype)
    return torch.tensor(rows, dtype=dtype)


@torch.no_grad()
def _torch_search(
    database: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str,
    storage: str,
    query_chunk: int,
    db_chunk: int,
    device: str | torch.device | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Blockwise top-k: each database block is moved to ``device`` once (as float16 for
    ``"fp16"`` storage) and scored in float32 against every query block; the running
    ``[M, k]`` best list is merged with each block's top-k."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    stored_dtype = torch.float16 if storage == "fp16" else torch.float32
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
            rows = database[db_start : db_start + db_chunk]
            db_block = _rows_as_tensor(rows, stored_dtype).to(device).float()  # [n, D] float32
            # vector_norm reduces without a squared [n, D] copy of the block
            db_sq_norms = torch.linalg.vector_norm(db_block, dim=1).square() if metric == "l2" else None
            block_k = min(k, db_block.shape[0])
            for q_start in range(0, num_queries, query_chunk):
                query_rows = slice(q_start, q_start + query_chunk)
                query_block = all_queries[query_rows].to(device)
                scores = query_block @ db_block.T  # [m, n] inner products
                if db_sq_norms is not None:
                    query_sq_norms = query_block.square().sum(dim=1, keepdim=True)
                    scores = (query_sq_norms + db_sq_norms - 2.0 * scores).clamp_(min=0.0)
                block_scores, block_indices = scores.topk(block_k, dim=1, largest=largest)
                merged_scores = torch.cat([best_scores[query_rows], block_scores], dim=1)
                merged_indices = torch.cat([best_indices[query_rows], block_indices + db_start], dim=1)
                top_scores, top_positions = merged_scores.topk(k, dim=1, largest=largest)
                best_scores[query_rows] = top_scores
                best_indices[query_rows] = merged_indices.gather(1, top_positions)
                progress.update()
            del db_block, db_sq_norms  # free this block before the next one is read
    return best_scores.cpu().numpy(), best_indices.cpu().numpy()
