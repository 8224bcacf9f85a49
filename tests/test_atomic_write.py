"""Files the project writes through a temporary file get the mode the user's umask gives, not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from utils.atomic_write import current_umask, write_atomically
from utils.evaluation.descriptor_cache import DescriptorCache, make_cache_key
from utils.evaluation.results import make_set_result, write_results_json


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=["umask022", "umask077", "umask002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_umask_is_read_back(umask: int) -> None:
    assert current_umask() == umask


def test_results_and_cached_descriptors_follow_the_umask(tmp_path: Path, umask: int) -> None:
    expected = 0o666 & ~umask  # 0o644 for the usual 0o022
    results = write_results_json(tmp_path / "results.json", {"sped": make_set_result({1: 50.0}, [50.0], 2, 4)})
    cache = DescriptorCache(tmp_path / "cache")
    key = make_cache_key(None, "sped", (56, 56), weights="random")
    array_path = cache.save(key, np.zeros((4, 8), dtype=np.float32))
    for path in (results, array_path, cache.sidecar_path(key)):
        assert mode(path) == expected, path.name
    if umask == 0o022:
        assert mode(results) == 0o644


def test_a_failed_write_leaves_the_target_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    target.write_text("before")

    def fails(stream: object) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, fails)
    assert target.read_text() == "before" and sorted(path.name for path in tmp_path.iterdir()) == ["results.json"]
