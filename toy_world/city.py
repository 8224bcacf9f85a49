"""Cities of the toy world: a street grid and box-shaped buildings with procedural facades."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


FACADE_COLUMNS: tuple[str, ...] = (
    "window_period",  # horizontal window spacing, m
    "floor_height",  # vertical window spacing, m
    "window_offset",  # m
    "window_width",  # fraction of the period (above 1: ribbon windows)
    "window_height",  # fraction of the floor
    "ground_floor",  # height of the ground floor (shop band), m
    "height",  # building height, m
    "has_shop",  # 0 or 1
    "has_pilasters",  # 0 or 1: accent-coloured strips between window columns
    "has_bands",  # 0 or 1: accent-coloured floor slabs
    "has_board",  # 0 or 1: a patterned sign / billboard on the facade
    "board_start",  # position along the wall where the board starts, m
    "board_bottom",  # height of its lower edge, m
    "board_width",  # m
    "board_height",  # m
    "board_pattern",  # 0 vertical stripes, 1 horizontal stripes, 2 checker, 3 disc
    "board_stripes",  # stripes or checker cells across the board
)
COLOUR_ROWS: tuple[str, ...] = ("wall", "glass", "shop_sign", "shop_front", "accent", "board_a", "board_b")
WINDOW_STYLES: dict[str, tuple[float, tuple[float, float], tuple[float, float]]] = {
    # style: (probability, window width fraction range, window height fraction range)
    "grid": (0.4, (0.35, 0.75), (0.35, 0.65)),
    "ribbon": (0.2, (1.05, 1.05), (0.4, 0.55)),
    "curtain_wall": (0.15, (0.88, 0.94), (0.75, 0.85)),
    "narrow": (0.25, (0.2, 0.35), (0.6, 0.75)),
}


@dataclass(frozen=True)
class City:
    """Streets and buildings of one region, in local metres (x east, y north).

    ``occupancy[iy, ix]`` is the building whose footprint holds the centre of the cell
    ``[ix, ix + 1) x [iy, iy + 1)`` (times ``cell_m``), or -1 for open ground.
    Buildings: ``rects [N, 4]`` footprints (x0, y0, x1, y1), ``heights [N]``,
    ``facade [N, 17]`` float32 parameters (columns :data:`FACADE_COLUMNS`) and
    ``colours [N, 7, 3]`` float32 RGB in [0, 1] (rows :data:`COLOUR_ROWS`).
    """

    size_x: float
    size_y: float
    cell_m: float
    street_x: np.ndarray  # [Sx] x of the north-south streets' centre lines
    street_y: np.ndarray  # [Sy] y of the east-west streets' centre lines
    street_width: float
    occupancy: np.ndarray
    rects: np.ndarray
    heights: np.ndarray
    facade: np.ndarray
    colours: np.ndarray


def _street_positions(rng: np.random.Generator, length: float, street_width: float,
                      block_range: tuple[float, float]) -> np.ndarray:
    """Centre lines of parallel streets across ``length`` metres, at least one."""
    positions: list[float] = []
    position = rng.uniform(25.0, 45.0)
    while position < length - 25.0:
        positions.append(position)
        position += street_width + rng.uniform(*block_range)
    if not positions:
        positions.append(length / 2)
    return np.array(positions)


def _cut(rng: np.random.Generator, start: float, stop: float,
         piece_range: tuple[float, float]) -> list[tuple[float, float]]:
    """Split ``[start, stop]`` into consecutive pieces of random length."""
    cuts = [start]
    while stop - cuts[-1] > piece_range[1]:
        cuts.append(cuts[-1] + rng.uniform(*piece_range))
    if stop - cuts[-1] < piece_range[0] * 0.5 and len(cuts) > 1:
        cuts.pop()
    cuts.append(stop)
    return list(zip(cuts[:-1], cuts[1:]))


def hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB, all inputs in [0, 1]; returns ``[..., 3]``."""
    k = (np.stack([np.full_like(hue, 5.0), np.full_like(hue, 3.0), np.full_like(hue, 1.0)], axis=-1)
         + hue[..., None] * 6.0) % 6.0
    return value[..., None] - value[..., None] * saturation[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def build_city(rng: np.random.Generator, size_x: float, size_y: float, cell_m: float = 1.0) -> City:
    """A random grid city filling ``size_x x size_y`` metres, with a style of its own."""
    street_width = rng.uniform(10.0, 16.0)
    sidewalk = rng.uniform(1.5, 3.0)
    block_range = (rng.uniform(35.0, 50.0), rng.uniform(60.0, 90.0))
    lot_range = (rng.uniform(7.0, 10.0), rng.uniform(14.0, 24.0))
    height_median = rng.uniform(10.0, 24.0)
    tower_fraction = rng.uniform(0.0, 0.15)
    palette_hue = rng.uniform(0.0, 1.0, 6)
    palette_sat = rng.uniform(0.05, 0.45, 6)
    palette_val = rng.uniform(0.45, 0.92, 6)
    palette = hsv_to_rgb(palette_hue, palette_sat, palette_val)

    street_x = _street_positions(rng, size_x, street_width, block_range)
    street_y = _street_positions(rng, size_y, street_width, block_range)
    margin = street_width / 2 + sidewalk

    def spans(streets: np.ndarray, length: float) -> list[tuple[float, float]]:
        bounds = [(0.0, streets[0] - margin)]
        bounds += [(a + margin, b - margin) for a, b in zip(streets[:-1], streets[1:])]
        bounds.append((streets[-1] + margin, length))
        return [(a, b) for a, b in bounds if b - a > 4.0]

    rects: list[tuple[float, float, float, float]] = []
    for x0, x1 in spans(street_x, size_x):
        for y0, y1 in spans(street_y, size_y):
            for lx0, lx1 in _cut(rng, x0, x1, lot_range):
                for ly0, ly1 in _cut(rng, y0, y1, lot_range):
                    if rng.uniform() < 0.07:  # an empty lot: a gap in the street wall
                        continue
                    rects.append((lx0, ly0, lx1, ly1))
    count = len(rects)
    rect_array = np.array(rects, dtype=np.float64).reshape(count, 4)
    heights = np.clip(height_median * rng.lognormal(0.0, 0.35, count), 6.0, 45.0)
    towers = rng.uniform(size=count) < tower_fraction
    heights[towers] = rng.uniform(40.0, 90.0, int(towers.sum()))
    wall = palette[rng.integers(0, len(palette), count)] + rng.normal(0.0, 0.04, (count, 3))
    window_hue = rng.uniform(0.5, 0.7, count)
    window = hsv_to_rgb(window_hue, rng.uniform(0.1, 0.5, count), rng.uniform(0.12, 0.45, count))
    shop = hsv_to_rgb(rng.uniform(0.0, 1.0, count), rng.uniform(0.5, 1.0, count), rng.uniform(0.4, 1.0, count))

    grid_x, grid_y = int(math.ceil(size_x / cell_m)), int(math.ceil(size_y / cell_m))
    occupancy = np.full((grid_y, grid_x), -1, dtype=np.int32)
    for index, (x0, y0, x1, y1) in enumerate(rect_array):
        # cells whose centre lies in [x0, x1) x [y0, y1): adjacent lots share their edge cells exactly
        ix0, ix1 = int(math.ceil(x0 / cell_m - 0.5)), int(math.ceil(x1 / cell_m - 0.5))
        iy0, iy1 = int(math.ceil(y0 / cell_m - 0.5)), int(math.ceil(y1 / cell_m - 0.5))
        occupancy[max(iy0, 0):min(iy1, grid_y), max(ix0, 0):min(ix1, grid_x)] = index

    style_probability = np.array([probability for probability, _, _ in WINDOW_STYLES.values()])
    style = rng.choice(len(WINDOW_STYLES), count, p=style_probability / style_probability.sum())
    width_range = np.array([widths for _, widths, _ in WINDOW_STYLES.values()])[style]
    height_range = np.array([heights for _, _, heights in WINDOW_STYLES.values()])[style]
    ground_floor = rng.uniform(3.5, 5.0, count)
    # one patterned board per building (on some), placed along the x or the y extent of the lot
    along_x = rng.uniform(size=count) < 0.5
    extent_start = np.where(along_x, rect_array[:, 0], rect_array[:, 1])
    extent = np.where(along_x, rect_array[:, 2] - rect_array[:, 0], rect_array[:, 3] - rect_array[:, 1])
    board_width = np.minimum(rng.uniform(2.0, 7.0, count), 0.8 * extent)
    board_height = rng.uniform(1.2, 4.0, count)
    free_height = np.maximum(heights - ground_floor - board_height - 1.5, 0.5)
    board_bottom = ground_floor + rng.uniform(0.3, 1.0, count) * free_height
    facade = np.stack([
        rng.uniform(2.2, 4.5, count), rng.uniform(2.8, 4.0, count), rng.uniform(0.0, 4.0, count),
        rng.uniform(width_range[:, 0], width_range[:, 1]), rng.uniform(height_range[:, 0], height_range[:, 1]),
        ground_floor, heights, rng.uniform(size=count) < 0.6, rng.uniform(size=count) < 0.3,
        rng.uniform(size=count) < 0.4, rng.uniform(size=count) < 0.45,
        extent_start + rng.uniform(0.0, 1.0, count) * (extent - board_width), board_bottom, board_width, board_height,
        rng.integers(0, 4, count), rng.integers(2, 7, count),
    ], axis=1).astype(np.float32)
    accent = np.where(rng.uniform(size=(count, 1)) < 0.5, wall * rng.uniform(0.45, 0.75, (count, 1)),
                      palette[rng.integers(0, len(palette), count)])
    board_a = hsv_to_rgb(rng.uniform(0.0, 1.0, count), rng.uniform(0.5, 1.0, count), rng.uniform(0.5, 1.0, count))
    board_b = hsv_to_rgb(rng.uniform(0.0, 1.0, count), rng.uniform(0.0, 1.0, count), rng.uniform(0.1, 1.0, count))
    colours = np.stack([np.clip(wall, 0.05, 0.95), window, shop, 0.25 * window + 0.15, np.clip(accent, 0.03, 0.95),
                        board_a, board_b], axis=1).astype(np.float32)
    return City(size_x=size_x, size_y=size_y, cell_m=cell_m, street_x=street_x, street_y=street_y,
                street_width=street_width, occupancy=occupancy, rects=rect_array, heights=heights,
                facade=facade, colours=colours)
