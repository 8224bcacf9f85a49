"""Descriptors streamed to disk as they are computed, chunk by chunk, so that memory stays bounded
by a chunk (not the database) and a killed evaluation resumes where it stopped.

One folder per set (``<run folder>/descriptors/<set>/``)::

    identity.json                what the descriptors are of: settings, image list, chunk size
    database.npy, queries.npy    [N, D] and [M, D] float32 in .npy format (np.load(mmap_mode="r"))
    chunks/database_00003.json   one record per complete chunk: its rows, the SHA-256 of its bytes
                                 and that of the identity it was computed with

A chunk is ``chunk_size`` consecutive rows of one side. Its rows are written in place into the
side's file and flushed to disk (``fsync``) before its record is written (atomically, under a
temporary name then renamed): a chunk without a record is incomplete, whatever its bytes hold.
When a store is opened again (``eval.py --resume``), every recorded chunk is read back and its
checksum compared; a chunk whose bytes changed is computed again, with a warning naming it.
A folder whose identity differs, is unreadable or is missing is refused: its chunks are never
reused (nor mixed with new ones) unless what they were computed with is known to be the same.

Several processes (``torch.distributed`` ranks) share one store: each describes the chunks
:func:`owner` gives it, writing only its own rows and records, so no two processes ever write
the same bytes except the ``.npy`` header, which every one of them writes identically.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from dataloaders.safe_npy import load_npy
from utils.atomic_write import write_atomically
from utils.errors import UserError, UserFileError

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 2048
"""Images per chunk: 69 MiB of 8448-d float32 descriptors held at most before they are written,
about 1400 chunk records for SF-XL's 2.8M database images."""
SIDES = ("database", "queries")
DTYPE = np.dtype("<f4")
IDENTITY_FILE = "identity.json"


class Chunk(NamedTuple):
    """Rows ``[start, stop)`` of one side (``"database"`` or ``"queries"``); chunk ``index`` of it."""

    side: str
    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.side}_{self.index:05d}"

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class SidedDescriptors:
    """A set's descriptors as two arrays (memory-mapped from a :class:`DescriptorStore`), which
    reads like the ``[num_db + num_queries, D]`` array of an in-memory evaluation: slicing at
    the database size gives one side without a copy.

    Attributes:
        database: ``[N, D]`` float32.
        queries: ``[M, D]`` float32.
    """

    database: np.ndarray
    queries: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.database.shape[0] + self.queries.shape[0], self.database.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.database.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        num_db = self.database.shape[0]
        if isinstance(rows, slice) and rows.step in (None, 1):
            if rows.start in (None, 0) and rows.stop == num_db:
                return self.database
            if rows.start == num_db and rows.stop is None:
                return self.queries
        return np.asarray(self)[rows]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.concatenate([self.database, self.queries]).astype(dtype or self.dtype, copy=False)


def split_sides(descriptors: np.ndarray | SidedDescriptors, num_db: int) -> tuple[np.ndarray, np.ndarray]:
    """``(database [N, D], queries [M, D])`` of a set's descriptors, without a copy."""
    if isinstance(descriptors, SidedDescriptors):
        return descriptors.database, descriptors.queries
    return descriptors[:num_db], descriptors[num_db:]


def plan_chunks(sides: Mapping[str, int], chunk_size: int) -> list[Chunk]:
    """The chunks of every side, database first: ``sides`` maps a side to its number of rows."""
    return [
        Chunk(side, index, start, min(start + chunk_size, rows))
        for side, rows in sides.items()
        for index, start in enumerate(range(0, rows, chunk_size))
    ]


def owner(chunk_number: int, world_size: int) -> int:
    """The rank that describes chunk number ``chunk_number`` (in :func:`plan_chunks` order):
    chunks are dealt in turn, so every rank gets a share of both sides."""
    return chunk_number % world_size


def npy_header(shape: tuple[int, int]) -> bytes:
    """The ``.npy`` header of a C-ordered float32 array of ``shape`` (numpy's own format)."""
    stream = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(DTYPE), "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(stream, header)
    return stream.getvalue()


def store_identity(identity: Mapping[str, Any], sides: Mapping[str, int], chunk_size: int) -> dict[str, Any]:
    """What a store's descriptors are of, as JSON reads it back: ``identity`` with the rows of each
    side and the chunk size."""
    return json.loads(json.dumps({**identity, "sides": dict(sides), "chunk_size": chunk_size}))


