"""Evaluation results: the recall table shown to the user, the per-run JSON file, run folders.

The results JSON maps each evaluation set's name to one entry::

    {
      "msls_val": {
        "recall@k": {"1": 92.2, "5": 96.4, ...},        # percent, keys are K as text
        "recall_curve": [92.2, 94.6, ...],                # Recall@N for N = 1 .. len
        "num_queries": 740, "num_db": 18871,
        "image_size": [322, 322], "checkpoint": "weights/dino_salad.ckpt", ...
      },
      ...
    }

:func:`make_set_result` builds an entry with the required fields; any JSON-serialisable
extra details (numpy scalars/arrays and paths are converted) can be added.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from prettytable import PrettyTable

from utils.atomic_write import write_atomically
from utils.errors import UserError, UserFileError, UserFileExistsError

RECALLS_FIELD = "recall@k"
CURVE_FIELD = "recall_curve"
RESULTS_FILE = "results.json"
"""The results file of an eval.py run folder (:func:`write_results_json`)."""
RUN_DIR_TIME_FORMAT = "%Y-%m-%d_%H-%M-%S"
GENERIC_CHECKPOINT_NAME = re.compile(r"(last|resume-latest)(-v\d+)?|epoch=?\d+.*|model|checkpoint")
"""Checkpoint names that say nothing of their run (Lightning's ``last``, ``last-v1``, ...)."""


def model_label(entry: Mapping[str, Any], with_architecture: bool = True) -> str:
    """A short name of the model a results entry (or a run's settings) was computed with: the
    checkpoint's name, its run folder in front of a generic one (``version_3/last``), or
    ``random weights (seed N)``; then the architecture (``resnet18+SALAD``) where known.

    >>> model_label({"checkpoint": "logs/lightning_logs/version_3/checkpoints/last.ckpt",
    ...              "architecture": {"backbone_arch": "resnet18", "agg_arch": "SALAD"}})
    'version_3/last (resnet18+SALAD)'
    """
    weights = str(entry.get("weights", ""))
    architecture = entry.get("architecture") or {}
    arch = "+".join(str(architecture[key]) for key in ("backbone_arch", "agg_arch") if key in architecture)
    if weights.startswith("random"):
        label = f"random weights{weights.removeprefix('random')}"
    elif entry.get("checkpoint"):
        path = Path(str(entry["checkpoint"]))
        label = path.stem
        if GENERIC_CHECKPOINT_NAME.fullmatch(label):
            run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
            label = f"{run.name}/{label}" if run.name else label
    else:
        return arch or "model"
    return f"{label} ({arch})" if with_architecture and arch else label


def format_recall_table(set_name: str, recalls: Mapping[int, float]) -> str:
    """A text table titled ``set_name``: a header row ``R@1 R@5 ...`` and a row of percents.

    Args:
        set_name: title of the table.
        recalls: ``{K: recall in percent}`` (as returned by ``utils.evaluation.metrics.recall_at_k``).
    """
    if not recalls:
        raise ValueError(f"no recall values to show for {set_name!r}")
    table = PrettyTable()
    table.field_names = [f"R@{k}" for k in recalls]
    table.add_row([f"{value:.2f}" for value in recalls.values()])
    return table.get_string(title=set_name)


def make_set_result(
    recalls: Mapping[int, float],
    recall_curve: Sequence[float] | np.ndarray,
    num_queries: int,
    num_db: int,
    **details: Any,
) -> dict[str, Any]:
    """One set's entry of the results JSON.

    Args:
        recalls: ``{K: percent}``.
        recall_curve: ``[max_n]`` Recall@N in percent for N = 1 .. max_n.
        num_queries: queries evaluated.
        num_db: database size.
        details: anything else worth keeping (``image_size``, ``checkpoint``, ...).
    """
    return {
        RECALLS_FIELD: {str(int(k)): float(v) for k, v in recalls.items()},
        CURVE_FIELD: [float(v) for v in np.asarray(recall_curve, dtype=np.float64).ravel()],
        "num_queries": int(num_queries),
        "num_db": int(num_db),
        **details,
    }


def recalls_from_result(entry: Mapping[str, Any]) -> dict[int, float]:
    """``{K: percent}`` of a results-JSON entry, sorted by K."""
    if RECALLS_FIELD not in entry:
        raise UserError(f"results entry has no {RECALLS_FIELD!r} field")
    return {int(k): float(v) for k, v in sorted(entry[RECALLS_FIELD].items(), key=lambda kv: int(kv[0]))}


def recall_curve_from_result(entry: Mapping[str, Any]) -> np.ndarray:
    """``[max_n]`` Recall@N curve (percent) of a results-JSON entry.

    Raises:
        UserError: the entry has no curve, or it is not a non-empty list of numbers from 0 to 100
            (a hand-edited file: NaN, 250, text), naming the first bad value by its index.
    """
    if CURVE_FIELD not in entry:
        raise UserError(f"results entry has no {CURVE_FIELD!r} field")
    curve = entry[CURVE_FIELD]
    if not isinstance(curve, list) or not curve:
        raise UserError(f"{CURVE_FIELD!r} is {str(curve)[:40]!r}, not a non-empty list of recalls in percent")
    for index, value in enumerate(curve):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise UserError(f"{CURVE_FIELD}[{index}] is {repr(value)[:40]}, not a recall in percent (a number from "
                            "0 to 100): the file was edited or damaged; evaluate the run again")
    return np.asarray(curve, dtype=np.float64)


def write_results_json(
    path: str | PathLike[str], payload: Mapping[str, Mapping[str, Any]], overwrite: bool = False
) -> Path:
    """Write ``{set name: entry}`` as indented JSON.

    The file is written to a temporary name in the same folder and then renamed, so a reader
    never sees half a file; its mode follows the umask (see :mod:`utils.atomic_write`).

    Args:
        path: output ``.json`` file; its folder must exist.
        payload: set name -> entry (see :func:`make_set_result`).
        overwrite: replace an existing file (for a run that rewrites its own results after
            each set). Without it an existing file is a ``FileExistsError``.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise UserFileError(f"folder of the results file does not exist: {path.parent}")
    if path.exists() and not overwrite:
        raise UserFileExistsError(f"results file already exists, not overwriting it: {path}")
    text = json.dumps(payload, indent=2, default=_json_default) + "\n"
    return write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))


def read_results_json(path: str | PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read a results JSON written by :func:`write_results_json`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON, or not an object of set name -> object.
    """
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"results file not found: {path}")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"results file {path} is not valid JSON: {error}") from error
    if not isinstance(payload, dict) or not all(isinstance(v, dict) for v in payload.values()):
        raise UserError(f"results file {path} must hold an object of set name -> object")
    return payload


