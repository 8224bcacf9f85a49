"""On-disk cache of computed descriptors, so that re-evaluating the same weights on the same
set does not run the model again.

An entry is identified by a :class:`CacheKey` made from everything that changes the
descriptors: the checkpoint's content, the set name, the image size, the image files and any
other setting the caller passes (precision, batch-independent preprocessing flags, dataset
root, ...).

Checkpoint identity is the **full SHA-256 of the checkpoint file**, computed each time a key
is made (about a second per GiB, small next to computing descriptors). Unlike a size + mtime
+ partial-hash fingerprint it survives copying or re-downloading the file and catches any
change to its content.

Image identity is :func:`image_files_fingerprint`: every image's path, size and modification
time (one ``os.stat`` per image), so images replaced under the same names miss the cache. With
``content_hash=True`` it hashes the files' bytes instead of their times (reads every image:
for copies that keep names but not times, or changes that keep size and time).

Each entry is two files in the cache folder: ``<set>_<digest>.npy`` holding the array, and
``<set>_<digest>.json`` holding the key's fields, shape, dtype and the SHA-256 of the array's
bytes. The JSON is written last, so an entry without it is incomplete and is ignored; a sidecar
whose fields, shape or dtype do not match, or whose checksum the array fails (flipped bytes, a
file swapped for another array of the same shape), is a miss, with a warning naming the file:
the descriptors are computed again and the entry rewritten. Opening the cache deletes the
temporary files of writes killed more than :data:`STALE_TEMPORARY_S` seconds ago (at SF-XL
scale they are gigabytes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dataloaders.safe_npy import load_npy
from utils.atomic_write import remove_stale_temporaries, write_atomically
from utils.errors import UserFileError
from utils.file_hash import file_sha256

logger = logging.getLogger(__name__)

DIGEST_CHARS = 24
"""Hex characters of the key's SHA-256 used in file names (96 bits)."""
STALE_TEMPORARY_S = 15 * 60
"""A temporary file of the cache untouched this long is left by a killed write."""
RESERVED_FIELDS = ("checkpoint_sha256", "set_name", "image_size", "image_files")


@dataclass(frozen=True)
class CacheKey:
    """The identity of one cached descriptor array.

    Attributes:
        set_name: evaluation set (also the start of the file names, for people browsing).
        canonical_json: the key's fields as JSON with sorted keys; equal keys give equal text.
    """

    set_name: str
    canonical_json: str

    @property
    def fields(self) -> dict[str, Any]:
        return json.loads(self.canonical_json)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of ``canonical_json``."""
        return hashlib.sha256(self.canonical_json.encode("utf-8")).hexdigest()

    @property
    def file_stem(self) -> str:
        readable = re.sub(r"[^A-Za-z0-9_.-]", "_", self.set_name)
        return f"{readable}_{self.digest[:DIGEST_CHARS]}"


def checkpoint_sha256(path: str | PathLike[str]) -> str:
    """Full SHA-256 (hex) of a checkpoint file's bytes.

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"checkpoint not found: {path}")
    return file_sha256(path)


