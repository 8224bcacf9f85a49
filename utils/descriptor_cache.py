"""On-disk cache of computed descriptors, so that re-evaluating the same weights on the same
set does not run the model again.

An entry is identified by a :class:`CacheKey` made from everything that changes the
descriptors: the checkpoint's content, the set name, the image size and any other setting
the caller passes (precision, batch-independent preprocessing flags, dataset root, ...).

Checkpoint identity is the **full SHA-256 of the checkpoint file**, computed each time a key
is made (about a second per GiB, small next to computing descriptors). Unlike a size + mtime
+ partial-hash fingerprint it survives copying or re-downloading the file and catches any
change to its content.

Each entry is two files in the cache folder: ``<set>_<digest>.npy`` holding the array, and
``<set>_<digest>.json`` holding the key's fields, shape and dtype. The JSON is written last,
so an entry without it is incomplete and is ignored; a sidecar whose fields, shape or dtype do
not match is treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dataloaders.safe_npy import load_npy
from utils.atomic_write import write_atomically

logger = logging.getLogger(__name__)

HASH_BLOCK_BYTES = 1 << 20
DIGEST_CHARS = 24
"""Hex characters of the key's SHA-256 used in file names (96 bits)."""


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
        raise FileNotFoundError(f"checkpoint not found: {path}")
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def make_cache_key(
    checkpoint: str | PathLike[str] | None,
    set_name: str,
    image_size: tuple[int, int],
    **settings: Any,
) -> CacheKey:
    """Build the key of the descriptors of ``set_name`` computed with ``checkpoint``.

    Args:
        checkpoint: the weights file (hashed, see the module docstring). None for weights
            that are not a local file: then ``settings`` must say which weights they are
            (e.g. ``weights="torch.hub:serizba/salad"``).
        set_name: evaluation set name.
        image_size: ``(height, width)`` the images are resized to.
        settings: every other JSON-serialisable value that changes the descriptors.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: ``checkpoint`` None with no ``settings``, or a setting JSON cannot hold.
    """
    if checkpoint is None and not settings:
        raise ValueError("without a checkpoint file, settings must name the weights used")
    if "checkpoint_sha256" in settings or "set_name" in settings or "image_size" in settings:
        raise ValueError("settings must not repeat checkpoint_sha256, set_name or image_size")
    fields = {
        "checkpoint_sha256": None if checkpoint is None else checkpoint_sha256(checkpoint),
        "set_name": set_name,
        "image_size": [int(side) for side in image_size],
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
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_atomically(array_path, lambda stream: np.save(stream, array, allow_pickle=False))
        write_atomically(
            sidecar_path, lambda stream: stream.write(json.dumps(sidecar, indent=2).encode("utf-8"))
        )
        logger.info("cached descriptors %s (shape %s)", array_path, tuple(array.shape))
        return array_path
