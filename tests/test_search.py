"""Exact k-NN search: faiss and chunked torch agree with a brute-force numpy ranking."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.evaluation.search import search, search_per_group

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def few_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_unit_vectors(count: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force(database: np.ndarray, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference ranking from the full [M, N] matrix in float64."""
    db, q = database.astype(np.float64), queries.astype(np.float64)
    if metric == "ip":
        scores = q @ db.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    else:
        scores = ((q[:, None, :] - db[None, :, :]) ** 2).sum(axis=2)
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("k", [1, 25])
def test_torch_and_faiss_match_brute_force(metric: str, k: int) -> None:
    database = random_unit_vectors(300, 32, seed=0)
    queries = random_unit_vectors(45, 32, seed=1)
    expected_distances, expected_indices = brute_force(database, queries, k, metric)

    # chunks smaller than M and N (and not dividing them) exercise the top-k merging
    torch_distances, torch_indices = search(
        database, queries, k, metric=metric, backend="torch", query_chunk=16, db_chunk=70, device="cpu"
    )
    faiss_distances, faiss_indices = search(database, queries, k, metric=metric, backend="faiss")

    for distances, indices in ((torch_distances, torch_indices), (faiss_distances, faiss_indices)):
        assert indices.shape == (45, k) and indices.dtype == np.int64
        assert distances.shape == (45, k) and distances.dtype == np.float32
        np.testing.assert_array_equal(indices, expected_indices)
        np.testing.assert_allclose(distances, expected_distances, atol=1e-5)
    np.testing.assert_array_equal(torch_indices, faiss_indices)


def test_database_chunk_smaller_than_k() -> None:
    database = random_unit_vectors(100, 16, seed=2)
    queries = random_unit_vectors(7, 16, seed=3)
    _, expected = brute_force(database, queries, 25, "l2")
    _, indices = search(database, queries, 25, backend="torch", query_chunk=3, db_chunk=10, device="cpu")
    np.testing.assert_array_equal(indices, expected)


def test_unnormalised_l2_distances_are_squared() -> None:
    database = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    queries = np.array([[0.0, 0.0]], dtype=np.float32)
    for backend in ("torch", "faiss"):
        distances, indices = search(database, queries, 3, metric="l2", backend=backend)
        np.testing.assert_array_equal(indices, [[0, 2, 1]])
        np.testing.assert_allclose(distances, [[0.0, 1.0, 25.0]], atol=1e-6)


def test_inner_product_is_descending() -> None:
    database = np.array([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    queries = np.array([[1.0, 0.0]], dtype=np.float32)
    for backend in ("torch", "faiss"):
        distances, indices = search(database, queries, 3, metric="ip", backend=backend)
        np.testing.assert_array_equal(indices, [[1, 0, 2]])
        np.testing.assert_allclose(distances, [[2.0, 1.0, -1.0]])


def test_l2_and_ip_rank_normalised_descriptors_alike() -> None:
    database = random_unit_vectors(200, 24, seed=4)
    queries = random_unit_vectors(10, 24, seed=5)
    _, l2_indices = search(database, queries, 10, metric="l2", backend="torch")
    _, ip_indices = search(database, queries, 10, metric="ip", backend="torch")
    np.testing.assert_array_equal(l2_indices, ip_indices)


def test_auto_falls_back_to_torch_without_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    database = random_unit_vectors(50, 8, seed=6)
    queries = random_unit_vectors(4, 8, seed=7)
    _, expected = brute_force(database, queries, 5, "l2")
    _, indices = search(database, queries, 5, backend="auto")
    np.testing.assert_array_equal(indices, expected)
    with pytest.raises(ImportError, match="faiss"):
        search(database, queries, 5, backend="faiss")


def test_importing_search_does_not_import_faiss() -> None:
    code = "import sys, utils.evaluation.search; sys.exit(1 if 'faiss' in sys.modules else 0)"
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, timeout=120)
    assert completed.returncode == 0, completed.stderr.decode()


@pytest.mark.parametrize(
    ("database_shape", "queries_shape", "k", "message"),
    [
        ((10, 4), (2, 4), 11, "k must be between 1 and the database size 10"),
        ((10, 4), (2, 4), 0, "k must be between"),
        ((10, 4), (2, 5), 1, "differ in dimension"),
        ((10,), (2, 4), 1, "database must be a non-empty"),
    ],
)
def test_bad_input_is_a_clear_error(database_shape: tuple, queries_shape: tuple, k: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        search(np.zeros(database_shape, np.float32), np.zeros(queries_shape, np.float32), k)


def test_nan_descriptors_are_rejected() -> None:
    database = np.zeros((10_000, 3), np.float32)
    database[9_000, 1] = np.nan  # far into the array, past the first rows checked
    with pytest.raises(ValueError, match="database holds NaN"):
        search(database, np.zeros((1, 3), np.float32), 1)
    queries = np.zeros((2, 3), np.float32)
    queries[1, 0] = np.inf
    with pytest.raises(ValueError, match="queries holds NaN or infinite"):
        search(np.zeros((5, 3), np.float32), queries, 1)


def test_unknown_metric_and_backend() -> None:
    data = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match="metric must be one of"):
        search(data, data, 1, metric="cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend must be one of"):
        search(data, data, 1, backend="annoy")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_search_per_group_stays_in_group(backend: str) -> None:
    rng = np.random.default_rng(8)
    database = random_unit_vectors(120, 16, seed=9)
    queries = random_unit_vectors(30, 16, seed=10)
    cities = np.array(["cph", "sf", "miami"])
    db_groups = cities[rng.integers(0, 3, size=120)]
    query_groups = cities[rng.integers(0, 3, size=30)]

    distances, indices = search_per_group(
        database, queries, db_groups, query_groups, k=5, backend=backend, query_chunk=4, db_chunk=9
    )
    assert indices.shape == distances.shape == (30, 5)
    assert (db_groups[indices] == query_groups[:, None]).all()
    for query in range(30):
        members = np.flatnonzero(db_groups == query_groups[query])
        member_distances, member_order = brute_force(database[members], queries[query : query + 1], 5, "l2")
        np.testing.assert_array_equal(indices[query], members[member_order[0]])
        np.testing.assert_allclose(distances[query], member_distances[0], atol=1e-5)


def test_search_per_group_needs_k_items_per_group() -> None:
    database = random_unit_vectors(6, 4, seed=11)
    queries = random_unit_vectors(2, 4, seed=12)
    db_groups = ["a", "a", "a", "a", "b", "b"]
    with pytest.raises(ValueError, match="group 'b' has 2 database items, fewer than k=3"):
        search_per_group(database, queries, db_groups, ["a", "b"], k=3)
    with pytest.raises(ValueError, match="group 'c' has 0 database items"):
        search_per_group(database, queries, db_groups, ["a", "c"], k=1)
    with pytest.raises(ValueError, match="one label per database item"):
        search_per_group(database, queries, db_groups[:5], ["a", "b"], k=1)
