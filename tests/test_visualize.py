"""Prediction strips and recall-curve figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from PIL import ImageFont

from utils.evaluation.visualize import (
    display_names,
    plot_recall_curves,
    save_prediction_image,
    save_prediction_images,
    wrap_to_width,
)

BLUE = (30, 60, 200)


def solid_image(path: Path, width: int, height: int, colour: tuple[int, int, int] = BLUE) -> Path:
    Image.new("RGB", (width, height), colour).save(path)
    return path


def is_colour(pixel: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 3) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, expected))


def is_green(pixel: tuple[int, ...]) -> bool:
    red, green, blue = pixel[:3]
    return green > 150 and red < 60 and blue < 60


def is_red(pixel: tuple[int, ...]) -> bool:
    red, green, blue = pixel[:3]
    return red > 150 and green < 60 and blue < 60


@pytest.fixture()
def images(tmp_path: Path) -> dict[str, Path]:
    """A query and three predictions of different aspect ratios, all solid blue."""
    return {
        "query": solid_image(tmp_path / "query.png", 60, 30),  # resized to 60 x 30
        "square": solid_image(tmp_path / "square.png", 40, 40),  # -> 30 x 30
        "wide": solid_image(tmp_path / "wide.png", 90, 30),  # -> 90 x 30
        "tall": solid_image(tmp_path / "tall.png", 30, 60),  # -> 15 x 30
    }


LAYOUT = dict(height=30, gap=5, caption_height=12, frame_width=3)
# left edges: query 0, square 60 + 5 = 65, wide 65 + 30 + 5 = 100, tall 100 + 90 + 5 = 195
PREDICTION_LEFT_EDGES = (65, 100, 195)
PREDICTION_WIDTHS = (30, 90, 15)


def test_strip_size_and_frame_colours(tmp_path: Path, images: dict[str, Path]) -> None:
    out = save_prediction_image(
        tmp_path / "out" / "strip.png",
        images["query"],
        [images["square"], images["wide"], images["tall"]],
        [0.25, 0.5, 0.75],
        [True, False, True],
        **LAYOUT,
    )
    strip = Image.open(out).convert("RGB")
    assert strip.size == (60 + 30 + 90 + 15 + 3 * 5, 30 + 6 * 2 + 3)  # two caption lines of 12 // 2, half a line

    frame_checks = (is_green, is_red, is_green)
    for left, width, check in zip(PREDICTION_LEFT_EDGES, PREDICTION_WIDTHS, frame_checks):
        for x, y in ((left + 1, 15), (left + width - 2, 15), (left + width // 2, 1), (left + width // 2, 28)):
            assert check(strip.getpixel((x, y))), (left, x, y, strip.getpixel((x, y)))
        assert is_colour(strip.getpixel((left + width // 2, 15)), BLUE)  # inside the frame
    assert is_colour(strip.getpixel((1, 15)), BLUE)  # the query has no frame
    assert strip.getpixel((62, 15)) == (255, 255, 255)  # gap

    caption = np.asarray(strip)[30:, :, :]
    for left, width in zip((0, *PREDICTION_LEFT_EDGES), (60, *PREDICTION_WIDTHS)):
        assert (caption[:, left : left + width].min(axis=2) < 128).any()  # text under each image


def test_no_ground_truth_draws_no_frames(tmp_path: Path, images: dict[str, Path]) -> None:
    out = save_prediction_image(
        tmp_path / "strip.png", images["query"], [images["square"], images["wide"], images["tall"]],
        [0.1, 0.2, 0.3], None, **LAYOUT,
    )
    strip = Image.open(out).convert("RGB")
    for left, width in zip(PREDICTION_LEFT_EDGES, PREDICTION_WIDTHS):
        assert is_colour(strip.getpixel((left + 1, 15)), BLUE)
        assert is_colour(strip.getpixel((left + width // 2, 1)), BLUE)


def test_strip_refuses_overwrite_and_bad_lengths(tmp_path: Path, images: dict[str, Path]) -> None:
    existing = solid_image(tmp_path / "existing.png", 5, 5, (1, 2, 3))
    with pytest.raises(FileExistsError, match="not overwriting"):
        save_prediction_image(existing, images["query"], [images["square"]], [0.1], None)
    assert Image.open(existing).getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(ValueError, match="same length"):
        save_prediction_image(tmp_path / "a.png", images["query"], [images["square"]], [0.1, 0.2], None)
    with pytest.raises(ValueError, match="image format"):
        save_prediction_image(tmp_path / "a.strip", images["query"], [images["square"]], [0.1], None)
    with pytest.raises(FileNotFoundError):
        save_prediction_image(tmp_path / "b.png", tmp_path / "missing.png", [images["square"]], [0.1], None)


def test_prediction_images_only_wrong(tmp_path: Path, images: dict[str, Path]) -> None:
    query_paths = [images["query"], images["tall"], images["wide"]]
    db_paths = [images["square"], images["wide"], images["tall"]]
    indices = np.array([[0, 1], [2, 0], [1, 2]])
    distances = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]])
    ground_truth = [np.array([1]), np.array([2]), np.array([0])]  # query 1 is right at rank 1

    written = save_prediction_images(
        tmp_path / "wrong", query_paths, db_paths, indices, distances, ground_truth,
        num_preds=2, only_wrong=True, height=20,
    )
    assert [path.name for path in written] == ["00000_query.png", "00002_wide.png"]
    assert sorted(p.name for p in (tmp_path / "wrong").iterdir()) == ["00000_query.png", "00002_wide.png"]

    everything = save_prediction_images(
        tmp_path / "all", query_paths, db_paths, indices, distances, None, num_preds=1, height=20
    )
    assert len(everything) == 3 and all(path.is_file() for path in everything)
    with pytest.raises(ValueError, match="only_wrong needs ground truth"):
        save_prediction_images(tmp_path / "x", query_paths, db_paths, indices, distances, None, only_wrong=True, num_preds=1)
    with pytest.raises(ValueError, match="num_preds must be between 1 and 2"):
        save_prediction_images(tmp_path / "x", query_paths, db_paths, indices, distances, None, num_preds=3)


def test_recall_curve_figure(tmp_path: Path) -> None:
    curves = {"run a": np.array([50.0, 60.0, 70.0]), "run b": [40.0, 65.0, 80.0, 85.0]}
    out = plot_recall_curves(curves, tmp_path / "figures" / "recalls.png", "Recall@N on sped")
    with Image.open(out) as figure:
        assert figure.format == "PNG"
        assert figure.size == (700, 500)
        assert len(np.unique(np.asarray(figure.convert("RGB")).reshape(-1, 3), axis=0)) > 10  # drawn
    with pytest.raises(FileExistsError, match="not overwriting"):
        plot_recall_curves(curves, out, "again")
    with pytest.raises(ValueError, match="does not end in .png"):
        plot_recall_curves(curves, tmp_path / "recalls.pdf", "pdf")
    with pytest.raises(ValueError, match="no recall curves"):
        plot_recall_curves({}, tmp_path / "empty.png", "empty")


def test_captions_fit_their_tiles_and_tell_equal_names_apart(tmp_path: Path, images: dict[str, Path]) -> None:
    assert display_names(["sped/queries/0000000.jpg", "sped/ref/0000000.jpg", "sped/ref/0000001.jpg"]) == [
        "queries/0000000.jpg", "ref/0000000.jpg", "0000001.jpg"]
    font = ImageFont.load_default(size=12)
    name = "@0543256.96@4178906.23@10@S@037.75588@-122.50878@0000@2013@06@@@@@@pitch1_yaw1@.jpg"
    lines = wrap_to_width(name, font, 120, 3)
    assert len(lines) == 3 and all(font.getlength(line) <= 120 for line in lines)
    assert lines[0] == name[: len(lines[0])] and lines[2].startswith("…") and name.endswith(lines[2][1:])
    assert wrap_to_width("short.jpg", font, 120, 3) == ["short.jpg"]

    layout = dict(LAYOUT, caption_height=20)
    plain = save_prediction_image(tmp_path / "plain.png", images["query"], [images["wide"]], [0.5], [True], **layout)
    placed = save_prediction_image(tmp_path / "metres.png", images["query"], [images["wide"]], [0.5], [True],
                                   metres=[12.3], **layout)
    assert Image.open(placed).height == Image.open(plain).height + 10  # one more line: "12 m away"
