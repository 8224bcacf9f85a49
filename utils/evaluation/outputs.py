"""What an evaluation leaves behind: one writer per output.

Each writer is handed every :class:`~utils.evaluation.pipeline.SetEvaluation` in turn
(``utils.evaluation.pipeline.evaluate_sets``); ``check()`` runs first, before any descriptor is
computed, so that a file that exists or a folder that cannot be written is reported before an
hour of work, not after. A new output is one more writer.

Files of a run folder (``logs/eval/<checkpoint>_<time>/``):

- ``index.html``: the report page and its ``report/<set>/*.png`` gallery (``utils.evaluation.report``);
- ``eval.log``: the console output (``utils.evaluation.console_log``);
- ``run.json``: what ran (architecture, weights, settings, sets, command, versions);
- ``results.json``: Recall@K and the recall curve of each labelled set (written first, after
  each set, so an optional output that fails later never loses a computed recall);
- ``recall_<set>.png``: the recall curve;
- ``predictions_<set>.csv``: each query's top-K predictions, squared L2 distances and, with
  labels, whether each is correct, paths relative to the set's image root (sets without labels
  always; labelled ones with ``--save_predictions``);
- ``msls_challenge_predictions.txt``: the MSLS challenge file (set ``msls_test``);
- ``predictions/<set>/*.png``: one image per query with its top predictions (``--num_preds_to_save``);
- ``descriptors_<set>.npz``: the descriptors as a result (``--save_descriptors``), readable
  with numpy alone: ``database [N, D]``, ``queries [M, D]`` (float32), ``database_paths``,
  ``query_paths`` (absolute), ``database_positions``/``query_positions`` (``[., 2]`` UTM, where
  the set records them), and ``metadata`` (a JSON string: architecture, image size, precision, ...).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from dataloaders.eval_sets import EvalSet
from utils.atomic_write import write_atomically
from utils.errors import UserError, UserFileExistsError
from utils.evaluation.pipeline import Evaluator, SetEvaluation
from utils.evaluation.msls_challenge import write_msls_predictions
from utils.evaluation.predictions_csv import write_predictions_csv
from utils.evaluation.results import (
    RESULTS_FILE, format_recall_table, make_set_result, model_label, write_results_json,
)
from utils.evaluation.visualize import plot_recall_curves, save_prediction_images

RUN_FILE = "run.json"
MSLS_CHALLENGE_SET = "msls_test"
MSLS_CHALLENGE_TOP_K = 25
MSLS_CHALLENGE_FILE = "msls_challenge_predictions.txt"
IN_RUN_FOLDER = Path("<run folder>")
"""``--save_predictions`` without a file: each set's ``predictions_<set>.csv`` in the run folder."""


class OutputWriter:
    """Base of the writers: ``check`` before any work (nothing by default), ``write`` per set."""

    def check(self, eval_sets: Sequence[EvalSet]) -> None:
        """Raise, before any descriptor is computed, what would make :meth:`write` fail."""

    def write(self, evaluation: SetEvaluation, evaluator: Evaluator) -> None:
        raise NotImplementedError


def check_writable_file(path: Path, what: str) -> None:
    """Refuse an existing ``path`` (nothing a user wrote is overwritten) or one whose folder cannot
    be created or written, naming ``what`` set it (``save_predictions=FILE``, ``the run folder``)."""
    if path.exists():
        raise UserFileExistsError(f"{what}: {path} already exists, not overwriting it")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{what}: cannot write {path} ({folder} is not a writable folder); choose another path")


def result_entry(evaluation: SetEvaluation, evaluator: Evaluator) -> dict[str, Any]:
    """The set's ``results.json`` entry (labelled sets only)."""
    retrieval = evaluation.retrieval
    assert retrieval.recalls is not None and retrieval.curve is not None
    eval_set = evaluation.eval_set
    return make_set_result(
        retrieval.recalls, retrieval.curve, eval_set.num_queries, eval_set.num_db,
        **evaluator.settings(), per_city=evaluation.per_city,
    )


