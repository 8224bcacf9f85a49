"""Descriptor cache: hits, misses, keys that follow every input (image files included), checksums."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_eval_cli import checkpoints, common_flags, read_results, run_eval, sped_dir, write_image  # noqa: F401 (fixtures)
from utils.evaluation.descriptor_cache import DescriptorCache, checkpoint_sha256, image_files_fingerprint, make_cache_key


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
    with caplog.at_level(logging.INFO, logger="utils.evaluation.descriptor_cache"):
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


# ---------------------------------------------------------------- integrity: content, images, killed writes


def test_flipped_bytes_are_a_miss_with_a_warning_naming_the_file(
    tmp_path: Path, checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = DescriptorCache(tmp_path)
    key = make_cache_key(checkpoint, "sped", (322, 322))
    path = cache.save(key, descriptors())
    content = bytearray(path.read_bytes())
    content[-5] ^= 0x10  # one bit of the last descriptor
    path.write_bytes(bytes(content))
    with caplog.at_level(logging.WARNING, logger="utils.evaluation.descriptor_cache"):
        assert cache.load(key) is None
    assert any(str(path) in record.getMessage() and "checksum" in record.getMessage() for record in caplog.records)


def test_a_file_swapped_for_another_array_of_the_same_shape_is_a_miss(tmp_path: Path, checkpoint: Path) -> None:
    cache = DescriptorCache(tmp_path)
    key = make_cache_key(checkpoint, "sped", (322, 322))
    path = cache.save(key, descriptors(seed=0))
    np.save(path, descriptors(seed=1))  # same shape and dtype: the sidecar's shape and dtype still match
    assert cache.load(key) is None
    assert cache.load(key, mmap_mode="r") is None
    cache.save(key, descriptors(seed=2))
    np.testing.assert_array_equal(cache.load(key, mmap_mode="r"), descriptors(seed=2))


def images(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:03d}.jpg" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(bytes([i]) * 100)
    return paths


def test_images_replaced_under_the_same_names_change_the_key(tmp_path: Path, checkpoint: Path) -> None:
    paths = images(tmp_path / "images")
    before = make_cache_key(checkpoint, "sped", (322, 322), image_paths=paths)
    assert before == make_cache_key(checkpoint, "sped", (322, 322), image_paths=paths)
    times = os.stat(paths[1]).st_mtime_ns
    paths[1].write_bytes(b"\x07" * 100)  # same size
    os.utime(paths[1], ns=(times + 10**9, times + 10**9))
    assert make_cache_key(checkpoint, "sped", (322, 322), image_paths=paths).digest != before.digest
    paths[2].write_bytes(b"\x02" * 101)  # another size
    assert image_files_fingerprint(paths) != image_files_fingerprint([*paths[:2], paths[2]], content_hash=True)


def test_content_hash_sees_what_size_and_time_do_not(tmp_path: Path) -> None:
    paths = images(tmp_path / "images")
    stat_before, content_before = image_files_fingerprint(paths), image_files_fingerprint(paths, content_hash=True)
    times = os.stat(paths[0]).st_mtime_ns
    paths[0].write_bytes(b"\x09" * 100)  # same size, time put back: a copy that kept the times
    os.utime(paths[0], ns=(times, times))
    assert image_files_fingerprint(paths) == stat_before
    assert image_files_fingerprint(paths, content_hash=True) != content_before
    with pytest.raises(FileNotFoundError):
        image_files_fingerprint([tmp_path / "images" / "missing.jpg"])


def test_opening_the_cache_removes_temporary_files_of_killed_writes(tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".sped_0123.npy.abc.tmp", tmp_path / ".sped_0123.npy.def.tmp"
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"a write in progress")
    hours_ago = time.time() - 3600
    os.utime(stale, (hours_ago, hours_ago))
    entry = tmp_path / "sped_0123.npy"
    entry.write_bytes(b"an entry")
    os.utime(entry, (hours_ago, hours_ago))
    DescriptorCache(tmp_path)
    assert not stale.exists() and fresh.exists() and entry.exists()


def test_eval_recomputes_corrupt_or_outdated_descriptors(
    sped_dir: Path, checkpoints: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    argv = [
        "--ckpt_path", str(checkpoints["lightning"]), "--data_dir", str(sped_dir), "--val_datasets", "sped",
        "--cache_descriptors", "--cache_dir", str(tmp_path / "cache"), *common_flags(tmp_path),
    ]
    first = read_results(run_eval(argv))
    (cached,) = (tmp_path / "cache").glob("sped_*.npy")
    content = bytearray(cached.read_bytes())
    content[-3] ^= 0x40
    cached.write_bytes(bytes(content))
    with caplog.at_level(logging.INFO):
        assert read_results(run_eval(argv)) == first  # recomputed, not read from the flipped file
    assert "reusing cached descriptors" not in caplog.text and str(cached) in caplog.text
    caplog.clear()

    # a query replaced by another picture under the same name: the old descriptors must not come back
    query = sped_dir / "SPEDTEST" / "query" / "0000000.jpg"
    write_image(query, seed=999)
    with caplog.at_level(logging.INFO):
        replaced = read_results(run_eval(argv))
    assert "reusing cached descriptors" not in caplog.text
    assert replaced["sped"]["recall@k"]["1"] < first["sped"]["recall@k"]["1"] == 100.0
