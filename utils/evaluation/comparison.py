"""One comparison table of several models on several sets: rows are models, columns are sets x
Recall@1/5/10, written as Markdown, CSV and LaTeX.

Each model is evaluated as a run of its own (``utils.evaluation.pipeline``), in a folder of the
comparison's run folder named after its row (``run.json``, ``results.json``, ...), at its own
evaluation size: a released model at its authors' (``models.released.ReleasedModel.image_size``),
a checkpoint of one's own at native resolution, unless a size is given for all. The table is
rewritten after each model, so the rows computed are on disk whatever happens to the next one.
With a descriptor cache (``EvalOptions.cache_dir``), a (model, set) pair computed before is read
back, not computed again: adding a row to a table re-runs only the new model. ::

    from models.compared import checkpoint_row, released_row
    from utils.evaluation.comparison import compare_models

    rows = [released_row("dinov2_salad", "weights/dino_salad.ckpt"), checkpoint_row("last.ckpt")]
    table = compare_models(rows, eval_sets, EvalOptions(cache_dir=Path("logs/descriptor_cache")), run_dir)
    print(table.markdown())

Files of the comparison folder: ``comparison.md``, ``comparison.csv`` (recalls at full precision),
``comparison.tex`` (a booktabs ``tabular``), and one folder per row. The rows of released models
and of checkpoints are made in ``models.compared``.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path

from prettytable import PrettyTable, TableStyle

from dataloaders.eval_sets import EvalSet
from utils.atomic_write import write_atomically
from utils.errors import UserError
from utils.evaluation.outputs import OutputWriter, write_run_info
from utils.evaluation.pipeline import DescribedModel, EvalOptions, Evaluator, evaluate_sets

log = logging.getLogger(__name__)

TABLE_KS: tuple[int, ...] = (1, 5, 10)
"""The Recall@K columns of each set, as papers print them (every model's ``results.json`` keeps
all the K it was asked for)."""
TABLE_FILES = {"markdown": "comparison.md", "csv": "comparison.csv", "latex": "comparison.tex"}
MODEL_COLUMN = "model"
MISSING = "-"


# ------------------------------------------------------------------------------------------ rows
@dataclass(frozen=True)
class ComparedModel:
    """One row of the table: a name, how to load its network, and the size it is evaluated at.

    Attributes:
        name: the row's name (also the name of its run folder).
        load: builds the network (called when its turn comes, so one model is in memory at a time).
        image_size: ``(height, width)`` it is evaluated at; ``None``: native resolution.
    """

    name: str
    load: Callable[[], DescribedModel]
    image_size: tuple[int, int] | None = None


# ----------------------------------------------------------------------------------------- table
@dataclass
class ComparisonTable:
    """Recall@K of each model on each set, in percent.

    Attributes:
        set_names: the sets, in column order.
        ks: the K of each set's columns.
        rows: model name -> set name -> K -> recall (percent), in row order.
    """

    set_names: list[str]
    ks: tuple[int, ...] = TABLE_KS
    rows: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)

    def columns(self) -> list[tuple[str, int]]:
        """``(set, K)`` of each value column, sets first."""
        return [(set_name, k) for set_name in self.set_names for k in self.ks]

    def value(self, model: str, set_name: str, k: int) -> float | None:
        return self.rows[model].get(set_name, {}).get(k)

    def _cells(self, model: str, decimals: int | None) -> list[str]:
        cells = []
        for set_name, k in self.columns():
            value = self.value(model, set_name, k)
            cells.append(MISSING if value is None else repr(value) if decimals is None else f"{value:.{decimals}f}")
        return cells

    def markdown(self, decimals: int = 1) -> str:
        """A Markdown table: one column per set and K (``sped R@1``), values to ``decimals`` places."""
        table = PrettyTable()
        table.set_style(TableStyle.MARKDOWN)
        table.field_names = [MODEL_COLUMN, *(f"{set_name} R@{k}" for set_name, k in self.columns())]
        table.align = "r"
        table.align[MODEL_COLUMN] = "l"
        for model in self.rows:
            table.add_row([model, *self._cells(model, decimals)])
        return table.get_string()

    def csv(self) -> str:
        """CSV with a header row (``model,sped R@1,...``) and the recalls at full precision."""
        stream = io.StringIO()
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow([MODEL_COLUMN, *(f"{set_name} R@{k}" for set_name, k in self.columns())])
        for model in self.rows:
            writer.writerow([model, *self._cells(model, None)])
        return stream.getvalue()

    def latex(self, decimals: int = 1) -> str:
        """A booktabs ``tabular``: a header row of sets over their R@K columns, one row per model."""
        width = len(self.ks)
        spans = " & ".join(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(name)}}}" for name in self.set_names)
        rules = " ".join(
            rf"\cmidrule(lr){{{2 + index * width}-{1 + (index + 1) * width}}}" for index in range(len(self.set_names))
        )
        lines = [
            rf"\begin{{tabular}}{{l{'c' * width * len(self.set_names)}}}",
            r"\toprule",
            rf"Model & {spans} \\",
            rules,
            " & ".join(["", *(f"R@{k}" for _, k in self.columns())]) + r" \\",
            r"\midrule",
            *(" & ".join([latex_escape(model), *self._cells(model, decimals)]) + r" \\" for model in self.rows),
            r"\bottomrule",
            r"\end{tabular}",
        ]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> dict[str, Path]:
        """Write (or rewrite) the three files in ``folder``; returns them by format."""
        texts = {"markdown": self.markdown() + "\n", "csv": self.csv(), "latex": self.latex()}
        paths = {}
        for kind, name in TABLE_FILES.items():
            text = texts[kind]
            paths[kind] = write_atomically(Path(folder) / name, lambda stream, text=text: stream.write(text.encode("utf-8")))
        return paths


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``msls_val`` -> ``msls\\_val``)."""
    return re.sub(r"([&%$#_{}])", r"\\\1", text)