class ResultsJson(OutputWriter):
    """``results.json``: one entry per labelled set, rewritten after each set."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / RESULTS_FILE
        self.entries: dict[str, dict[str, Any]] = {}

    def write(self, evaluation: SetEvaluation, evaluator: Evaluator) -> None:
        if evaluation.labelled:
            self.entries[evaluation.eval_set.name] = result_entry(evaluation, evaluator)
            write_results_json(self.path, self.entries, overwrite=True)


class RecallTable(OutputWriter):
    """The Recall@K table of each labelled set, printed; a note for a set without labels."""

    def write(self, evaluation: SetEvaluation, evaluator: Evaluator) -> None:
        if evaluation.labelled:
            print(format_recall_table(evaluation.eval_set.name, evaluation.retrieval.recalls))
        else:
            print(f"{evaluation.eval_set.name}: no ground truth, no recall (predictions only)")


class RecallCurvePlot(OutputWriter):
    """``recall_<set>.png``, the curve named by the model (``utils.evaluation.results.model_label``)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def write(self, evaluation: SetEvaluation, evaluator: Evaluator) -> None:
        name, curve = evaluation.eval_set.name, evaluation.retrieval.curve
        if curve is not None:
            model = model_label(evaluator.settings())
            plot_recall_curves({model: curve}, self.run_dir / f"recall_{name}.png", f"{name}: Recall@N of {model}")


class MslsChallengeFile(OutputWriter):
    """The MSLS challenge submission for set ``msls_test``."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / MSLS_CHALLENGE_FILE

    def write(self, evaluation: SetEvaluation, evaluator: Evaluator) -> None:
        eval_set = evaluation.eval_set
        if eval_set.name != MSLS_CHALLENGE_SET:
            return
        indices = evaluation.retrieval.indices[:, :MSLS_CHALLENGE_TOP_K]
        write_msls_predictions(self.path, eval_set.query_keys, eval_set.db_keys, indices)
        print(f"MSLS challenge predictions: {self.path}")


def positions_of(eval_set: EvalSet) -> tuple[np.ndarray, np.ndarray] | None:
    """The set's ``(database [N, 2], queries [M, 2])`` UTM positions, where it records them."""
    if eval_set.db_positions is None or eval_set.query_positions is None:
        return None
    return np.asarray(eval_set.db_positions, dtype=np.float64), np.asarray(eval_set.query_positions, dtype=np.float64)


def relative_paths(eval_set: EvalSet) -> tuple[list[str], list[str]]:
    """The set's ``(database, query)`` image paths as it records them: relative to its image root
    (absolute where an index file gives them so)."""
    return list(eval_set.db_paths), list(eval_set.query_paths)


def split_paths(eval_set: EvalSet) -> tuple[list[Path], list[Path]]:
    """The set's ``(database, query)`` image paths, absolute."""
    paths = eval_set.image_paths()
    return paths[: eval_set.num_db], paths[eval_set.num_db :]


class PredictionsCsv(OutputWriter):
    """Each query's top-K predictions: ``predictions_<set>.csv`` in the run folder for every set
    without labels, and where ``--save_predictions`` asks for every set.

    Args:
        run_dir: the run folder.
        requested: the user's ``FILE.csv`` (``FILE_<set>.csv`` when several sets run),
            :data:`IN_RUN_FOLDER`, or None.
        top_k: predictions per query (at most the database size).
    """

    def __init__(self, run_dir: Path, requested: Path | None, top_k: int) -> None:
        self.run_dir = Path(run_dir)
        self.requested = requested
        self.top_k = top_k
        self.paths: dict[str, list[Path]] = {}

    def check(self, eval_sets: Sequence[EvalSet]) -> None:
        requested = self.check_requested(self.requested, [eval_set.name for eval_set in eval_sets])
        for eval_set in eval_sets:
            paths = [requested[eval_set.name]] if eval_set.name in requested else []
            if not eval_set.has_ground_truth or self.requested == IN_RUN_FOLDER:
                paths.append(self.run_dir / f"predictions_{eval_set.name}.csv")
                check_writable_file(paths[-1], "the run folder")
            self.paths[eval_set.name] = paths

    @staticmethod
    def check_requested(requested: Path | None, set_names: Sequence[str]) -> dict[str, Path]:
        """Where ``--save_predictions`` puts each set's CSV (``FILE_<set>.csv`` when several sets
        run), each checked: not there yet, in a folder that can be written (none for
        :data:`IN_RUN_FOLDER`: the run folder's ``predictions_<set>.csv``)."""
        if requested is None or requested == IN_RUN_FOLDER:
            return {}
        if len(set_names) == 1:
            paths = {set_names[0]: requested}
        else:
            paths = {name: requested.with_name(f"{requested.stem}_{name}{requested.suffix}") for name in set_names}
        for path in paths.values():
            check_writable_file(path, f"save_predictions={requested}")
        return paths

    def write(self, evaluation: SetEvaluation, evaluator: Evaluator) -> None:
        retrieval, eval_set = evaluation.retrieval, evaluation.eval_set
        db_paths, query_paths = relative_paths(eval_set)
        top_k = min(self.top_k, retrieval.indices.shape[1])
        for path in self.paths.get(eval_set.name, []):
            write_predictions_csv(path, query_paths, db_paths, retrieval.indices[:, :top_k], retrieval.distances[:, :top_k],
                                  eval_set.ground_truth)
            print(f"{eval_set.name} predictions: {path} (paths relative to {eval_set.image_root})")


