"""The predictions file of the MSLS challenge (Mapillary Street-Level Sequences, test split).

Format, as read by the official evaluator (``mapillary_sls`` ``evaluate.py``, which calls
``np.loadtxt(path, dtype=str, ndmin=2)``): one line per test query, the query key followed by
its ranked database keys, separated by single spaces. A key is an image's bare file stem
(MSLS keys are 22 characters; no folder, no ``.jpg``). Every query appears once, no line
repeats a database key, and every line has the same number of columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path, PurePath

import numpy as np

from utils.atomic_write import write_atomically
from utils.errors import UserError, UserFileExistsError


def key_from_path(path: str | PathLike[str]) -> str:
    """The MSLS key of an image path: its file name without folder and extension.

    ``"test/miami/query/images/tJzigt65ZMWDop8ZQwAuoC.jpg"`` -> ``"tJzigt65ZMWDop8ZQwAuoC"``.
    """
    key = PurePath(path).stem
    if not key:
        raise UserError(f"cannot take an MSLS key from the path {path!r}")
    return key


def write_msls_predictions(
    path: str | PathLike[str],
    query_keys: Sequence[str],
    db_keys: Sequence[str],
    predictions: np.ndarray,
) -> Path:
    """Write the challenge predictions file.

    Args:
        path: output text file; must not exist yet (its folder is created if needed).
        query_keys: ``M`` query keys (see :func:`key_from_path`), all different.
        db_keys: ``N`` database keys.
        predictions: ``[M, K]`` database indices per query, best first (the published code
            writes ``K = 25``).

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists.
        ValueError: a key with whitespace or a folder/extension, repeated query keys, a
            prediction index outside ``[0, N)``, or a line that would repeat a database key.
    """
    path = Path(path)
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape[1] == 0:
        raise ValueError(
            f"predictions must be a [queries, K] array with K >= 1, got shape {predictions.shape}"
        )
    if not np.issubdtype(predictions.dtype, np.integer):
        raise ValueError(f"predictions must hold integer database indices, got dtype {predictions.dtype}")
    if predictions.shape[0] != len(query_keys):
        raise ValueError(
            f"predictions has {predictions.shape[0]} rows but there are {len(query_keys)} query keys"
        )
    if predictions.size and (predictions.min() < 0 or predictions.max() >= len(db_keys)):
        raise ValueError(
            f"prediction indices must lie in [0, {len(db_keys)}), found "
            f"{predictions.min()} .. {predictions.max()}"
        )
    for role, keys in (("query", query_keys), ("database", db_keys)):
        for key in keys:
            _check_key(key, role)
    seen: set[str] = set()
    for key in query_keys:
        if key in seen:
            raise UserError(f"query key {key!r} appears more than once")
        seen.add(key)

    lines = []
    for query_key, row in zip(query_keys, predictions):
        ranked_keys = [db_keys[index] for index in row.tolist()]
        if len(set(ranked_keys)) != len(ranked_keys):
            raise UserError(f"the predictions of query {query_key!r} repeat a database key")
        lines.append(" ".join([query_key, *ranked_keys]))

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomically(path, lambda stream: stream.write(("\n".join(lines) + "\n").encode("ascii")), exclusive=True)
    except FileExistsError:
        raise UserFileExistsError(f"MSLS predictions file already exists, not overwriting it: {path}") from None
    return path


def _check_key(key: str, role: str) -> None:
    """A key must be a non-empty bare stem that ``np.loadtxt`` reads back as one field."""
    if not isinstance(key, str) or not key:
        raise UserError(f"{role} key must be a non-empty string, got {key!r}")
    if any(character.isspace() for character in key) or "/" in key or "\\" in key:
        raise UserError(f"{role} key {key!r} must be a bare image stem without spaces or folders")
    if not key.isascii() or "#" in key:
        # np.loadtxt treats '#' as the start of a comment
        raise UserError(f"{role} key {key!r} must be ASCII without '#'")
    if key.lower().endswith((".jpg", ".jpeg", ".png")):
        raise UserError(f"{role} key {key!r} must not carry an image extension (use key_from_path)")
