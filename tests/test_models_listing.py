"""``python -m tools.models``: every released model with its authors, paper, licenses and the
Recall@1 its authors publish; the README's tables are its ``--markdown`` output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from models.released import RELEASED_MODELS
from tools import models as models_tool

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
CARD_FIELDS = ("summary", "authors", "paper", "paper_url", "code_url", "code_license", "weights_license", "parity")


def test_the_readme_tables_are_the_markdown_output(capsys: pytest.CaptureFixture[str]) -> None:
    block = re.search(r"<!-- released-models: begin -->\n(.*?)<!-- released-models: end -->", README, flags=re.DOTALL)
    assert block is not None, "README lost its released-models block"
    models_tool.main(["--markdown"])
    assert block.group(1) == capsys.readouterr().out  # regenerate: python3 -m tools.models --markdown


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