def differences(then: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """Each setting whose value differs, with both values: ``image_size [32, 32] then, [40, 40] now``."""
    changed = sorted(key for key in {*then, *now} if then.get(key) != now.get(key))
    return "; ".join(f"{key} {json.dumps(then.get(key))} then, {json.dumps(now.get(key))} now" for key in changed)


def read_json_object(path: Path, remedy: str) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        UserFileError: unreadable, or not a JSON object: one line naming ``path``, then ``remedy``.
    """
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserFileError(f"{path} is unreadable ({error}): {remedy}") from None
    if not isinstance(value, dict):
        raise UserFileError(f"{path} is unreadable (not a JSON object): {remedy}")
    return value


def check_identity(folder: Path, identity: Mapping[str, Any]) -> bool:
    """Whether ``folder`` holds descriptors of ``identity`` (its ``identity.json`` equal to it);
    ``False`` when it holds none yet (no identity, no chunk). Reads only, changes nothing.

    Raises:
        UserFileError: ``identity.json`` is unreadable.
        UserError: the folder holds descriptors of other settings, or descriptors without an
            ``identity.json`` (what they were computed with is unknown: they are never reused).
    """
    folder = Path(folder)
    path = folder / IDENTITY_FILE
    delete = f"delete {folder} to compute its descriptors again"
    if not path.exists():
        leftovers = [*folder.glob("chunks/*.json"), *(folder / f"{side}.npy" for side in SIDES)]
        if any(leftover.exists() for leftover in leftovers):
            raise UserError(f"{folder} holds descriptors but no {IDENTITY_FILE} saying what they were computed with, "
                            f"so they cannot be reused: {delete}")
        return False
    stored = read_json_object(path, delete)
    if stored != identity:
        raise UserError(f"{folder} holds descriptors made with other settings ({differences(stored, identity)}): "
                        "resume with the settings of the interrupted run, or start a new run")
    return True


class DescriptorStore:
    """The descriptor files of one set (see the module docstring).

    Args:
        folder: the set's folder (created if needed).
        identity: JSON values saying what the descriptors are of (model, preprocessing, image
            list): a folder made with another identity is refused, never mixed.
        sides: rows of each side, e.g. ``{"database": N, "queries": M}``.
        chunk_size: rows per chunk.
        fingerprint: what a chunk's rows are computed from, as a string (the images' sizes and
            modification times): stored in its record, and a chunk whose inputs no longer give the
            same one is computed again.

    Raises:
        UserError: the folder holds descriptors of another identity, or without one
            (:func:`check_identity`).
    """

    def __init__(self, folder: Path, identity: Mapping[str, Any], sides: Mapping[str, int], chunk_size: int,
                 fingerprint: Callable[[Chunk], str] | None = None) -> None:
        if chunk_size < 1:
            raise UserError(f"chunk_size={chunk_size} must be at least 1")
        self.folder = Path(folder)
        self.sides = dict(sides)
        self.chunk_size = chunk_size
        self.identity = store_identity(identity, self.sides, chunk_size)
        self.identity_sha256 = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()
        self.chunks = plan_chunks(self.sides, chunk_size)
        self.fingerprint = fingerprint
        known = check_identity(self.folder, self.identity)
        (self.folder / "chunks").mkdir(parents=True, exist_ok=True)
        if not known:
            write_atomically(self.folder / IDENTITY_FILE,
                             lambda stream: stream.write(json.dumps(self.identity, indent=2).encode()))

    def side_path(self, side: str) -> Path:
        return self.folder / f"{side}.npy"

    def record_path(self, chunk: Chunk) -> Path:
        return self.folder / "chunks" / f"{chunk.name}.json"

    # ------------------------------------------------------------------------ checking
    def record(self, chunk: Chunk) -> dict[str, Any] | None:
        """The chunk's record, or ``None`` when it has none (or one that does not describe it, or
        was written for another identity: a record carries the SHA-256 of the store's identity)."""
        try:
            record = json.loads(self.record_path(chunk).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or (record.get("start"), record.get("stop")) != (chunk.start, chunk.stop):
            return None
        return record if record.get("identity") == self.identity_sha256 else None

    def verified(self, chunk: Chunk) -> bool:
        """Whether the chunk is complete on disk: recorded, and its bytes still match its checksum
        (read back from the file). A mismatch is logged, naming the chunk."""
        record = self.record(chunk)
        if record is None:
            return False
        dim = record.get("dim")
        try:
            with open(self.side_path(chunk.side), "rb") as stream:
                header = npy_header((self.sides[chunk.side], dim))
                if stream.read(len(header)) != header:
                    raise ValueError("header")
                stream.seek(len(header) + chunk.start * dim * DTYPE.itemsize)
                data = stream.read(chunk.rows * dim * DTYPE.itemsize)
        except (OSError, ValueError, TypeError):
            data = b""
        if hashlib.sha256(data).hexdigest() != record.get("sha256"):
            changed = "its bytes changed since they were written"
        elif self.fingerprint is not None and record.get("images") != self.fingerprint(chunk):
            changed = "its images changed since it was computed (their size or modification time)"
        else:
            return True
        log.warning("%s chunk %d of %s (rows %d-%d): %s; computing it again",
                    chunk.side, chunk.index, self.folder.name, chunk.start, chunk.stop - 1, changed)
        self.record_path(chunk).unlink(missing_ok=True)
        return False

    def missing(self, chunks: Iterable[Chunk]) -> list[Chunk]:
        """The chunks of ``chunks`` that are not verified complete.

        Raises:
            UserError: a side's file is not the size its recorded chunks imply (cut short, or
                another file): before any chunk is computed, not after.
        """
        chunks = list(chunks)
        for side in {chunk.side for chunk in chunks}:
            dims = {record["dim"] for chunk in self.chunks if chunk.side == side
                    if (record := self.record(chunk)) is not None and isinstance(record.get("dim"), int)}
            path = self.side_path(side)
            if len(dims) == 1 and path.is_file():
                self.check_side_size(side, path.stat().st_size, dims.pop())
        return [chunk for chunk in chunks if not self.verified(chunk)]

    def side_bytes(self, side: str, dim: int) -> int:
        """The size of a side's file of ``[rows, dim]`` float32 descriptors: its ``.npy`` header and rows."""
        return len(npy_header((self.sides[side], dim))) + self.sides[side] * dim * DTYPE.itemsize

    def check_side_size(self, side: str, size: int, dim: int) -> None:
        """Refuse a side's file of ``size`` bytes that is not ``[rows, dim]`` float32 descriptors.

        Raises:
            UserError: one line naming the file, both sizes and what to do.
        """
        expected = self.side_bytes(side, dim)
        if size != expected:
            raise UserError(f"{self.side_path(side)} is {size} bytes, not the {expected} of [{self.sides[side]}, {dim}] "
                            "float32 descriptors: delete it to compute them again")

    def unrecorded(self) -> list[Chunk]:
        """Chunks of the whole set without a record (after every rank has finished: none)."""
        return [chunk for chunk in self.chunks if self.record(chunk) is None]

    # ------------------------------------------------------------------------ writing
    def write(self, chunk: Chunk, rows: np.ndarray) -> None:
        """Write ``rows`` [chunk.rows, D] into the side's file, flush it to disk, then record the chunk."""
        rows = np.ascontiguousarray(rows, dtype=DTYPE)
        if rows.shape[0] != chunk.rows:
            raise ValueError(f"{chunk.name}: {rows.shape[0]} rows for a chunk of {chunk.rows}")
        dim = rows.shape[1]
        header = npy_header((self.sides[chunk.side], dim))
        size = self.side_bytes(chunk.side, dim)
        path = self.side_path(chunk.side)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            current = os.fstat(descriptor).st_size
            if current != 0:
                self.check_side_size(chunk.side, current, dim)
            else:
                os.ftruncate(descriptor, size)
            os.pwrite(descriptor, header, 0)  # the same bytes from every process
            data = memoryview(rows).cast("B")
            offset = len(header) + chunk.start * dim * DTYPE.itemsize
            while data:
                written = os.pwrite(descriptor, data, offset)
                data, offset = data[written:], offset + written
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        record = {
            "side": chunk.side, "index": chunk.index, "start": chunk.start, "stop": chunk.stop, "dim": dim,
            "sha256": hashlib.sha256(rows.tobytes()).hexdigest(), "identity": self.identity_sha256,
            **({"images": self.fingerprint(chunk)} if self.fingerprint is not None else {}),
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_atomically(self.record_path(chunk), lambda stream: stream.write(json.dumps(record).encode()))

    def arrays(self) -> SidedDescriptors:
        """Both sides, memory-mapped read-only (every chunk must be complete)."""
        missing = self.unrecorded()
        if missing:
            raise RuntimeError(f"{self.folder}: {len(missing)} chunk(s) incomplete, first {missing[0].name}")
        database, queries = (load_npy(self.side_path(side), f"{side} descriptors", mmap_mode="r") for side in SIDES)
        return SidedDescriptors(database, queries)


class ChunkWriter:
    """Collects descriptors that arrive batch by batch (any order) and writes each chunk of
    ``chunks`` as soon as all its rows are there; holds at most the chunks in progress.

    ``offsets`` maps a side to the set-wide index of its first row (database 0, queries N).
    """

    def __init__(self, store: DescriptorStore, chunks: Iterable[Chunk], offsets: Mapping[str, int]) -> None:
        self.store = store
        self.pending = {(chunk.side, chunk.index): chunk for chunk in chunks}
        self.offsets = dict(offsets)
        self.buffers: dict[tuple[str, int], tuple[np.ndarray, int]] = {}
        self.written: list[Chunk] = []

    def locate(self, index: int) -> tuple[str, int]:
        """``(side, row)`` of set-wide item ``index``."""
        side = max((side for side, offset in self.offsets.items() if offset <= index), key=self.offsets.__getitem__)
        return side, index - self.offsets[side]

    def add(self, indices: np.ndarray, descriptors: np.ndarray) -> None:
        """Take a batch: ``indices [B]`` set-wide, ``descriptors [B, D]``."""
        for index, row in zip(indices.tolist(), descriptors):
            side, position = self.locate(index)
            key = (side, position // self.store.chunk_size)
            chunk = self.pending[key]
            buffer, filled = self.buffers.get(key) or (np.empty((chunk.rows, row.shape[0]), DTYPE), 0)
            buffer[position - chunk.start] = row
            self.buffers[key] = (buffer, filled + 1)
            if filled + 1 == chunk.rows:
                self.store.write(chunk, buffer)
                del self.buffers[key], self.pending[key]
                self.written.append(chunk)
