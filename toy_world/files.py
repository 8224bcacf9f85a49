"""Writers of the output files: CSV tables, ``.npy`` arrays and reproducible ``.mat`` files."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io


def write_csv(frame: pd.DataFrame, path: Path, index: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=index, lineterminator="\n")


def save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=array.dtype == object)


def object_array(items: Sequence[object]) -> np.ndarray:
    """A 1-d object array holding ``items`` as they are (arrays stay arrays)."""
    array = np.empty(len(items), dtype=object)
    for index, item in enumerate(items):
        array[index] = item
    return array


_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: toy_world"


def save_mat(path: Path, content: dict[str, object]) -> None:
    """``scipy.io.savemat`` with a fixed header text (scipy writes the creation time there,
    which would make two runs differ)."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, content, format="5")
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