class PredictionImages(OutputWriter):
    """``predictions/<set>/<query>.png``: each query with its top predictions (and, when it is
    wrong, its nearest true positive)."""

    def __init__(self, run_dir: Path, num_preds: int, only_wrong: bool) -> None:
        self.run_dir = Path(run_dir)
        self.num_preds = num_preds
        self.only_wrong = only_wrong

    def check(self, eval_sets: Sequence[EvalSet]) -> None:
        if self.only_wrong:
            for eval_set in eval_sets:
                if not eval_set.has_ground_truth:
                    raise UserError(f"only_wrong=True: {eval_set.name} has no ground truth to tell wrong ones")

    def write(self, evaluation: SetEvaluation, evaluator: Evaluator) -> None:
        eval_set, retrieval = evaluation.eval_set, evaluation.retrieval
        db_paths, query_paths = split_paths(eval_set)
        out_dir = self.run_dir / "predictions" / eval_set.name
        descriptors = evaluation.descriptors
        written = save_prediction_images(
            out_dir, query_paths, db_paths, retrieval.indices, retrieval.distances, eval_set.ground_truth,
            num_preds=min(self.num_preds, retrieval.indices.shape[1]), only_wrong=self.only_wrong,
            descriptors=(descriptors[: eval_set.num_db], descriptors[eval_set.num_db :]), positions=positions_of(eval_set),
        )
        print(f"{eval_set.name}: {len(written)} prediction images in {out_dir}")


class DescriptorFiles(OutputWriter):
    """``descriptors_<set>.npz``: the descriptors with their images, readable with numpy alone."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def write(self, evaluation: SetEvaluation, evaluator: Evaluator) -> None:
        eval_set = evaluation.eval_set
        db_paths, query_paths = split_paths(eval_set)
        metadata = {"set": eval_set.name, "descriptor_dim": int(evaluation.descriptors.shape[1]), **evaluator.settings()}
        arrays: dict[str, np.ndarray] = {
            "database": evaluation.descriptors[: eval_set.num_db],
            "queries": evaluation.descriptors[eval_set.num_db :],
            "database_paths": np.array([str(path) for path in db_paths], dtype=str),
            "query_paths": np.array([str(path) for path in query_paths], dtype=str),
            "metadata": np.array(json.dumps(metadata)),
        }
        positions = positions_of(eval_set)
        if positions is not None:
            arrays["database_positions"], arrays["query_positions"] = positions
        path = self.run_dir / f"descriptors_{eval_set.name}.npz"
        write_atomically(path, lambda stream: np.savez(stream, **arrays), exclusive=True)  # never torn, never over another
        print(f"{eval_set.name} descriptors: {path}")


def write_run_info(run_dir: Path, evaluator: Evaluator, set_names: Sequence[str], extra: Mapping[str, Any] = ()) -> Path:
    """``run.json``: what ran, written when the run starts."""
    import torch

    info = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "command": sys.argv,
        "sets": list(set_names),
        **evaluator.settings(),
        "device": str(evaluator.device),
        "batch_size": evaluator.options.batch_size,
        "recall_values": list(evaluator.options.recall_values),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        **dict(extra),
    }
    path = Path(run_dir) / RUN_FILE
    write_results_json(path, info)
    return path
