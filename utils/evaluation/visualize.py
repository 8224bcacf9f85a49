"""Pictures of retrieval results: one strip per query with its top predictions, and Recall@N
curves.

Prediction strip layout (all sizes in pixels)::

    +--------+ gap +--------+ gap +--------+ gap +----------+
    | query  |     | pred 1 |     | pred 2 |     | positive |  <- every image resized to ``height``
    +--------+     +--------+     +--------+     +----------+
      query       #1 sqL2=0.41   #2 sqL2=0.53   true #37 sqL2=0.9  <- caption strip: the rank and
      q_12.jpg    12 m away      430 m away     8 m away            squared L2 distance, metres
                  db_0871.jpg    db_0103.jpg    db_4410.jpg           to the query where positions
                                                                      are known, the file name

File names are wrapped over up to :data:`NAME_LINES` lines (beyond, an ellipsis and the name's
end), and where two tiles share a name (SPED's query and match are both ``0000000.jpg``) the
folder is shown in front of it. The image is ``sum(resized widths) + gap * (tiles - 1)`` wide and
``height`` plus the caption strip (as tall as its lines need) tall. With ground truth each
prediction gets a frame ``frame_width`` wide drawn over its edges, green (:data:`CORRECT_COLOUR`) when it is a
positive and red (:data:`WRONG_COLOUR`) when not; without ground truth there is no frame.
A query whose first prediction is wrong also shows, last, its nearest true positive (framed
green) with its rank and distance among all database images. The background is white.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from dataloaders.image_io import load_image
from utils.atomic_write import write_atomically
from utils.errors import UserError, UserFileExistsError

CORRECT_COLOUR: tuple[int, int, int] = (0, 190, 0)
WRONG_COLOUR: tuple[int, int, int] = (220, 0, 0)
BACKGROUND_COLOUR: tuple[int, int, int] = (255, 255, 255)
TEXT_COLOUR: tuple[int, int, int] = (0, 0, 0)
RECALL_AXIS_TOP = 102.0
"""Top of a recall axis in percent: above 100, so a perfect curve stays off the frame."""


NAME_LINES = 3
"""Lines a file name may take under its tile before it is shortened in the middle."""


@dataclass(frozen=True)
class NearestPositive:
    """A query's nearest true positive in the whole database: its file, rank (1-based), squared L2
    distance and, where positions are known, metres to the query."""

    path: str | PathLike[str]
    rank: int
    distance: float
    metres: float | None = None


def display_names(paths: Sequence[str | PathLike[str]]) -> list[str]:
    """The file name of each path, with as many of its folders in front as tell apart the paths
    that share a name (``queries/0000000.jpg`` and ``ref/0000000.jpg``)."""
    parts = [Path(path).parts for path in paths]
    names = [Path(path).name for path in paths]
    depth = 1
    while len(set(names)) < len(set(map(Path, paths))) and depth < max(len(p) for p in parts):
        depth += 1
        counts = {name: names.count(name) for name in names}
        names = ["/".join(p[-depth:]) if counts[name] > 1 else name for p, name in zip(parts, names)]
    return names


def wrap_to_width(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: float, max_lines: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels in ``font`` (anywhere: file names
    have no spaces), at most ``max_lines``; beyond, the last line is an ellipsis and as much of the
    text's end (the extension) as fits."""
    lines: list[str] = []
    current = ""
    for position, char in enumerate(text):
        if current and font.getlength(current + char) > width:
            if len(lines) == max_lines - 1:
                tail = text[position:]
                while tail and font.getlength("…" + tail) > width:
                    tail = tail[1:]
                return [*lines, "…" + tail]
            lines.append(current)
            current = ""
        current += char
    return [*lines, current]


