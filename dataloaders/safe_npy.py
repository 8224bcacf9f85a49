"""The one reader of ``.npy`` files: nothing in a file runs code.

``np.load(allow_pickle=True)`` unpickles object arrays with the full pickle machinery, so a
crafted index file (``Nordland_gt.npy``, VPR-Bench ``ground_truth_new.npy``) would run any
code it names. Here plain arrays are read with ``allow_pickle=False``; object arrays (the
published ragged ground truth, MSLS test lists) are unpickled by :class:`NumpyOnlyUnpickler`,
which resolves only numpy's array, dtype and scalar reconstruction and plain Python containers
and scalars. Any other global in the pickle is refused before anything is called.
"""

from __future__ import annotations

import importlib
import pickle
from os import PathLike
from pathlib import Path
from typing import IO, Literal

import numpy as np
from numpy.lib import format as npy_format

from utils.errors import UserError, UserFileError

NUMPY_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    (module, name)
    for core in ("numpy.core.multiarray", "numpy._core.multiarray")
    for module, name in ((core, "_reconstruct"), (core, "scalar"))
) | {("numpy", "ndarray"), ("numpy", "dtype")}
"""Array, dtype and scalar reconstruction as numpy pickles them (``numpy.core`` before 2.0)."""

BUILTIN_NAMES: frozenset[str] = frozenset(
    ("list", "tuple", "dict", "set", "frozenset", "int", "float", "complex", "bool", "str", "bytes", "bytearray")
)
"""Plain containers and scalars an object array may hold (``builtins``, ``__builtin__`` in Python 2 pickles)."""


class RefusedPickleError(UserError):
    """A ``.npy`` object array whose pickle names a global outside the allow-list."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`NUMPY_GLOBALS` and :data:`BUILTIN_NAMES`.

    Args:
        stream: binary stream positioned at the pickle.
        source: what the stream is, e.g. ``"index file /data/Nordland_gt.npy"``, for the error.
    """

    def __init__(self, stream: IO[bytes], source: str) -> None:
        # encoding and fix_imports as np.load's defaults (Python 2 pickles of str arrays)
        super().__init__(stream, fix_imports=True, encoding="ASCII")
        self.source = source

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in NUMPY_GLOBALS:
            # numpy 2 keeps numpy.core as a shim that warns; numpy._core is the same code
            if module.startswith("numpy.core.") and hasattr(np, "_core"):
                module = module.replace("numpy.core.", "numpy._core.", 1)
            return getattr(importlib.import_module(module), name)
        if module in ("builtins", "__builtin__") and name in BUILTIN_NAMES:
            return getattr(__import__("builtins"), name)
        raise RefusedPickleError(
            f"{self.source} holds a pickled {module}.{name}: refused, not executed "
            "(only numpy arrays, dtypes and plain Python values are read from .npy files)"
        )

    def persistent_load(self, pid: object) -> object:
        raise RefusedPickleError(f"{self.source} holds a pickled persistent id: refused, not executed")


def read_npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` of a ``.npy`` stream, leaving it at the data."""
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(stream)
    return npy_format.read_array_header_2_0(stream)  # 2.0 and 3.0 (utf-8 field names) alike


def load_npy(
    path: str | PathLike[str],
    what: str = "file",
    mmap_mode: Literal["r"] | None = None,
    allow_objects: bool = True,
) -> np.ndarray:
    """Read one ``.npy`` file without running anything it holds.

    Args:
        path: the file.
        what: what the file is to the user (``"index file"``, ``"cached descriptors"``),
            the start of every error message.
        mmap_mode: ``"r"`` memory-maps a plain (non-object) array.
        allow_objects: False refuses object arrays altogether (files that must be numeric).

    Returns:
        the array, shape and dtype as stored (object arrays: items rebuilt as numpy arrays,
        numpy scalars or Python containers / scalars).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RefusedPickleError: an object array whose pickle names anything else (nothing is called).
        ValueError: not a readable ``.npy`` file (truncated, not an array, object array where
            none is allowed).
    """
    path = Path(path)
    source = f"{what} {path}"
    if not path.is_file():
        raise UserFileError(f"{source} does not exist")
    try:
        with path.open("rb") as stream:
            shape, _, dtype = read_npy_header(stream)
            if not dtype.hasobject:
                return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
            if allow_objects and mmap_mode is None:
                array = NumpyOnlyUnpickler(stream, source).load()
    except RefusedPickleError:
        raise
    except (OSError, ValueError, EOFError, TypeError, AttributeError, IndexError, KeyError, pickle.UnpicklingError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{source} is not a readable .npy array: {message}") from error
    if not allow_objects or mmap_mode is not None:
        raise UserError(f"{source} holds an object array ({dtype}) where a numeric array is expected")
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise UserError(f"{source} is not a readable .npy array: its data does not match its header {list(shape)}")
    return array
