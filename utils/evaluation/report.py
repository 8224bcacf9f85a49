"""``index.html``: a run folder's report page, readable offline in any browser.

The page holds, for the run's model, the Recall@K table of every labelled set, each set's recall
curve (``recall_<set>.png``), and a gallery per set: up to :data:`GALLERY_QUERIES` queries, the
wrong ones (first prediction not a positive) first, each drawn as a strip of the query, its top
:data:`GALLERY_PREDICTIONS` predictions framed green or red, and, for a wrong one, its nearest true
positive beside them (``utils.evaluation.visualize``). Every image is a file of the run folder
(``report/<set>/*.png``); the page is plain HTML with its style inline: no script, no network.

:class:`ReportPage` is the evaluation output that writes it, rewritten after each set.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dataloaders.eval_sets import EvalSet
from utils.atomic_write import write_atomically
from utils.evaluation.outputs import OutputWriter, positions_of, split_paths
from utils.evaluation.pipeline import Evaluator, SetEvaluation
from utils.evaluation.results import model_label
from utils.evaluation.visualize import save_prediction_images

REPORT_FILE = "index.html"
GALLERY_FOLDER = "report"
GALLERY_QUERIES = 12
"""Queries shown per set."""
GALLERY_PREDICTIONS = 5
"""Predictions shown per query."""
GALLERY_HEIGHT = 160
"""Height of the gallery images in pixels."""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; } th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.settings td { text-align: left; }
img.curve { max-width: 560px; width: 100%; }
figure { margin: 0.6em 0; padding: 0.4em; border-left: 6px solid #bbb; }
figure.wrong { border-color: #dc0000; } figure.right { border-color: #00be00; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; overflow-wrap: anywhere; }
"""


@dataclass(frozen=True)
class GalleryItem:
    """One query of a gallery: its strip (a path relative to the run folder) and caption."""

    image: str
    caption: str
    correct: bool | None


@dataclass
class SetSection:
    """What the page shows of one set."""

    name: str
    num_queries: int
    num_db: int
    recalls: Mapping[int, float] | None
    curve_image: str | None
    gallery: list[GalleryItem] = field(default_factory=list)


def gallery_order(indices: np.ndarray, ground_truth: Sequence[np.ndarray] | None, limit: int) -> list[int]:
    """Up to ``limit`` query indices: those whose first prediction is wrong first, then the right
    ones, each in query order (the first ``limit`` queries without ground truth).

    Args:
        indices: ``[M, K]`` ranked database indices.
        ground_truth: ``M`` arrays of positive database indices, or None.
    """
    queries = range(indices.shape[0])
    if ground_truth is None:
        return list(queries)[:limit]
    right = [bool(np.isin(indices[query, 0], ground_truth[query])) for query in queries]
    return ([query for query in queries if not right[query]] + [query for query in queries if right[query]])[:limit]


