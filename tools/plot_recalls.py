"""Compare runs: draw the Recall@N curves of several evaluation results files into one figure,
a panel per evaluation set.

Each ``--runs`` file is a results JSON written by ``utils.evaluation.results.write_results_json``
(``eval.py`` writes one per run); every set entry must hold a ``recall_curve``. Runs are told
apart by their checkpoint's name (``random weights (seed N)`` for an untrained baseline), then,
where that is not enough, by their image size and run folder; ``--labels`` names them by hand.

Example::

    python -m tools.plot_recalls --runs logs/eval/run_a/results.json logs/eval/run_b/results.json \\
        --labels "SALAD 322px" "SALAD 224px" --out figures/recalls.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/plot_recalls.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from utils.errors import UserError, render
from utils.evaluation.results import RESULTS_FILE, model_label, read_results_json, recall_curve_from_result
from utils.evaluation.visualize import plot_recall_panels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.plot_recalls",
        description=(
            "Draw the Recall@N curves of several runs' results JSON files into --out: one PNG, a panel per "
            "evaluation set. An existing file is replaced only with --overwrite."
        ),
    )
    parser.add_argument("--runs", nargs="+", required=True, type=Path, metavar="JSON",
                        help="results JSON files, one per run")
    parser.add_argument("--labels", nargs="+", metavar="LABEL",
                        help="legend label of each run, in the order of --runs (default: each run's checkpoint "
                             "name, or 'random weights (seed N)', with its image size or folder where runs "
                             "would share a label)")
    parser.add_argument("--sets", nargs="+", metavar="SET",
                        help="evaluation sets to plot (default: every set found in any run)")
    parser.add_argument("--out", "--output", dest="out", required=True, type=Path, metavar="PNG",
                        help="output figure (.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out figure")
    parser.add_argument("--title", default="Recall@N on {set}",
                        help="figure title; {set} is replaced by the set name (default: %(default)s)")
    return parser


def run_label(results: dict[str, dict], path: Path, detail: int = 0) -> str:
    """The legend label of a run: its checkpoint's name (``version_3/last`` for a generic one; see
    :func:`utils.evaluation.results.model_label`), with its image size (``detail`` 1) and its folder
    (``detail`` 2) added to tell runs apart."""
    entry = next(iter(results.values()), {})
    label = model_label(entry, with_architecture=False) if entry else path.parent.name
    if label == "model":
        label = path.parent.name
    if detail >= 1 and "image_size" in entry:
        size = entry["image_size"]
        label += f" @{size[0]}x{size[1]}" if isinstance(size, list) else f" @{size}"
    if detail >= 2:
        label += f" ({path.parent.name})"
    return label


def default_labels(runs: Sequence[Path]) -> list[str]:
    """One label per run that no other run shares (see :func:`run_label`)."""
    results = [read_results_json(path) for path in runs]
    for detail in range(3):
        labels = [run_label(result, path, detail) for result, path in zip(results, runs)]
        if len(set(labels)) == len(labels):
            break
    return labels


def collect_curves(
    runs: Sequence[Path], labels: Sequence[str], set_names: Sequence[str] | None
) -> dict[str, dict[str, np.ndarray]]:
    """``{set name: {run label: [max_n] recall curve}}`` from the results files.

    A set missing from a run is left out of that run's curves; a run without any set (``{}``),
    a requested set that no run has, or an entry without a recall curve, is a ``ValueError``.
    """
    results = [read_results_json(path) for path in runs]
    empty = [str(path) for path, result in zip(runs, results) if not result]
    if empty:
        raise UserError(f"no evaluation set in {', '.join(empty)} (an empty results file): nothing to plot; "
                        "pass results.json files that eval.py wrote after evaluating at least one set")
    if set_names is None:
        set_names = list(dict.fromkeys(name for result in results for name in result))
    curves: dict[str, dict[str, np.ndarray]] = {}
    for set_name in set_names:
        per_run = {}
        for path, label, result in zip(runs, labels, results):
            if set_name in result:
                try:
                    per_run[label] = recall_curve_from_result(result[set_name])
                except UserError as error:
                    raise UserError(f"{path}, set {set_name!r}: {error}") from None
        if not per_run:
            raise UserError(f"no run has results for the set {set_name!r}")
        curves[set_name] = per_run
    return curves


def results_file(path: Path) -> Path:
    """``path``, or the ``results.json`` of the run folder ``path``.

    Raises:
        UserError: ``path`` is a folder without ``results.json``.
    """
    if not path.is_dir():
        return path
    if not (path / RESULTS_FILE).is_file():
        raise UserError(f"{path} is a folder without {RESULTS_FILE}: pass an eval.py run folder or its {RESULTS_FILE}")
    return path / RESULTS_FILE


def plot_runs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Path:
    """Read the runs of ``args``, draw their curves, write ``args.out``; flag errors through ``parser``.

    Raises:
        UserError: a results file is missing, unreadable or holds a bad curve; the figure cannot be written.
    """
    runs = [results_file(path) for path in args.runs]
    labels = args.labels if args.labels is not None else default_labels(runs)
    if len(labels) != len(runs):
        parser.error(f"--labels gives {len(labels)} labels for {len(runs)} --runs files")
    if len(set(labels)) != len(labels):
        parser.error(f"labels must differ from each other, got {labels} (use --labels)")
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out must end in .png, got {args.out}")
    if args.out.is_dir():
        parser.error(f"--out {args.out} is a folder; name the .png file to write")
    curves = collect_curves(runs, labels, args.sets)
    if args.out.exists() and not args.overwrite:
        parser.error(f"not overwriting the existing figure {args.out} (--overwrite replaces it)")
    panels = {args.title.replace("{set}", set_name): per_run for set_name, per_run in curves.items()}
    return plot_recall_panels(panels, args.out, overwrite=args.overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        print(plot_runs(args, parser))
    except UserError as error:  # the files, not the flags: one line, no usage
        parser.exit(2, f"{parser.prog}: error: {render(error)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