def new_run_dir(parent: str | PathLike[str], prefix: str = "", now: datetime | None = None) -> Path:
    """Create and return a new, empty run folder ``parent/<prefix>_<YYYY-mm-dd_HH-MM-SS>``.

    Without ``prefix`` the name is the time stamp alone. When that folder exists already
    (two runs in the same second) ``_1``, ``_2``, ... is appended; an existing folder is
    never reused. ``parent`` is created if needed.

    Args:
        parent: folder holding the runs, e.g. ``logs/eval``.
        prefix: start of the folder name.
        now: time stamp to use (default: the current local time).
    """
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a file in the way, no permission, a read-only disk
        raise UserError(f"cannot create run folders in {parent} ({error.strerror or error}); choose another folder") from None
    stamp = (now or datetime.now()).strftime(RUN_DIR_TIME_FORMAT)
    base_name = f"{prefix}_{stamp}" if prefix else stamp
    suffix = 0
    while True:
        candidate = parent / (base_name if suffix == 0 else f"{base_name}_{suffix}")
        try:
            candidate.mkdir()
        except FileExistsError:
            suffix += 1
            continue
        return candidate


def _json_default(value: Any) -> Any:
    """Convert numpy values and paths, which ``json`` cannot write, to plain types."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write a {type(value).__name__} to the results JSON")