def render_report(title: str, settings: Mapping[str, str], sections: Sequence[SetSection]) -> str:
    """The page's HTML (see the module docstring)."""
    escape = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        f"<h1>{escape(title)}</h1>",
        '<table class="settings">',
        *(f"<tr><td>{escape(key)}</td><td>{escape(value)}</td></tr>" for key, value in settings.items()),
        "</table>",
    ]
    labelled = [section for section in sections if section.recalls]
    if labelled:
        ks = sorted({k for section in labelled for k in section.recalls or {}})
        parts += [
            '<h2 id="recalls">Recall@K (%)</h2>', '<table class="recalls">',
            "<tr><th>set</th><th>queries</th><th>database</th>" + "".join(f"<th>R@{k}</th>" for k in ks) + "</tr>",
        ]
        for section in labelled:
            cells = "".join(
                f"<td>{section.recalls[k]:.2f}</td>" if section.recalls and k in section.recalls else "<td></td>" for k in ks
            )
            parts.append(f"<tr><td>{escape(section.name)}</td><td>{section.num_queries}</td>"
                         f"<td>{section.num_db}</td>{cells}</tr>")
        parts.append("</table>")
    for section in sections:
        parts.append(f'<h2 id="set-{escape(section.name)}">{escape(section.name)}</h2>')
        if not section.recalls:
            parts.append("<p>No ground truth: predictions only.</p>")
        if section.curve_image:
            parts.append(f'<img class="curve" src="{escape(section.curve_image)}" alt="Recall@N curve of {escape(section.name)}">')
        if section.gallery:
            wrong = sum(item.correct is False for item in section.gallery)
            parts.append(f'<p class="gallery-note">{len(section.gallery)} queries, {wrong} wrong at rank 1 shown first '
                         "(frames: green a true positive, red not; a wrong query ends with its nearest true positive).</p>")
        parts.append('<div class="gallery">')
        for item in section.gallery:
            kind = {True: "right", False: "wrong", None: "unlabelled"}[item.correct]
            parts.append(f'<figure class="{kind}"><img src="{escape(item.image)}" alt="{escape(item.caption)}" '
                         f'loading="lazy"><figcaption>{escape(item.caption)}</figcaption></figure>')
        parts.append("</div>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_report(run_dir: Path, title: str, settings: Mapping[str, str], sections: Sequence[SetSection]) -> Path:
    """Write (or rewrite) ``run_dir/index.html`` atomically; returns its path."""
    page = render_report(title, settings, sections).encode("utf-8")
    return write_atomically(Path(run_dir) / REPORT_FILE, lambda stream: stream.write(page))


def report_settings(evaluator: Evaluator) -> dict[str, str]:
    """The run's settings shown at the top of the page."""
    settings = evaluator.settings()
    architecture = settings.get("architecture") or {}
    size = settings.get("image_size")
    return {
        "model": model_label(settings),
        "checkpoint": str(settings.get("checkpoint") or "none"),
        "weights": str(settings.get("weights")),
        "backbone": f"{architecture.get('backbone_arch')} {architecture.get('backbone_config', {})}",
        "aggregator": f"{architecture.get('agg_arch')} {architecture.get('agg_config', {})}",
        "image size": f"{size[0]} x {size[1]}" if isinstance(size, list) else str(size),
        "precision": str(settings.get("precision")),
    }


def gallery_caption(eval_set: EvalSet, query: int, correct: bool | None) -> str:
    """``query 3 (queries/0000003.jpg): wrong at rank 1``."""
    verdict = {True: "right at rank 1", False: "wrong at rank 1", None: "no ground truth"}[correct]
    return f"query {query} ({eval_set.query_paths[query]}): {verdict}"


class ReportPage(OutputWriter):
    """The evaluation output writing ``index.html`` and its gallery images."""

    def __init__(self, run_dir: Path, num_queries: int = GALLERY_QUERIES, num_preds: int = GALLERY_PREDICTIONS) -> None:
        self.run_dir = Path(run_dir)
        self.num_queries = num_queries
        self.num_preds = num_preds
        self.sections: list[SetSection] = []

    def write(self, evaluation: SetEvaluation, evaluator: Evaluator) -> None:
        eval_set, retrieval = evaluation.eval_set, evaluation.retrieval
        ground_truth = eval_set.ground_truth if evaluation.labelled else None
        queries = gallery_order(retrieval.indices, ground_truth, self.num_queries)
        db_paths, query_paths = split_paths(eval_set)
        descriptors = evaluation.descriptors
        written = save_prediction_images(
            self.run_dir / GALLERY_FOLDER / eval_set.name, query_paths, db_paths, retrieval.indices, retrieval.distances,
            ground_truth, num_preds=min(self.num_preds, retrieval.indices.shape[1]), height=GALLERY_HEIGHT,
            descriptors=(descriptors[: eval_set.num_db], descriptors[eval_set.num_db :]),
            positions=positions_of(eval_set), queries=queries,
        )
        gallery = []
        for query, path in zip(queries, written):
            correct = None if ground_truth is None else bool(np.isin(retrieval.indices[query, 0], ground_truth[query]))
            gallery.append(GalleryItem(path.relative_to(self.run_dir).as_posix(), gallery_caption(eval_set, query, correct), correct))
        curve = self.run_dir / f"recall_{eval_set.name}.png"
        self.sections.append(SetSection(
            eval_set.name, eval_set.num_queries, eval_set.num_db, retrieval.recalls,
            curve.name if curve.is_file() else None, gallery,
        ))
        settings = report_settings(evaluator)
        path = write_report(self.run_dir, f"Evaluation of {settings['model']}", settings, self.sections)
        print(f"report: {path}")