def nearest_positive(database: np.ndarray, query: np.ndarray, positives: np.ndarray) -> tuple[int, int, float]:
    """``(database index, rank, squared L2 distance)`` of the positive nearest to ``query``.

    Args:
        database: ``[N, D]`` descriptors.
        query: ``[D]`` descriptor.
        positives: indices of the query's positives (at least one).
    """
    distances = np.square(database - query[None, :], dtype=np.float32).sum(axis=1)
    best = int(positives[np.argmin(distances[positives])])
    return best, int(np.sum(distances < distances[best])) + 1, float(distances[best])


def save_prediction_image(
    out_path: str | PathLike[str],
    query_path: str | PathLike[str],
    pred_paths: Sequence[str | PathLike[str]],
    distances: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | None,
    height: int = 256,
    gap: int = 8,
    caption_height: int = 40,
    frame_width: int = 6,
    positive: NearestPositive | None = None,
    metres: Sequence[float | None] | None = None,
) -> Path:
    """Draw one query and its ranked predictions side by side (layout in the module docstring).

    Args:
        out_path: image file to create (format from its extension, e.g. ``.png``, ``.jpg``);
            must not exist yet.
        query_path: the query image.
        pred_paths: ``K`` database images, best first.
        distances: ``K`` distances, written under the predictions.
        correct: ``K`` flags (frame green when true, red when false), or None for no frames.
        height: common height of the images.
        gap: white space between two images.
        caption_height: height of one caption line pair (the text is ``0.36 *`` this); the strip
            under the images is as tall as its longest caption needs, 0: no captions.
        frame_width: thickness of the coloured frames.
        positive: the query's nearest true positive, drawn last (for a wrong query).
        metres: ``K`` distances in metres from the query to each prediction, where known.

    Raises:
        FileExistsError: ``out_path`` exists.
        FileNotFoundError: an image is missing.
        ValueError: list lengths that differ, non-positive sizes or an unknown extension.
    """
    out_path = Path(out_path)
    image_format = _format_of(out_path)
    if len(distances) != len(pred_paths) or (correct is not None and len(correct) != len(pred_paths)):
        raise ValueError(
            f"pred_paths ({len(pred_paths)}), distances ({len(distances)}) and correct "
            f"({'None' if correct is None else len(correct)}) must have the same length"
        )
    if height < 1 or caption_height < 0 or gap < 0 or frame_width < 0:
        raise ValueError(
            f"height must be positive and gap, caption_height, frame_width non-negative, got "
            f"{height}, {gap}, {caption_height}, {frame_width}"
        )

    if metres is not None and len(metres) != len(pred_paths):
        raise ValueError(f"metres ({len(metres)}) must have one entry per prediction ({len(pred_paths)})")
    paths = [query_path, *pred_paths]
    away = list(metres) if metres is not None else [None] * len(pred_paths)
    captions = [["query"]] + [
        [f"#{rank}  sqL2={float(d):.3f}", *_metres_line(m)] for rank, (d, m) in enumerate(zip(distances, away), start=1)
    ]
    frames: list[tuple[int, int, int] | None] = [None] * len(paths)
    if correct is not None:
        frames[1:] = [CORRECT_COLOUR if flag else WRONG_COLOUR for flag in correct]
    if positive is not None:
        paths.append(positive.path)
        captions.append([f"true #{positive.rank}  sqL2={positive.distance:.3f}", *_metres_line(positive.metres)])
        frames.append(CORRECT_COLOUR)
    tiles = [_load_at_height(path, height) for path in paths]

    font_size = max(1, int(caption_height * 0.36))
    font = ImageFont.load_default(size=font_size)
    line_height = caption_height // 2
    if caption_height > 0:
        for caption, tile, name in zip(captions, tiles, display_names(paths)):
            caption += wrap_to_width(name, font, tile.width + gap - 4, NAME_LINES)
    strip = line_height * max(len(caption) for caption in captions) + line_height // 2 if caption_height > 0 else 0
    width = sum(tile.width for tile in tiles) + gap * (len(tiles) - 1)
    canvas = Image.new("RGB", (width, height + strip), BACKGROUND_COLOUR)
    draw = ImageDraw.Draw(canvas)
    left = 0
    for tile, caption, frame in zip(tiles, captions, frames):
        canvas.paste(tile, (left, 0))
        if frame is not None and frame_width > 0:
            box = (left, 0, left + tile.width - 1, height - 1)
            draw.rectangle(box, outline=frame, width=frame_width)
        if caption_height > 0:
            for line, text in enumerate(caption):
                text_origin = (left + 2, height + line_height * line + line_height * 3 // 4)
                draw.text(text_origin, text, fill=TEXT_COLOUR, font=font, anchor="lm")
        left += tile.width + gap

    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomically(out_path, lambda stream: canvas.save(stream, format=image_format), exclusive=True)
    except FileExistsError:
        raise UserFileExistsError(f"prediction image already exists, not overwriting it: {out_path}") from None
    return out_path


def save_prediction_images(
    out_dir: str | PathLike[str],
    query_paths: Sequence[str | PathLike[str]],
    db_paths: Sequence[str | PathLike[str]],
    indices: np.ndarray,
    distances: np.ndarray,
    ground_truth: Sequence[np.ndarray] | np.ndarray | None,
    num_preds: int = 5,
    only_wrong: bool = False,
    height: int = 256,
    descriptors: tuple[np.ndarray, np.ndarray] | None = None,
    positions: tuple[np.ndarray, np.ndarray] | None = None,
    queries: Sequence[int] | None = None,
) -> list[Path]:
    """Save one prediction strip per query as ``out_dir/<query index:05d>_<query stem>.png``.

    Args:
        out_dir: folder for the images (created if needed; existing files are never replaced).
        query_paths: ``M`` query image paths (readable files).
        db_paths: ``N`` database image paths.
        indices: ``[M, >= num_preds]`` database indices, best first.
        distances: ``[M, >= num_preds]`` matching distances.
        ground_truth: ``M`` arrays of positive database indices, or None (no frames).
        num_preds: predictions drawn per query.
        only_wrong: keep only the queries whose first prediction is not a positive
            (needs ``ground_truth``).
        height: common image height.
        descriptors: ``(database [N, D], queries [M, D])``: with ground truth, a wrong query's
            strip ends with its nearest true positive, its rank and distance.
        positions: ``(database [N, 2], queries [M, 2])`` UTM positions: each caption gives the
            metres between the image and the query.
        queries: the query indices to draw, in this order (default: every query).

    Returns:
        The written files, in query order.
    """
    indices = np.asarray(indices)
    distances = np.asarray(distances)
    if indices.ndim != 2 or indices.shape[0] != len(query_paths) or distances.shape != indices.shape:
        raise ValueError(
            f"indices and distances must both be [{len(query_paths)} queries, K], got "
            f"{indices.shape} and {distances.shape}"
        )
    if not 1 <= num_preds <= indices.shape[1]:
        raise UserError(f"num_preds must be between 1 and {indices.shape[1]}, got {num_preds}")
    if ground_truth is not None and len(ground_truth) != len(query_paths):
        raise ValueError(f"ground truth has {len(ground_truth)} entries for {len(query_paths)} queries")
    if only_wrong and ground_truth is None:
        raise ValueError("only_wrong needs ground truth to know which queries are wrong")

    out_dir = Path(out_dir)
    written = []
    order = range(len(query_paths)) if queries is None else queries
    for query in tqdm(order, desc="prediction images", unit="query", disable=len(order) < 50):
        predicted = indices[query, :num_preds]
        metres = None
        if positions is not None:
            metres = np.linalg.norm(positions[0][predicted] - positions[1][query], axis=1).tolist()
        correct, positive = None, None
        if ground_truth is not None:
            positives = np.asarray(ground_truth[query]).ravel()
            correct = np.isin(predicted, positives).tolist()
            if only_wrong and correct[0]:
                continue
            if not correct[0] and descriptors is not None and positives.size:
                index, rank, distance = nearest_positive(descriptors[0], descriptors[1][query], positives)
                away = None if positions is None else float(np.linalg.norm(positions[0][index] - positions[1][query]))
                positive = NearestPositive(db_paths[index], rank, distance, away)
        out_path = out_dir / f"{query:05d}_{Path(query_paths[query]).stem}.png"
        written.append(
            save_prediction_image(
                out_path,
                query_paths[query],
                [db_paths[index] for index in predicted.tolist()],
                distances[query, :num_preds],
                correct,
                height=height,
                positive=positive,
                metres=metres,
            )
        )
    return written


def plot_recall_curves(
    curves: Mapping[str, np.ndarray | Sequence[float]],
    out_path: str | PathLike[str],
    title: str,
) -> Path:
    """Plot Recall@N (percent) against N = 1 .. len(curve) for every labelled curve, as a PNG.

    Args:
        curves: label -> ``[max_n]`` Recall@N in percent.
        out_path: ``.png`` file to create; must not exist yet.
        title: figure title.
    """
    return plot_recall_panels({title: curves}, out_path)


def plot_recall_panels(
    panels: Mapping[str, Mapping[str, np.ndarray | Sequence[float]]],
    out_path: str | PathLike[str],
    overwrite: bool = False,
) -> Path:
    """One PNG with a Recall@N panel per entry of ``panels`` (title -> {label -> curve}), side by
    side (at most 3 per row). Uses matplotlib's Agg canvas directly, so no global backend is set.
    The axis reaches a little over 100 %, so a curve at 100 % is drawn above the frame, not on it.

    Args:
        panels: panel title -> label -> ``[max_n]`` Recall@N in percent.
        out_path: ``.png`` file to create; must not exist yet unless ``overwrite``.
        overwrite: replace an existing file (written atomically).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".png":
        raise UserError(f"recall curves are written as PNG; {out_path} does not end in .png")
    if not panels or not all(panels.values()):
        raise UserError("no recall curves to plot")
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(7 * columns, 5 * rows), dpi=100)
    FigureCanvasAgg(figure)
    for position, (title, curves) in enumerate(panels.items(), start=1):
        axes = figure.add_subplot(rows, columns, position)
        for label, curve in curves.items():
            values = np.asarray(curve, dtype=np.float64).ravel()
            if values.size == 0:
                raise UserError(f"recall curve {label!r} is empty")
            ranks = np.arange(1, values.size + 1)
            axes.plot(ranks, values, marker="o" if values.size <= 30 else None, markersize=3, label=label)
        axes.set_xlabel("N (number of retrieved images)")
        axes.set_ylabel("Recall@N (%)")
        axes.set_title(title)
        axes.set_ylim(top=RECALL_AXIS_TOP)
        axes.grid(True, alpha=0.3)
        axes.legend(loc="lower right")
    figure.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if overwrite:
        return write_atomically(out_path, lambda stream: figure.savefig(stream, format="png"))
    try:
        write_atomically(out_path, lambda stream: figure.savefig(stream, format="png"), exclusive=True)
    except FileExistsError:
        raise UserFileExistsError(f"figure already exists, not overwriting it: {out_path}") from None
    return out_path


def _metres_line(metres: float | None) -> list[str]:
    """The caption line of a distance in metres (none when unknown)."""
    return [] if metres is None else [f"{metres:,.0f} m away"]


def _load_at_height(path: str | PathLike[str], height: int) -> Image.Image:
    """Read an RGB image and resize it to ``height`` rows, keeping its aspect ratio."""
    image = load_image(path, min_size=(height, 1))
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def _format_of(path: Path) -> str:
    """PIL format name for the file extension of ``path``."""
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise UserError(f"cannot tell the image format of {path}: use an extension such as .png or .jpg")
    return image_format
