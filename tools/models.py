"""List the released models this project loads: name, network, authors and paper, descriptor size,
evaluation size, file, licenses, and the Recall@1 their authors publish (their figures, not
measured here).

Everything comes from the release table ``models.released.RELEASED_MODELS``; the README's
"Released models" and "Results of the papers" tables are this tool's ``--markdown`` output.

Examples::

    python -m tools.models
    python -m tools.models --markdown
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/models.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.released import RELEASED_MODELS, ReleasedModel

#: Column titles of the published-recall table, in this order; a set not listed here is shown
#: after them under its own name.
SET_TITLES: dict[str, str] = {
    "msls_val": "MSLS val",
    "msls_test": "MSLS challenge",
    "nordland": "Nordland",
    "sped": "SPED",
    "pitts30k_test": "Pitts30k test",
    "pitts250k_test": "Pitts250k test",
    "tokyo247": "Tokyo 24/7",
}
#: What a table shows where a field is unknown.
MISSING = "-"
THEIRS = "authors' figures, not measured here"


def evaluation_size(release: ReleasedModel) -> str:
    """``322 x 322``, or ``native`` for a release evaluated at each image's own resolution."""
    if release.image_size is None:
        return "native"
    height, width = release.image_size
    return f"{height} x {width}"


def file_source(release: ReleasedModel) -> str:
    """The file and how it is had: downloaded by the hub entries, or fetched by hand."""
    return f"{release.file_name} ({'downloads' if release.url else 'by hand'})"


def published_sets(releases: Mapping[str, ReleasedModel]) -> list[str]:
    """The sets any release has a published figure for: :data:`SET_TITLES`' order, others after."""
    found = {name for release in releases.values() for name in release.published_recalls}
    return [name for name in SET_TITLES if name in found] + sorted(found - SET_TITLES.keys())


def published_recall_text(release: ReleasedModel) -> str:
    """``msls_val 92.2, nordland 76.0 (SALAD paper, Table 1; authors' figures)``, or :data:`MISSING`."""
    if not release.published_recalls:
        return MISSING
    figures = ", ".join(f"{name} {value:.1f}" for name, value in release.published_recalls.items())
    source = f"{release.published_source}; " if release.published_source else ""
    return f"{figures} ({source}{THEIRS})"


def listing(releases: Mapping[str, ReleasedModel] = RELEASED_MODELS) -> str:
    """Every release as a block of ``field: value`` lines."""
    blocks = []
    for name, release in releases.items():
        paper = ", ".join(part for part in (release.paper, release.paper_url) if part)
        fields = {
            "network": release.summary,
            "authors": release.authors,
            "paper": paper,
            "code": release.code_url,
            "dims": str(release.descriptor_dim),
            "evaluated at": evaluation_size(release),
            "file": file_source(release),
            "code license": release.code_license,
            "weights license": release.weights_license,
            "R@1": published_recall_text(release),
        }
        lines = [name] + [f"  {key + ':':<16} {value or MISSING}" for key, value in fields.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table (``|`` in a cell escaped)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)])


def markdown(releases: Mapping[str, ReleasedModel] = RELEASED_MODELS) -> str:
    """The README's two tables: the released models, then the Recall@1 their authors publish."""
    models = markdown_table(
        ["name", "network", "authors, paper", "dims", "evaluated at", "file", "license: code / weights",
         "checked against the authors' code"],
        [
            [
                f"`{name}`", release.summary or MISSING,
                f"{release.authors}, [{release.paper}]({release.paper_url})" if release.paper_url else release.authors or MISSING,
                str(release.descriptor_dim), evaluation_size(release), f"`{release.file_name}` "
                f"({'downloads' if release.url else 'by hand'})",
                f"{release.code_license or MISSING} / {release.weights_license or MISSING}", release.parity or MISSING,
            ]
            for name, release in releases.items()
        ],
    )
    sets = published_sets(releases)
    recalls = markdown_table(
        ["model (R@1, authors' figures)", *(SET_TITLES.get(name, name) for name in sets), "source"],
        [
            [
                f"`{name}`",
                *(f"{release.published_recalls[s]:.1f}" if s in release.published_recalls else MISSING for s in sets),
                release.published_source or MISSING,
            ]
            for name, release in releases.items()
            if release.published_recalls
        ],
    )
    return f"{models}\n\n{recalls}\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.models",
        description="List the released models: network, authors, paper, dims, evaluation size, file, licenses, "
        f"and the Recall@1 their authors publish ({THEIRS}).",
    )
    parser.add_argument("--markdown", action="store_true", help="print the README's two Markdown tables instead")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.markdown:
        print(markdown(), end="")
    else:
        print(listing())


if __name__ == "__main__":
    main(sys.argv[1:])
