"""What one dataset part of the toy world adds: images to render, files to write, counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .files import save_mat, save_npy, write_csv
from .jobs import RenderJob


@dataclass
class DatasetPart:
    """What one part of the world adds: images to render, files to write, counts to report."""

    jobs: list[RenderJob] = field(default_factory=list)
    tables: list[tuple[Path, pd.DataFrame, bool]] = field(default_factory=list)  # CSV path, rows, index column
    arrays: list[tuple[Path, np.ndarray]] = field(default_factory=list)  # .npy files
    mats: list[tuple[Path, dict[str, object]]] = field(default_factory=list)  # .mat files
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def write_files(self) -> None:
        for path, frame, index in self.tables:
            write_csv(frame, path, index=index)
        for path, array in self.arrays:
            save_npy(path, array)
        for path, content in self.mats:
            save_mat(path, content)
