"""List the released models this project loads: name, network, authors and paper, descriptor size,
evaluation size, file, licenses, and the Recall@1 their authors publish (their figures, not
measured here).

Everything comes from the release table ``models.released.RELEASED_MODELS``; the README's
"Released models" and "Results of the papers" tables are this tool's ``--markdown`` output. The
listing has every release on its own; the Markdown table gives a family of releases that differ
only by backbone and descriptor size (CosPlace, EigenPlaces) one row, named by the pattern its
names share (``cosplace_<backbone>_<dim>``), with each backbone's sizes in its dims cell.

Examples::

    python -m tools.models
    python -m tools.models --markdown
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/models.py`: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.released import RELEASED_MODELS, ReleasedModel
from utils.cli import print_listing

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
#: What stands for the varying parts of a family's names, network and file in the Markdown table.
BACKBONE = "<backbone>"
DIM = "<dim>"
#: :data:`BACKBONE` where the authors spell the backbone with capitals (``ResNet50_2048_cosplace.pth``).
BACKBONE_CAPITALIZED = "<Backbone>"


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


def name_pattern(name: str, release: ReleasedModel) -> str:
    """``name`` with its backbone and descriptor size as :data:`BACKBONE` and :data:`DIM`, where it
    holds them as ``_``-separated parts: ``cosplace_<backbone>_<dim>`` for ``cosplace_resnet50_2048``;
    ``name`` itself when it holds neither (``dinov2_salad``)."""
    parts = name.split("_")
    backbone = release.architecture.backbone_arch.split("_")
    for start in range(len(parts) - len(backbone) + 1):
        if parts[start : start + len(backbone)] == backbone:
            parts[start : start + len(backbone)] = [BACKBONE]
            break
    return "_".join(DIM if part == str(release.descriptor_dim) else part for part in parts)


def generalized(text: str, name: str, release: ReleasedModel) -> str:
    """``text`` (a network in words, a file name) with the release's backbone, in any case, and its
    descriptor size, as whole words, replaced by :data:`BACKBONE` and :data:`DIM`, each only where
    the release's name holds it too (:func:`name_pattern`); a backbone spelled with capitals is
    marked :data:`BACKBONE_CAPITALIZED` (``ResNet50_2048_cosplace.pth`` -> ``<Backbone>_<dim>_cosplace.pth``)."""
    def backbone(match: re.Match[str]) -> str:
        return BACKBONE if match.group(0).islower() else BACKBONE_CAPITALIZED

    word = r"(?<![A-Za-z0-9]){}(?![A-Za-z0-9])"
    pattern = name_pattern(name, release)
    if BACKBONE in pattern:
        text = re.sub(word.format(re.escape(release.architecture.backbone_arch)), backbone, text, flags=re.IGNORECASE)
    return re.sub(word.format(release.descriptor_dim), DIM, text) if DIM in pattern else text


def code_placeholders(text: str) -> str:
    """``text`` with each ``<placeholder>`` in backticks, so that Markdown shows it instead of taking
    it for an HTML tag."""
    return re.sub(r"<\w+>", lambda match: f"`{match.group(0)}`", text)


def authors_paper(release: ReleasedModel) -> str:
    """``Authors, [Paper (Venue)](url)``, or the authors alone when the paper has no address."""
    return f"{release.authors}, [{release.paper}]({release.paper_url})" if release.paper_url else release.authors or MISSING


def model_cells(name: str, release: ReleasedModel, family: bool = False) -> list[str]:
    """A release's row of the released-models table; ``family``: its name, network and file as its
    family's (:func:`name_pattern`, :func:`generalized`), the dims cell left to the caller."""
    file_name = generalized(release.file_name, name, release) if family else release.file_name
    network = code_placeholders(generalized(release.summary, name, release)) if family else release.summary
    return [
        f"`{name_pattern(name, release) if family else name}`", network or MISSING, authors_paper(release),
        str(release.descriptor_dim), evaluation_size(release), f"`{file_name}` ({'downloads' if release.url else 'by hand'})",
        f"{release.code_license or MISSING} / {release.weights_license or MISSING}", release.parity or MISSING,
    ]


#: Where the dims cell sits in :func:`model_cells`.
DIMS_COLUMN = 3


def family_key(name: str, release: ReleasedModel) -> tuple[str, ...]:
    """What releases of one family share: the aggregator their network is built with and every
    cell of their family row but the dims (name pattern, network, paper, file pattern, licenses,
    parity, evaluation size)."""
    cells = model_cells(name, release, family=True)
    return (release.architecture.agg_arch, *cells[:DIMS_COLUMN], *cells[DIMS_COLUMN + 1 :])


def families(releases: Mapping[str, ReleasedModel]) -> list[list[str]]:
    """The release names grouped by :func:`family_key`, in the table's order (a family where its
    first release is); a release no other shares a key with is a family of one."""
    grouped: dict[tuple[str, ...], list[str]] = {}
    for name, release in releases.items():
        grouped.setdefault(family_key(name, release), []).append(name)
    return list(grouped.values())


def numbers(values: Sequence[int]) -> str:
    """``32, 64, 128``: the values in increasing order."""
    return ", ".join(str(value) for value in sorted(values))


def family_sizes(names: Sequence[str], releases: Mapping[str, ReleasedModel]) -> str:
    """A family's dims cell: each backbone with its descriptor sizes, backbones that offer the same
    sizes together (``vgg16: 64, 128; resnet50, resnet101: 32, 64``); the sizes alone when the names
    do not hold the backbone."""
    if BACKBONE not in name_pattern(names[0], releases[names[0]]):
        return numbers([releases[name].descriptor_dim for name in names])
    sizes: dict[str, list[int]] = {}
    for name in names:
        sizes.setdefault(releases[name].architecture.backbone_arch, []).append(releases[name].descriptor_dim)
    backbones: dict[str, list[str]] = {}
    for backbone, dims in sizes.items():
        backbones.setdefault(numbers(dims), []).append(backbone)
    return "; ".join(f"{', '.join(offering)}: {dims}" for dims, offering in backbones.items())


def family_cells(names: Sequence[str], releases: Mapping[str, ReleasedModel]) -> list[str]:
    """The released-models row of a family: a release's own row when it is alone, else the family's
    (:func:`model_cells` with ``family``), its dims cell from :func:`family_sizes`."""
    first = releases[names[0]]
    if len(names) == 1:
        return model_cells(names[0], first)
    cells = model_cells(names[0], first, family=True)
    cells[DIMS_COLUMN] = family_sizes(names, releases)
    return cells


def markdown(releases: Mapping[str, ReleasedModel] = RELEASED_MODELS) -> str:
    """The README's two tables: the released models (one row per family, :func:`families`), then the
    Recall@1 their authors publish (one row per release that has them)."""
    models = markdown_table(
        ["name", "network", "authors, paper", "dims", "evaluated at", "file", "license: code / weights",
         "checked against the authors' code"],
        [family_cells(names, releases) for names in families(releases)],
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
    parser = build_parser()
    args = parser.parse_args(argv)
    print_listing(markdown() if args.markdown else listing() + "\n", parser.prog)


if __name__ == "__main__":
    main(sys.argv[1:])
