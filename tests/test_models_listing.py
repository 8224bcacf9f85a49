"""``python -m tools.models``: every released model with its authors, paper, licenses and the
Recall@1 its authors publish; the README's tables are its ``--markdown`` output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from models.released import RELEASED_MODELS
from utils.cli import EXIT_BROKEN_PIPE
from tools import models as models_tool

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
README_BLOCK = re.search(r"<!-- released-models: begin -->\n(.*?)<!-- released-models: end -->", README, flags=re.DOTALL)
CARD_FIELDS = ("summary", "authors", "paper", "paper_url", "code_url", "code_license", "weights_license", "parity")


def table_names(markdown: str) -> list[str]:
    """Every release name a reader forms from the released-models table (the first table of
    ``markdown``): a row's own name, or its ``<backbone>``/``<dim>`` pattern filled from its dims
    cell (``vgg16: 64, 128; resnet50, resnet101: 32``)."""
    names = []
    for row in markdown.split("\n\n")[0].splitlines()[2:]:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        name, dims = cells[0].strip("`"), cells[3]
        if "<" not in name:
            names.append(name)
            continue
        for part in dims.split("; "):
            backbones, _, sizes = part.rpartition(": ")
            for backbone in backbones.split(", "):
                names += [name.replace("<backbone>", backbone).replace("<dim>", size) for size in sizes.split(", ")]
    return names


def test_the_readme_tables_are_the_markdown_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert README_BLOCK is not None, "README lost its released-models block"
    models_tool.main(["--markdown"])
    assert README_BLOCK.group(1) == capsys.readouterr().out  # regenerate: python3 -m tools.models --markdown


def test_every_release_can_be_named_from_one_row_of_the_readme_table() -> None:
    assert README_BLOCK is not None, "README lost its released-models block"
    names = table_names(README_BLOCK.group(1))
    assert sorted(names) == sorted(RELEASED_MODELS)  # each release once, none the release table lacks
    rows = README_BLOCK.group(1).split("\n\n")[0].splitlines()[2:]
    assert len(rows) == 10  # 8 releases on their own, CosPlace's 28 sizes and EigenPlaces' 15 in one row each
    cosplace = next(row for row in rows if row.startswith("| `cosplace_<backbone>_<dim>` |"))
    assert "| `<Backbone>` + GeM + fully connected `<dim>` |" in cosplace
    assert "| vgg16: 64, 128, 256, 512; resnet18: 32, 64, 128, 256, 512; resnet50, resnet101, resnet152: 32, 64, " in cosplace
    assert "| `<Backbone>_<dim>_cosplace.pth` (downloads) |" in cosplace
    assert "| `dinov2_salad_512_32` | DINOv2 ViT-B/14 (last 4 blocks trained) + SALAD 16 x 32 + 32 |" in rows[1]


def test_a_new_size_joins_its_family_row_and_a_dropped_release_leaves_the_table() -> None:
    releases = dict(RELEASED_MODELS)
    known = releases["cosplace_resnet18_512"]
    releases["cosplace_resnet18_1024"] = replace(
        known, descriptor_dim=1024, file_name="ResNet18_1024_cosplace.pth", url=known.url.replace("512", "1024"),
        summary="ResNet18 + GeM + fully connected 1024",
        architecture=replace(known.architecture, agg_config={"out_dim": 1024}),
    )
    grown = models_tool.markdown(releases)
    assert sorted(table_names(grown)) == sorted(releases)
    assert "resnet18: 32, 64, 128, 256, 512, 1024;" in grown
    assert len(grown.split("\n\n")[0].splitlines()) == len(models_tool.markdown().split("\n\n")[0].splitlines())

    del releases["eigenplaces_vgg16_512"], releases["megaloc"]
    assert sorted(table_names(models_tool.markdown(releases))) == sorted(releases)


def test_a_release_unlike_its_family_gets_a_row_of_its_own() -> None:
    releases = dict(RELEASED_MODELS)
    releases["cosplace_vgg16_64"] = replace(releases["cosplace_vgg16_64"], url=None)  # by hand, unlike the others
    table = models_tool.markdown(releases).split("\n\n")[0]
    assert "| `cosplace_vgg16_64` | VGG16 + GeM + fully connected 64 |" in table
    assert "`VGG16_64_cosplace.pth` (by hand)" in table
    assert sorted(table_names(table)) == sorted(releases)


def test_a_name_pattern_holds_only_whole_parts_of_the_name() -> None:
    assert models_tool.name_pattern("cosplace_resnet50_2048", RELEASED_MODELS["cosplace_resnet50_2048"]) == "cosplace_<backbone>_<dim>"
    assert models_tool.name_pattern("mixvpr_resnet50_4096", RELEASED_MODELS["mixvpr_resnet50_4096"]) == "mixvpr_<backbone>_<dim>"
    assert models_tool.name_pattern("dinov2_salad", RELEASED_MODELS["dinov2_salad"]) == "dinov2_salad"
    assert models_tool.name_pattern("dinov2_boq", RELEASED_MODELS["dinov2_boq"]) == "dinov2_boq"  # dinov2 is not dinov2_vitb14


@pytest.mark.parametrize("name", RELEASED_MODELS)
def test_every_release_says_who_made_it_under_which_license(name: str) -> None:
    release = RELEASED_MODELS[name]
    for field in CARD_FIELDS:
        assert getattr(release, field), f"{name}: {field} is empty"
    assert (release.published_source != "") == bool(release.published_recalls)  # a figure says where it is printed
    for set_name, recall in release.published_recalls.items():
        assert set_name in models_tool.SET_TITLES, f"{name}: {set_name!r} is not a set of the README's columns"
        assert 0 < recall <= 100


def test_the_listing_marks_the_published_figures_as_the_authors(capsys: pytest.CaptureFixture[str]) -> None:
    models_tool.main([])
    blocks = dict(
        (block.splitlines()[0], block) for block in capsys.readouterr().out.strip().split("\n\n")
    )
    assert list(blocks) == list(RELEASED_MODELS)
    salad = blocks["dinov2_salad"]
    assert "  authors:         Sergio Izquierdo, Javier Civera" in salad
    assert "  code license:    GPL-3.0" in salad and "  file:            dino_salad.ckpt (downloads)" in salad
    assert "msls_val 92.2, msls_test 75.0" in salad and "(SALAD paper, Table 1; authors' figures, not measured here)" in salad
    assert "  dims:            16384" in blocks["resnet50_boq"] and "  evaluated at:    384 x 384" in blocks["resnet50_boq"]
    assert "  R@1:             -" in blocks["dinov2_salad_512_32"]  # none published for this file


@pytest.mark.parametrize("module", ["tools.models", "tools.model_args"])
def test_a_reader_that_stops_early_ends_the_listing_quietly(module: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`| head`) is gone before the first line: every write is a broken pipe
    try:
        completed = subprocess.run([sys.executable, "-m", module], stdout=write_end, stderr=subprocess.PIPE,
                                   cwd=REPO, timeout=300)
    finally:
        os.close(write_end)
    assert completed.stderr == b"" and completed.returncode == EXIT_BROKEN_PIPE


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_listing_that_cannot_be_written_is_one_line() -> None:
    with open("/dev/full", "wb") as full:
        completed = subprocess.run([sys.executable, "-m", "tools.models", "--markdown"], stdout=full,
                                   stderr=subprocess.PIPE, cwd=REPO, timeout=300, text=True)
    assert completed.returncode == 1
    assert completed.stderr == "python -m tools.models: error: cannot write to standard output: No space left on device\n"
