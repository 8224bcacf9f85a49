"""Compare runs: draw the Recall@N curves of several evaluation results files, one figure per
evaluation set.

Each ``--runs`` file is a results JSON written by ``utils.results.write_results_json``
(``eval.py`` writes one per run); every set entry must hold a ``recall_curve``.

Example::

    python -m tools.plot_recalls --runs logs/eval/run_a/results.json logs/eval/run_b/results.json \\
        --labels "SALAD 322px" "SALAD 224px" --out figures/recalls.png
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/plot_recalls.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from utils.results import read_results_json, recall_curve_from_result
from utils.visualize import plot_recall_curves


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.plot_recalls",
        description=(
            "Draw the Recall@N curves of several runs' results JSON files, one PNG per "
            "evaluation set. With a single set the figure is written to --out itself; with "
            "several, to <out stem>_<set name>.png beside it. Existing files are never replaced."
        ),
    )
    parser.add_argument("--runs", nargs="+", required=True, type=Path, metavar="JSON",
                        help="results JSON files, one per run")
    parser.add_argument("--labels", nargs="+", metavar="LABEL",
                        help="legend label of each run, in the order of --runs "
                             "(default: the name of the folder holding each JSON file)")
    parser.add_argument("--sets", nargs="+", metavar="SET",
                        help="evaluation sets to plot (default: every set found in any run)")
    parser.add_argument("--out", required=True, type=Path, metavar="PNG",
                        help="output figure (.png); see above for several sets")
    parser.add_argument("--title", default="Recall@N on {set}",
                        help="figure title; {set} is replaced by the set name (default: %(default)s)")
    return parser


def output_paths(out: Path, set_names: Sequence[str]) -> dict[str, Path]:
    """``out`` for a single set; ``<out stem>_<set>.png`` (set name made file-safe) for several."""
    if len(set_names) == 1:
        return {set_names[0]: out}
    return {name: out.with_name(f"{out.stem}_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}{out.suffix}")
            for name in set_names}


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
        raise ValueError(f"no evaluation set in {', '.join(empty)} (an empty results file): nothing to plot; "
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
                except ValueError as error:
                    raise ValueError(f"{path}, set {set_name!r}: {error}") from None
        if not per_run:
            raise ValueError(f"no run has results for the set {set_name!r}")
        curves[set_name] = per_run
    return curves


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    labels = args.labels if args.labels is not None else [path.parent.name for path in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"--labels gives {len(labels)} labels for {len(args.runs)} --runs files")
    if len(set(labels)) != len(labels):
        parser.error(f"labels must differ from each other, got {labels} (use --labels)")
    if args.out.suffix.lower() != ".png":
        parser.error(f"--out must end in .png, got {args.out}")
    try:
        curves = collect_curves(args.runs, labels, args.sets)
    except (FileNotFoundError, ValueError) as error:  # the files, not the flags: one line, no usage
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    paths = output_paths(args.out, list(curves))
    existing = [str(path) for path in paths.values() if path.exists()]
    if existing:
        parser.error(f"not overwriting existing figures: {', '.join(existing)}")
    for set_name, per_run in curves.items():
        written = plot_recall_curves(per_run, paths[set_name], args.title.replace("{set}", set_name))
        print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