# ------------------------------------------------------------------------------------------- run
def compare_models(
    models: Sequence[ComparedModel],
    eval_sets: Sequence[EvalSet],
    options: EvalOptions,
    run_dir: str | PathLike[str],
    writers: Callable[[Path], Sequence[OutputWriter]] = lambda folder: (),
    set_names: Sequence[str] | None = None,
) -> ComparisonTable:
    """Evaluate every model on every set and write the table into ``run_dir``.

    Args:
        models: the rows, in order (their names must differ).
        eval_sets: the sets; those with ground truth are the table's columns.
        options: how to evaluate; its ``image_size``, when given, is every model's (else each
            model's own); the recall values always include :data:`TABLE_KS`.
        run_dir: the comparison's folder (it exists); each model runs in ``run_dir/<name>``.
        writers: a model's outputs from its folder (``utils.evaluation.outputs``; e.g.
            ``ResultsJson(folder)``), handed each of its evaluated sets.
        set_names: the sets as named for ``run.json`` (default: their names).

    Raises:
        UserError: two rows of one name, or no set with ground truth.
    """
    names = [model.name for model in models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserError(f"two rows would be named {duplicates[0]!r}; give each model once")
    labelled = [eval_set.name for eval_set in eval_sets if eval_set.has_ground_truth]
    if not labelled:
        raise UserError("a comparison table needs sets with ground truth (recall); these sets have none")
    run_dir = Path(run_dir)
    options = replace(options, recall_values=tuple(sorted({*options.recall_values, *TABLE_KS})))
    table = ComparisonTable(labelled)
    for model in models:
        folder = run_dir / folder_name(model.name)
        folder.mkdir()
        evaluator = Evaluator(model.load(), replace(options, image_size=options.image_size or model.image_size))
        write_run_info(folder, evaluator, list(set_names or [eval_set.name for eval_set in eval_sets]), {"row": model.name})
        log.info("%s: %s", model.name, ", ".join(f"{key} {value}" for key, value in table_settings(evaluator).items()))
        evaluations = evaluate_sets(evaluator, eval_sets, list(writers(folder)))
        table.rows[model.name] = {
            evaluation.eval_set.name: {k: evaluation.retrieval.recalls[k] for k in TABLE_KS}
            for evaluation in evaluations
            if evaluation.retrieval.recalls is not None
        }
        table.write(run_dir)
        del evaluator, evaluations  # one network in memory at a time
    return table


def table_settings(evaluator: Evaluator) -> Mapping[str, object]:
    """What a row was evaluated with, for the log."""
    size = evaluator.options.image_size
    return {"image size": f"{size[0]} x {size[1]}" if size else "native", "precision": evaluator.precision}


def folder_name(row: str) -> str:
    """A file-system-safe folder name for row ``row``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", row) or "model"
