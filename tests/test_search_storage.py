"""Large-database search: float16 storage, float16 / memory-mapped input, chunked and sharded faiss indexes."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path
from types import SimpleNamespace

import faiss
import numpy as np
import pytest

import utils.evaluation.search
from tests.test_search import few_threads, random_unit_vectors  # noqa: F401 (few_threads is an autouse fixture)
from utils.evaluation.search import fill_faiss_index, search, search_per_group

BACKENDS = ("torch", "faiss")
REPO_ROOT = Path(__file__).resolve().parents[1]


def exact_neighbours(
    database: np.ndarray, queries: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Reference ``(distances, indices)`` [M, k] from the full score matrix in float64."""
    db, q = database.astype(np.float64), queries.astype(np.float64)
    products = q @ db.T
    if metric == "ip":
        order = np.argsort(-products, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(products, order, axis=1), order
    squared = (q**2).sum(axis=1, keepdims=True) + (db**2).sum(axis=1) - 2.0 * products
    order = np.argsort(squared, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(squared, order, axis=1), order


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_fp16_keeps_top1_on_well_separated_data(backend: str, metric: str) -> None:
    database = random_unit_vectors(500, 64, seed=0)
    sources = np.arange(0, 500, 7)  # each query is a slightly perturbed database item
    noise = 0.05 * random_unit_vectors(sources.size, 64, seed=1)
    queries = database[sources] + noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    _, fp32_indices = search(database, queries, 5, metric=metric, backend=backend, storage="fp32")
    _, fp16_indices = search(database, queries, 5, metric=metric, backend=backend, storage="fp16")

    np.testing.assert_array_equal(fp32_indices[:, 0], sources)
    np.testing.assert_array_equal(fp16_indices[:, 0], sources)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_fp16_recall_against_exact_search(backend: str, metric: str) -> None:
    database = random_unit_vectors(3000, 128, seed=2)
    queries = random_unit_vectors(300, 128, seed=3)
    _, exact = exact_neighbours(database, queries, 10, metric)

    # db_chunk splits the database into uneven blocks (decoded faiss blocks, torch steps)
    _, indices = search(
        database, queries, 10, metric=metric, backend=backend, storage="fp16", db_chunk=700, query_chunk=128
    )

    recall_at_1 = np.mean(indices[:, 0] == exact[:, 0])
    recall_at_10 = np.mean([len(set(found) & set(true)) / 10 for found, true in zip(indices, exact)])
    assert recall_at_1 >= 0.99
    assert recall_at_10 >= 0.99


def near_float16_vectors(count: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values, rounded)``: float32 unit-ish vectors ``values`` [count, dim] and the float16
    values ``rounded`` they round to, each value lying within a quarter float16 step of its
    rounded one, so it rounds there under any rounding rule (faiss's encoder rounds exact
    halfway cases away from zero, numpy to even)."""
    rounded = random_unit_vectors(count, dim, seed).astype(np.float16)
    offsets = np.random.default_rng(seed + 1).uniform(-0.24, 0.24, size=rounded.shape)
    values = (rounded.astype(np.float64) + offsets * np.spacing(rounded).astype(np.float64)).astype(np.float32)
    return values, rounded


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_fp16_distances_are_those_of_the_rounded_database(backend: str, metric: str) -> None:
    database, rounded = near_float16_vectors(400, 96, seed=4)
    queries = random_unit_vectors(30, 96, seed=5)
    rounded_distances, rounded_indices = exact_neighbours(rounded, queries, 10, metric)
    exact_distances, _ = exact_neighbours(database, queries, 10, metric)

    # db_chunk < k: blocks with fewer items than k must still merge correctly
    distances, indices = search(
        database, queries, 10, metric=metric, backend=backend, storage="fp16", db_chunk=4
    )

    np.testing.assert_array_equal(indices, rounded_indices)
    np.testing.assert_allclose(distances, rounded_distances, atol=2e-6)
    # the rounding is real: float32 storage would be off by far more than that tolerance
    assert np.abs(exact_distances - rounded_distances).max() > 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp16_rounding_can_reorder_neighbours(backend: str) -> None:
    # 1.00045 rounds down to 1.0 in float16, while 0.0004 keeps ~4 digits: the order flips
    database = np.array([[1.00045, 0.0], [1.0, 0.0004]], dtype=np.float32)
    queries = np.array([[1.0, 1.0]], dtype=np.float32)

    fp32_scores, fp32_indices = search(database, queries, 2, metric="ip", backend=backend)
    fp16_scores, fp16_indices = search(database, queries, 2, metric="ip", backend=backend, storage="fp16")

    np.testing.assert_array_equal(fp32_indices, [[0, 1]])
    np.testing.assert_allclose(fp32_scores, [[1.00045, 1.0004]], rtol=1e-7)
    np.testing.assert_array_equal(fp16_indices, [[1, 0]])
    np.testing.assert_allclose(fp16_scores, [[1.0 + float(np.float16(0.0004)), 1.0]], rtol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage", ["fp32", "fp16"])
def test_float16_input_is_accepted(backend: str, storage: str) -> None:
    database = random_unit_vectors(300, 48, seed=6).astype(np.float16)
    queries = random_unit_vectors(20, 48, seed=7).astype(np.float16)
    expected_distances, expected_indices = exact_neighbours(database, queries, 8, "l2")

    distances, indices = search(database, queries, 8, backend=backend, storage=storage, db_chunk=64)

    # float16 values are exact in float16 storage too, so both storages rank them exactly
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, atol=2e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_memory_mapped_database(tmp_path: Path, backend: str, dtype: type) -> None:
    database = random_unit_vectors(1000, 32, seed=8).astype(dtype)
    queries = random_unit_vectors(40, 32, seed=9)
    path = tmp_path / "database.npy"
    np.save(path, database)
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    _, exact = exact_neighbours(database, queries, 10, "l2")
    _, in_memory_fp16 = search(database, queries, 10, backend=backend, storage="fp16", db_chunk=300)

    for storage, expected in (("fp32", exact), ("fp16", in_memory_fp16)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. torch's warning on read-only numpy arrays
            _, indices = search(mapped, queries, 10, backend=backend, storage=storage, db_chunk=300)
        np.testing.assert_array_equal(indices, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float16_database_is_never_widened_whole(backend: str) -> None:
    """A float32 copy of a float16 database would double its memory: conversion goes by chunk."""
    database = random_unit_vectors(20_000, 256, seed=10).astype(np.float16)
    queries = random_unit_vectors(8, 256, seed=11)
    float32_copy_bytes = database.shape[0] * database.shape[1] * 4

    tracemalloc.start()  # numpy reports its buffers to tracemalloc (torch and faiss do not)
    try:
        search(database, queries, 5, backend=backend, storage="fp32", db_chunk=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < float32_copy_bytes / 4


def test_search_per_group_passes_storage_on() -> None:
    database, rounded = near_float16_vectors(200, 40, seed=12)
    queries = random_unit_vectors(12, 40, seed=13)
    db_groups = np.repeat(["a", "b"], 100)
    query_groups = np.repeat(["b", "a"], 6)

    distances, indices = search_per_group(
        database, queries, db_groups, query_groups, k=4, backend="faiss", storage="fp16"
    )

    for query in range(12):
        members = np.flatnonzero(db_groups == query_groups[query])
        expected_distances, expected_order = exact_neighbours(rounded[members], queries[query : query + 1], 4, "l2")
        np.testing.assert_array_equal(indices[query], members[expected_order[0]])
        np.testing.assert_allclose(distances[query], expected_distances[0], atol=2e-6)


# Fills a 9-chunk index in a fresh process and prints its peak memory growth over the stored
# size: the code vector doubles its capacity at chunks 2, 3, 5 and 9, so without a reservation
# the last add briefly holds the old 8 chunks and the new 9. Float32 input: no converted copies.
CHUNKED_FILL_SCRIPT = """
import resource, sys, faiss, numpy as np
from utils.evaluation.search import fill_faiss_index
dim, rows_per_chunk, num_chunks = 1024, 4000, 9
database = np.ones((rows_per_chunk * num_chunks, dim), np.float32)
if sys.argv[1] == "fp16":
    index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)
else:
    index = faiss.IndexFlatL2(dim)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
fill_faiss_index(faiss, index, database, rows_per_chunk)
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(growth / (index.ntotal * index.code_size))
"""


@pytest.mark.parametrize("storage", ["fp32", "fp16"])
def test_chunked_fill_reserves_the_index_size(storage: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", CHUNKED_FILL_SCRIPT, storage], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    growth_over_stored = float(completed.stdout.split()[-1])
    assert growth_over_stored < 1.3  # unreserved: ~17/9 = 1.9


def test_sharded_index_is_filled_in_chunks_per_shard() -> None:
    """IndexShards takes a single add(): each shard gets its contiguous rows, chunk by chunk."""
    database = random_unit_vectors(1001, 24, seed=14)
    queries = random_unit_vectors(15, 24, seed=15)
    expected_distances, expected_indices = exact_neighbours(database, queries, 12, "l2")
    shards = [faiss.IndexFlatL2(24) for _ in range(3)]
    index = faiss.IndexShards(24, False, True)  # not threaded, successive ids
    for shard in shards:
        index.add_shard(shard)

    fill_faiss_index(faiss, index, database, rows_per_chunk=100)

    assert index.ntotal == 1001
    assert [shard.ntotal for shard in shards] == [333, 334, 334]
    distances, indices = index.search(queries, 12)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, atol=1e-5)


def test_gpu_fp16_path_shards_float16_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """With faiss reporting two GPUs, fp16 storage asks for a sharded float16 index and fills
    and searches it correctly (the GPU copy is stood in for by CPU shards)."""
    requested_options: list[SimpleNamespace] = []
    kept_alive: list[object] = []

    def index_cpu_to_all_gpus(cpu_index: faiss.Index, co: SimpleNamespace | None = None) -> faiss.Index:
        requested_options.append(co)
        sharded = faiss.IndexShards(cpu_index.d, False, True)
        for _ in range(2):
            shard = faiss.clone_index(cpu_index)
            kept_alive.append(shard)
            sharded.add_shard(shard)
        return sharded

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2)
    monkeypatch.setattr(faiss, "GpuMultipleClonerOptions", SimpleNamespace, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", index_cpu_to_all_gpus)
    database = random_unit_vectors(301, 16, seed=16)
    queries = random_unit_vectors(9, 16, seed=17)
    _, expected = exact_neighbours(database, queries, 6, "ip")

    _, indices = search(database, queries, 6, metric="ip", backend="faiss", storage="fp16", db_chunk=50)

    assert len(requested_options) == 1
    assert requested_options[0].useFloat16 is True and requested_options[0].shard is True
    np.testing.assert_array_equal(indices, expected)


class RecordingGpuFlat(faiss.IndexFlat):
    """A CPU flat index standing in for a GpuIndexFlat: records reservations and add sizes."""

    # declared on the class: faiss's wrappers refuse instance attributes the class lacks
    reserved: list[int] = []
    add_sizes: list[int] = []

    def __init__(self, dim: int, metric: int) -> None:
        super().__init__(dim, metric)
        self.reserved: list[int] = []
        self.add_sizes: list[int] = []

    def reserveMemory(self, num_vectors: int) -> None:  # noqa: N802 (faiss's GPU method name)
        self.reserved.append(num_vectors)

    def add(self, vectors: np.ndarray) -> None:
        self.add_sizes.append(vectors.shape[0])
        super().add(vectors)


def test_single_gpu_index_is_reserved_and_filled_in_large_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each add to a GPU flat index recomputes all norms: adds are at least FAISS_GPU_ADD_BYTES,
    and the final size is reserved first."""
    gpu_indexes: list[RecordingGpuFlat] = []

    def index_cpu_to_all_gpus(cpu_index: faiss.Index, co: SimpleNamespace | None = None) -> faiss.Index:
        gpu_indexes.append(RecordingGpuFlat(cpu_index.d, cpu_index.metric_type))
        return gpu_indexes[-1]

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "GpuMultipleClonerOptions", SimpleNamespace, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", index_cpu_to_all_gpus)
    monkeypatch.setattr(utils.evaluation.search, "FAISS_GPU_ADD_BYTES", 64 * 16 * 4)  # 64 rows of 16 float32
    database = random_unit_vectors(300, 16, seed=18)
    queries = random_unit_vectors(9, 16, seed=19)
    _, expected = exact_neighbours(database, queries, 6, "l2")

    _, indices = search(database, queries, 6, backend="faiss", storage="fp16", db_chunk=10)

    assert len(gpu_indexes) == 1
    assert gpu_indexes[0].reserved == [300]
    assert gpu_indexes[0].add_sizes == [64, 64, 64, 64, 44]
    np.testing.assert_array_equal(indices, expected)


@pytest.mark.parametrize(
    ("database", "storage", "message"),
    [
        (np.zeros((4, 3), np.float32), "bf16", "storage must be one of"),
        (np.full((4, 3), 1e5, np.float32), "fp16", "database holds values beyond the float16 range"),
        (np.zeros((4, 3), np.complex64), "fp32", "database must hold real numbers, got dtype complex64"),
    ],
)
def test_bad_storage_input_is_a_clear_error(database: np.ndarray, storage: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        search(database, np.zeros((1, 3), np.float32), 1, storage=storage)  # type: ignore[arg-type]


def test_float32_storage_keeps_values_beyond_float16_range() -> None:
    database = np.array([[1e5, 0.0], [0.0, 1e5], [7e4, 7e4]], dtype=np.float32)
    queries = np.array([[1e5, 1.0]], dtype=np.float32)
    for backend in BACKENDS:
        _, indices = search(database, queries, 3, metric="l2", backend=backend)
        np.testing.assert_array_equal(indices, [[0, 2, 1]])
