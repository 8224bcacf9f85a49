"""One MSLS CSV read and checked: the validation shared by MSLS training (CliqueMining,
:mod:`dataloaders.msls_cliques`) and evaluation (:mod:`dataloaders.eval_sets.msls_raw`).

MSLS's CSVs (``postprocessed.csv``, ``raw.csv``, ``subtask_index.csv``, ``seq_info.csv``) start
with an unnamed index column; keys are read as text. A file that cannot be parsed, that holds only
its header, or whose column holds a value that is not what the column means (a position that is
NaN, infinite or beyond :data:`~dataloaders.geo.MAX_COORDINATE`, a cluster id that is not an
integer, a flag that is not True/False) is refused in one line naming the file, the row (its line
in the file: the header is line 1) and the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dataloaders.geo import MAX_COORDINATE, are_positions
from utils.errors import UserError, UserFileError

POSITION_COLUMNS: tuple[str, ...] = ("easting", "northing")
"""UTM columns of ``postprocessed.csv``, in metres."""
FIRST_ROW_LINE = 2
"""Line of the file holding the first row (line 1 is the header)."""
RESTORE = "restore it from the MSLS download"


def read_msls_csv(path: Path, columns: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of the MSLS CSV ``path``, which must hold ``columns`` and at least one row.

    Raises:
        UserFileError: ``path`` is not a file.
        UserError: it is not a readable CSV, lacks one of ``columns``, or holds only its header.
    """
    if not path.is_file():
        raise UserFileError(f"MSLS file {path} does not exist; every city side needs its CSVs "
                            "(postprocessed.csv, raw.csv, subtask_index.csv)")
    try:
        table = pd.read_csv(path, dtype={"key": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        raise UserError(f"{path} is not a readable CSV; {RESTORE}") from None
    require_columns(table, columns, path)
    if table.empty:
        raise UserError(f"{path} holds no rows (only a header); {RESTORE}")
    return table


def require_columns(table: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    """Refuse ``table`` (read from ``path``) when it lacks one of ``columns``."""
    missing = [column for column in columns if column not in table.columns]
    if missing:
        present = ", ".join(str(column) for column in table.columns if not str(column).startswith("Unnamed"))
        raise UserError(f"{path} has no column {', '.join(missing)} (its columns: {present}); {RESTORE}")


def _refuse_rows(table: pd.DataFrame, column: str, bad: np.ndarray, expected: str, path: Path, why: str = "") -> None:
    """Refuse ``table``'s rows where ``bad [N]`` is true, naming the first one's line and value."""
    rows = np.flatnonzero(bad)
    if len(rows):
        value = table[column].iloc[rows[0]]
        shown = repr(value) if isinstance(value, str) else str(value)
        raise UserError(f"{path}: row {rows[0] + FIRST_ROW_LINE}, column {column} holds {shown}, not {expected} "
                        f"({why}{len(rows)} such rows): fix the file or {RESTORE}")


def _numbers(table: pd.DataFrame, column: str) -> np.ndarray:
    """``[N]`` float64 values of ``column``; NaN where a cell is empty or not a number."""
    return pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def msls_positions(table: pd.DataFrame, path: Path) -> np.ndarray:
    """``[N, 2]`` float64 UTM easting, northing of every row, each finite and at most
    ``MAX_COORDINATE`` metres in magnitude."""
    require_columns(table, POSITION_COLUMNS, path)
    columns = []
    for column in POSITION_COLUMNS:
        values = _numbers(table, column)
        _refuse_rows(table, column, ~are_positions(values), "a UTM position", path,
                     why=f"NaN, infinite, not a number or beyond {MAX_COORDINATE:g} m; ")
        columns.append(values)
    return np.stack(columns, axis=1)


def msls_integers(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """``[N]`` int64 values of ``column`` (a cluster id), each an integer."""
    require_columns(table, (column,), path)
    values = _numbers(table, column)
    whole = np.isfinite(values) & (np.abs(values) < 2.0**53)
    _refuse_rows(table, column, ~whole | (values != np.round(values)), "an integer", path)
    return values.astype(np.int64)


def msls_flags(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """``[N]`` bool values of ``column`` (bool cells, or the text True/False in any case)."""
    require_columns(table, (column,), path)
    values = table[column]
    if values.dtype == bool:
        return values.to_numpy(dtype=bool)
    text = values.astype(str).str.strip().str.lower()
    _refuse_rows(table, column, ~text.isin(["true", "false"]).to_numpy(), "True or False", path)
    return (text == "true").to_numpy(dtype=bool)
