"""Descriptor cache: hits, misses, and keys that follow every input."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from utils.descriptor_cache import DescriptorCache, checkpoint_sha256, make_cache_key


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "weights" / "salad.ckpt"
    path.parent.mkdir()
    path.write_bytes(bytes(range(256)) * 4096 + b"tail")  # 1 MiB + 4 bytes: more than one hash block
    return path


def descriptors(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((12, 8)).astype(np.float32)


def test_miss_then_hit_logs_the_path(tmp_path: Path, checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = DescriptorCache(tmp_path / "cache")
    key = make_cache_key(checkpoint, "msls_val", (322, 322), precision="fp32")
    assert cache.load(key) is None

    array = descriptors()
    saved_path = cache.save(key, array)
    assert saved_path.is_file() and saved_path.parent == tmp_path / "cache"

    # a second run builds the same key from the same inputs and reuses the array
    same_key = make_cache_key(checkpoint, "msls_val", (322, 322), precision="fp32")
    with caplog.at_level(logging.INFO, logger="utils.descriptor_cache"):
        loaded = cache.load(same_key)
    assert loaded is not None
    np.testing.assert_array_equal(loaded, array)
    assert loaded.dtype == np.float32
    assert any("reusing" in record.getMessage() and str(saved_path) in record.getMessage() for record in caplog.records)


def test_memory_mapped_load(tmp_path: Path, checkpoint: Path) -> None:
    cache = DescriptorCache(tmp_path)
    key = make_cache_key(checkpoint, "sped", (224, 224))
    cache.save(key, descriptors())
    loaded = cache.load(key, mmap_mode="r")
    assert isinstance(loaded, np.memmap)
    np.testing.assert_array_equal(loaded, descriptors())


def test_checkpoint_hash_is_the_sha256_of_the_bytes(checkpoint: Path) -> None:
    assert checkpoint_sha256(checkpoint) == hashlib.sha256(checkpoint.read_bytes()).hexdigest()


def test_key_changes_with_every_input(checkpoint: Path, tmp_path: Path) -> None:
    base = make_cache_key(checkpoint, "msls_val", (322, 322), precision="fp32")
    variants = [
        make_cache_key(checkpoint, "pitts30k_test", (322, 322), precision="fp32"),
        make_cache_key(checkpoint, "msls_val", (224, 224), precision="fp32"),
        make_cache_key(checkpoint, "msls_val", (322, 322), precision="fp16"),
        make_cache_key(checkpoint, "msls_val", (322, 322)),
    ]
    other_weights = tmp_path / "other.ckpt"
    content = bytearray(checkpoint.read_bytes())
    content[len(content) // 2] ^= 1  # same size, one bit different in the middle
    other_weights.write_bytes(bytes(content))
    variants.append(make_cache_key(other_weights, "msls_val", (322, 322), precision="fp32"))
    digests = {key.digest for key in [base, *variants]}
    assert len(digests) == len(variants) + 1
    assert len({key.file_stem for key in [base, *variants]}) == len(variants) + 1


def test_copied_checkpoint_keeps_the_key(checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.ckpt"
    shutil.copy(checkpoint, copy)
    assert make_cache_key(copy, "sped", (322, 322)) == make_cache_key(checkpoint, "sped", (322, 322))


def test_changed_inputs_miss(tmp_path: Path, checkpoint: Path) -> None:
    cache = DescriptorCache(tmp_path / "cache")
    cache.save(make_cache_key(checkpoint, "msls_val", (322, 322)), descriptors())
    assert cache.load(make_cache_key(checkpoint, "msls_val", (224, 224))) is None


def test_incomplete_or_mismatched_entries_are_misses(tmp_path: Path, checkpoint: Path) -> None:
    cache = DescriptorCache(tmp_path)
    key = make_cache_key(checkpoint, "nordland", (322, 322))
    cache.save(key, descriptors())

    sidecar = json.loads(cache.sidecar_path(key).read_text())
    sidecar["shape"] = [99, 8]
    cache.sidecar_path(key).write_text(json.dumps(sidecar))
    assert cache.load(key) is None

    cache.sidecar_path(key).unlink()  # array without its sidecar: an interrupted save
    assert cache.load(key) is None

    cache.save(key, descriptors(seed=1))  # saving again repairs the entry
    np.testing.assert_array_equal(cache.load(key), descriptors(seed=1))


def test_bad_key_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        make_cache_key(tmp_path / "missing.ckpt", "sped", (322, 322))
    with pytest.raises(ValueError, match="settings must name the weights"):
        make_cache_key(None, "sped", (322, 322))
    with pytest.raises(ValueError, match="JSON values"):
        make_cache_key(None, "sped", (322, 322), weights=object())
    hub_key = make_cache_key(None, "sped", (322, 322), weights="torch.hub:serizba/salad")
    assert hub_key.fields["checkpoint_sha256"] is None
    assert hub_key.fields["weights"] == "torch.hub:serizba/salad"