def image_files_fingerprint(paths: Sequence[str | PathLike[str]], content_hash: bool = False) -> str:
    """SHA-256 (hex) over every image's path and size, and its modification time (default) or the
    SHA-256 of its bytes (``content_hash``): what the descriptor cache key needs to miss when
    images change under the same names.

    Args:
        paths: the image files, in the order the descriptors are computed.
        content_hash: hash the files' content (reads every file) instead of their times.

    Raises:
        FileNotFoundError: an image does not exist.
    """
    digest = hashlib.sha256(b"content\n" if content_hash else b"stat\n")
    for path in paths:
        status = os.stat(path)
        identity = file_sha256(path) if content_hash else str(status.st_mtime_ns)
        digest.update(f"{os.fspath(path)}\t{status.st_size}\t{identity}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 (hex) of an array's bytes in C order (a memory-mapped array is read through)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


def make_cache_key(
    checkpoint: str | PathLike[str] | None,
    set_name: str,
    image_size: tuple[int, int],
    *,
    image_paths: Sequence[str | PathLike[str]] | None = None,
    content_hash: bool = False,
    checkpoint_digest: str | None = None,
    **settings: Any,
) -> CacheKey:
    """Build the key of the descriptors of ``set_name`` computed with ``checkpoint``.

    Args:
        checkpoint: the weights file (hashed, see the module docstring). None for weights
            that are not a local file: then ``settings`` must say which weights they are
            (e.g. ``weights="torch.hub:serizba/salad"``).
        set_name: evaluation set name.
        image_size: ``(height, width)`` the images are resized to.
        image_paths: the set's image files; the key then holds their
            :func:`image_files_fingerprint` (field ``image_files``).
        content_hash: fingerprint the images' content rather than their modification times.
        checkpoint_digest: ``checkpoint``'s :func:`checkpoint_sha256` when the caller has it
            already (a large file is then not read again).
        settings: every other JSON-serialisable value that changes the descriptors.

    Raises:
        FileNotFoundError: ``checkpoint`` or an image does not exist.
        ValueError: ``checkpoint`` None with no ``settings``, or a setting JSON cannot hold.
    """
    if checkpoint is None and not settings:
        raise ValueError("without a checkpoint file, settings must name the weights used")
    if any(field in settings for field in RESERVED_FIELDS):
        raise ValueError(f"settings must not repeat {', '.join(RESERVED_FIELDS)}")
    fields = {
        "checkpoint_sha256": None if checkpoint is None else checkpoint_digest or checkpoint_sha256(checkpoint),
        "set_name": set_name,
        "image_size": [int(side) for side in image_size],
        **({} if image_paths is None else {"image_files": image_files_fingerprint(image_paths, content_hash)}),
        **settings,
    }
    try:
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    except TypeError as error:
        raise ValueError(f"descriptor cache settings must be JSON values: {error}") from error
    return CacheKey(set_name=set_name, canonical_json=canonical)


class DescriptorCache:
    """Descriptor arrays stored under ``cache_dir`` (created on first save)."""

    def __init__(self, cache_dir: str | PathLike[str]) -> None:
        self.cache_dir = Path(cache_dir)
        if self.cache_dir.is_dir():
            removed = remove_stale_temporaries(self.cache_dir, STALE_TEMPORARY_S)
            if removed:
                logger.info("removed %d temporary file(s) of interrupted cache writes from %s (%s)", len(removed),
                            self.cache_dir, ", ".join(path.name for path in removed[:3]))

    def array_path(self, key: CacheKey) -> Path:
        return self.cache_dir / f"{key.file_stem}.npy"

    def sidecar_path(self, key: CacheKey) -> Path:
        return self.cache_dir / f"{key.file_stem}.json"

    def load(self, key: CacheKey, mmap_mode: Literal["r"] | None = None) -> np.ndarray | None:
        """The cached array of ``key``, or None when there is no complete, matching entry.

        Args:
            key: entry to look up.
            mmap_mode: ``"r"`` to memory-map the file instead of reading it.
        """
        array_path, sidecar_path = self.array_path(key), self.sidecar_path(key)
        if not (array_path.is_file() and sidecar_path.is_file()):
            logger.debug("no cached descriptors for %s in %s", key.set_name, self.cache_dir)
            return None
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
            array = load_npy(array_path, "cached descriptors", mmap_mode=mmap_mode, allow_objects=False)
        except (OSError, ValueError) as error:
            logger.warning("ignoring unreadable cached descriptors %s: %s", array_path, error)
            return None
        if (
            sidecar.get("key") != key.fields
            or sidecar.get("shape") != list(array.shape)
            or sidecar.get("dtype") != str(array.dtype)
        ):
            logger.warning("ignoring cached descriptors %s: sidecar does not match", array_path)
            return None
        if "sha256" not in sidecar:
            logger.warning("ignoring cached descriptors %s: %s holds no checksum (an older cache); computing them "
                           "again", array_path, sidecar_path.name)
            return None
        if sidecar["sha256"] != array_sha256(array):
            logger.warning("ignoring cached descriptors %s: its bytes do not match the checksum in %s (corrupt or "
                           "replaced); computing them again", array_path, sidecar_path.name)
            return None
        logger.info("reusing cached descriptors %s (shape %s)", array_path, tuple(array.shape))
        return array

    def save(self, key: CacheKey, array: np.ndarray) -> Path:
        """Store ``array`` (any shape, e.g. ``[N, D]`` float32) under ``key``.

        Both files are written to temporary names and renamed, array first, so a crash
        leaves either the previous entry or no readable entry. Returns the ``.npy`` path.
        """
        array = np.asarray(array)
        if array.dtype == object:
            raise ValueError("cannot cache an object array; descriptors must be numeric")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        array_path, sidecar_path = self.array_path(key), self.sidecar_path(key)
        sidecar_path.unlink(missing_ok=True)  # the entry is incomplete until the sidecar is back
        sidecar = {
            "key": key.fields,
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "sha256": array_sha256(array),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_atomically(array_path, lambda stream: np.save(stream, array, allow_pickle=False))
        write_atomically(
            sidecar_path, lambda stream: stream.write(json.dumps(sidecar, indent=2).encode("utf-8"))
        )
        logger.info("cached descriptors %s (shape %s)", array_path, tuple(array.shape))
        return array_path
