"""Procedural toy world: a small stand-in for the real VPR datasets, generated on a CPU.

The world is a set of separate regions (one per GSV-Cities training city and one per
evaluation set), laid out far apart on one global plane so that training places never share
buildings with evaluation places. Each region is a city block grid in local metres (x east,
y north): streets, and box-shaped buildings with procedural facades (wall colour, window
grid, shop fronts). Images are rendered by ray casting from street-level cameras, so a
place's appearance is a function of its world coordinates: nearby cameras see the same
buildings from slightly different viewpoints (hard negatives), and ground truth comes from
positions exactly as in the real datasets.

Every image gets appearance changes (sun direction, overcast, dusk, night with lit windows,
snow, colour cast, hue and saturation shifts, gamma, noise) and image-space occluders (cars,
pedestrians, trees, poles). Queries get strong changes, database images mild ones, so global
colour statistics alone do not solve retrieval.

Everything is drawn from ``numpy.random.default_rng([seed, stream, ...])`` with one stream per
region and dataset part: the same seed gives byte-identical files, whatever the number of
rendering workers.

The output tree mimics a user's data folder with the published layouts (see
``DATASETS.md``): GSV-Cities, the raw MSLS tree, Pittsburgh images and ``.mat`` files,
VPR-Bench Nordland and SPED, a gmberton-format set, and the published ``.npy`` index files
computed from the world's ground truth. ``toy_world.json`` records what was generated.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
from PIL import Image
from tqdm import tqdm

logger = logging.getLogger(__name__)

TOY_WORLD_VERSION = 1
SUMMARY_FILE = "toy_world.json"
JPEG_QUALITY = 90

MSLS_VAL_CITIES: tuple[str, ...] = ("cph", "sf")
MSLS_TEST_CITIES: tuple[str, ...] = ("miami", "athens", "buenosaires", "stockholm", "bengaluru", "kampala")
MSLS_SUBTASKS: tuple[str, ...] = ("all", "s2w", "w2s", "o2n", "n2o", "d2n", "n2d")
POSITIVE_RADIUS_M = 25.0
PITTS_YAWS = 12
PITTS_PITCHES_DEG = (4.0, 26.5)
GMBERTON_SET = "toy_city"

_KEY_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))

# The 23 GSV-Cities training cities (published order) and the (lat, lon) of their centres,
# where the toy cities named after them are placed.
GSV_CITY_CENTRES: dict[str, tuple[float, float]] = {
    "Bangkok": (13.7563, 100.5018), "BuenosAires": (-34.6037, -58.3816), "LosAngeles": (34.0522, -118.2437),
    "MexicoCity": (19.4326, -99.1332), "OSL": (59.9139, 10.7522), "Rome": (41.9028, 12.4964),
    "Barcelona": (41.3874, 2.1686), "Chicago": (41.8781, -87.6298), "Madrid": (40.4168, -3.7038),
    "Miami": (25.7617, -80.1918), "Phoenix": (33.4484, -112.0740), "TRT": (43.6532, -79.3832),
    "Boston": (42.3601, -71.0589), "Lisbon": (38.7223, -9.1393), "Medellin": (6.2476, -75.5658),
    "Minneapolis": (44.9778, -93.2650), "PRG": (50.0755, 14.4378), "WashingtonDC": (38.9072, -77.0369),
    "Brussels": (50.8503, 4.3517), "London": (51.5074, -0.1278), "Melbourne": (-37.8136, 144.9631),
    "Osaka": (34.6937, 135.5023), "PRS": (48.8566, 2.3522),
}


# ------------------------------------------------------------------------------------------
# Sizes
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyWorldSize:
    """How much to generate. Counts are per city / area / set as named."""

    gsv_cities: tuple[str, ...]
    gsv_places_per_city: int
    gsv_images_per_place: tuple[int, int]  # inclusive range
    msls_val_db_per_city: int
    msls_val_queries_per_city: int
    msls_test_db_per_city: int
    msls_test_queries_per_city: int
    pitts_db_places_per_area: int  # two areas (30k val, 30k test); 250k test uses both
    pitts_query_places_per_set: int  # each query place is 24 images
    nordland_queries: int  # the database is 10 * (queries - 1) + 2 frames
    sped_pairs: int
    gmberton_db: int
    gmberton_queries: int

    def __post_init__(self) -> None:
        low, high = self.gsv_images_per_place
        if not 1 <= low <= high:
            raise ValueError("gsv_images_per_place must be (low, high) with 1 <= low <= high, "
                             f"got {self.gsv_images_per_place}")
        if not self.gsv_cities:
            raise ValueError("gsv_cities must name at least one city")
        unknown = [city for city in self.gsv_cities if city not in GSV_CITY_CENTRES]
        if unknown:
            raise ValueError(f"unknown GSV-Cities city {', '.join(unknown)}; expected names from "
                             f"{', '.join(GSV_CITY_CENTRES)}")
        if len(set(self.gsv_cities)) != len(self.gsv_cities):
            raise ValueError(f"gsv_cities lists a city twice: {', '.join(self.gsv_cities)}")
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, int) and value < 1:
                raise ValueError(f"{item.name} must be at least 1, got {value}")
        if self.nordland_queries < 2:
            raise ValueError(f"nordland_queries must be at least 2, got {self.nordland_queries}")


TOY_WORLD_SIZES: dict[str, ToyWorldSize] = {
    "small": ToyWorldSize(
        gsv_cities=("Bangkok", "Boston", "PRS"),
        gsv_places_per_city=8,
        gsv_images_per_place=(4, 6),
        msls_val_db_per_city=18,
        msls_val_queries_per_city=8,
        msls_test_db_per_city=4,
        msls_test_queries_per_city=2,
        pitts_db_places_per_area=2,
        pitts_query_places_per_set=1,
        nordland_queries=4,
        sped_pairs=6,
        gmberton_db=12,
        gmberton_queries=4,
    ),
    "default": ToyWorldSize(
        gsv_cities=("Bangkok", "Boston", "London", "PRS"),
        gsv_places_per_city=80,
        gsv_images_per_place=(4, 8),
        msls_val_db_per_city=120,
        msls_val_queries_per_city=40,
        msls_test_db_per_city=12,
        msls_test_queries_per_city=4,
        pitts_db_places_per_area=8,
        pitts_query_places_per_set=3,
        nordland_queries=20,
        sped_pairs=60,
        gmberton_db=120,
        gmberton_queries=40,
    ),
}


def resolve_size(size: str | ToyWorldSize) -> ToyWorldSize:
    """A preset name (``small``, ``default``) or an explicit :class:`ToyWorldSize`."""
    if isinstance(size, ToyWorldSize):
        return size
    if size not in TOY_WORLD_SIZES:
        raise ValueError(f"unknown toy world size {size!r}; expected one of {', '.join(TOY_WORLD_SIZES)}")
    return TOY_WORLD_SIZES[size]


@dataclass(frozen=True)
class ToyWorldSummary:
    """What :func:`generate_toy_world` wrote (also saved as ``toy_world.json``)."""

    root: Path
    seed: int
    size: str
    image_size: int
    version: int
    num_images: int
    gsv_cities: tuple[str, ...]
    parameters: dict[str, object]  # the ToyWorldSize fields used
    counts: dict[str, dict[str, int]]
    regions: dict[str, tuple[float, float, float, float]]  # global (x0, y0, x1, y1) metres

    def to_json(self) -> str:
        payload = asdict(self)
        payload.pop("root")
        payload["gsv_cities"] = list(self.gsv_cities)
        payload["regions"] = {name: list(box) for name, box in self.regions.items()}
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"


# ------------------------------------------------------------------------------------------
# Random streams
# ------------------------------------------------------------------------------------------

# One stream id per part of the world, so that changing one part's size leaves the others.
_STREAM_CITY = 1
_STREAM_GSV = 2
_STREAM_MSLS_VAL = 3
_STREAM_MSLS_TEST = 4
_STREAM_PITTS = 5
_STREAM_NORDLAND = 6
_STREAM_SPED = 7
_STREAM_GMBERTON = 8


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _random_keys(rng: np.random.Generator, count: int, length: int = 22) -> list[str]:
    """``count`` distinct base64url strings like MSLS keys and Street View pano ids."""
    keys: list[str] = []
    seen: set[str] = set()
    while len(keys) < count:
        key = "".join(_KEY_ALPHABET[rng.integers(0, len(_KEY_ALPHABET), length)])
        if key not in seen:
            seen.add(key)
            keys.append(key)
    return keys


def _hash_unit(*values: np.ndarray | int) -> np.ndarray:
    """Deterministic hash of integer arrays to floats in [0, 1) (broadcast shape)."""
    primes = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)
    state = np.uint32(0x811C9DC5)
    for index, value in enumerate(values):
        term = np.asarray(value).astype(np.int64).astype(np.uint32) * np.uint32(primes[index % len(primes)])
        state = (state ^ term) * np.uint32(0x01000193)
        state = state ^ (state >> np.uint32(15))
    state = state * np.uint32(0x2C1B3C6D)
    state = state ^ (state >> np.uint32(12))
    return (state >> np.uint32(8)).astype(np.float32) / np.float32(1 << 24)


# ------------------------------------------------------------------------------------------
# Cities
# ------------------------------------------------------------------------------------------


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


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
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
    palette = _hsv_to_rgb(palette_hue, palette_sat, palette_val)

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
    window = _hsv_to_rgb(window_hue, rng.uniform(0.1, 0.5, count), rng.uniform(0.12, 0.45, count))
    shop = _hsv_to_rgb(rng.uniform(0.0, 1.0, count), rng.uniform(0.5, 1.0, count), rng.uniform(0.4, 1.0, count))

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
    board_a = _hsv_to_rgb(rng.uniform(0.0, 1.0, count), rng.uniform(0.5, 1.0, count), rng.uniform(0.5, 1.0, count))
    board_b = _hsv_to_rgb(rng.uniform(0.0, 1.0, count), rng.uniform(0.0, 1.0, count), rng.uniform(0.1, 1.0, count))
    colours = np.stack([np.clip(wall, 0.05, 0.95), window, shop, 0.25 * window + 0.15, np.clip(accent, 0.03, 0.95),
                        board_a, board_b], axis=1).astype(np.float32)
    return City(size_x=size_x, size_y=size_y, cell_m=cell_m, street_x=street_x, street_y=street_y,
                street_width=street_width, occupancy=occupancy, rects=rect_array, heights=heights,
                facade=facade, colours=colours)


# ------------------------------------------------------------------------------------------
# Cameras on streets
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreetPoint:
    """A camera position on a street: ``(x, y)`` metres and the street's direction (compass deg)."""

    x: float
    y: float
    street_heading: float


def random_street_point(city: City, rng: np.random.Generator, edge_m: float = 40.0) -> StreetPoint:
    """A uniform point on the road surface, at least ``edge_m`` from the region's border."""
    lateral = rng.uniform(-city.street_width / 2 + 1.5, city.street_width / 2 - 1.5)
    north_south = rng.uniform() < len(city.street_x) * city.size_y / (
        len(city.street_x) * city.size_y + len(city.street_y) * city.size_x)
    if north_south:
        x = float(city.street_x[rng.integers(len(city.street_x))]) + lateral
        y = rng.uniform(edge_m, city.size_y - edge_m)
        return StreetPoint(x, y, 0.0)
    y = float(city.street_y[rng.integers(len(city.street_y))]) + lateral
    x = rng.uniform(edge_m, city.size_x - edge_m)
    return StreetPoint(x, y, 90.0)


def spaced_street_points(city: City, rng: np.random.Generator, count: int, min_spacing_m: float) -> list[StreetPoint]:
    """``count`` street points at least ``min_spacing_m`` apart (spacing relaxed if the city is full)."""
    points: list[StreetPoint] = []
    spacing = min_spacing_m
    attempts = 0
    while len(points) < count:
        candidate = random_street_point(city, rng)
        if all(math.hypot(candidate.x - p.x, candidate.y - p.y) >= spacing for p in points):
            points.append(candidate)
        attempts += 1
        if attempts > 200 * count:
            spacing *= 0.8
            attempts = 0
    return points


def _direction(heading_deg: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vector ``(dx, dy)`` of a compass heading (0 = north = +y, 90 = east = +x)."""
    radians = np.radians(heading_deg)
    return np.sin(radians), np.cos(radians)


@dataclass(frozen=True)
class Route:
    """A drive along streets: a polyline of intersections, in local metres."""

    vertices: np.ndarray  # [V, 2]

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.diff(self.vertices, axis=0), axis=1).sum())

    def sample(self, arc_lengths: np.ndarray, lane_offset_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[N, 2]`` and headings ``[N]`` (deg) at the given distances along the route,
        shifted ``lane_offset_m`` to the right of the direction of travel."""
        segments = np.diff(self.vertices, axis=0)
        lengths = np.linalg.norm(segments, axis=1)
        ends = np.cumsum(lengths)
        index = np.clip(np.searchsorted(ends, arc_lengths, side="right"), 0, len(lengths) - 1)
        start = ends[index] - lengths[index]
        unit = segments[index] / lengths[index, None]
        positions = self.vertices[index] + unit * (arc_lengths - start)[:, None]
        right = np.stack([unit[:, 1], -unit[:, 0]], axis=1)
        headings = np.degrees(np.arctan2(unit[:, 0], unit[:, 1])) % 360.0
        return positions + right * lane_offset_m, headings


def random_route(city: City, rng: np.random.Generator, min_length_m: float, edge_m: float = 30.0) -> Route:
    """A drive on the street grid: straight on or turning at each intersection, never U-turning,
    staying ``edge_m`` inside the region; long enough for ``min_length_m``."""
    xs = city.street_x[(city.street_x > edge_m) & (city.street_x < city.size_x - edge_m)]
    ys = city.street_y[(city.street_y > edge_m) & (city.street_y < city.size_y - edge_m)]
    if len(xs) == 0 or len(ys) == 0:
        xs, ys = city.street_x, city.street_y
    node = (int(rng.integers(len(xs))), int(rng.integers(len(ys))))
    moves = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    heading = int(rng.integers(4))
    vertices = [(xs[node[0]], ys[node[1]])]
    length = 0.0
    visited = {node}
    while length < min_length_m:
        options = [heading, (heading + 1) % 4, (heading + 3) % 4]
        weights = np.array([0.6, 0.2, 0.2])
        valid = []
        for option in options:
            nxt = (node[0] + moves[option][0], node[1] + moves[option][1])
            valid.append(0 <= nxt[0] < len(xs) and 0 <= nxt[1] < len(ys) and nxt not in visited)
        if not any(valid):
            break
        weights = weights * np.array(valid, dtype=float)
        heading = options[int(rng.choice(3, p=weights / weights.sum()))]
        node = (node[0] + moves[heading][0], node[1] + moves[heading][1])
        visited.add(node)
        vertices.append((xs[node[0]], ys[node[1]]))
        length += math.hypot(vertices[-1][0] - vertices[-2][0], vertices[-1][1] - vertices[-2][1])
    route = Route(np.array(vertices, dtype=np.float64))
    if route.length < min_length_m:  # boxed in: go on straight along the current street
        step = np.array(moves[heading], dtype=np.float64)
        extra = route.vertices[-1] + step * (min_length_m - route.length + 1.0)
        route = Route(np.vstack([route.vertices, extra]))
    return route


# ------------------------------------------------------------------------------------------
# Cameras and appearance conditions
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Views:
    """N camera views and their appearance; every field is an array with N rows.

    Geometry: ``x, y`` (m), ``heading`` (compass deg), ``pitch`` (deg, up > 0), ``fov``
    (horizontal, deg), ``camera_height`` (m). Light: ``sun_azimuth`` (deg), ``ambient``,
    ``diffuse``, ``sky_zenith [N, 3]``, ``sky_horizon [N, 3]``, ``fog_m``, ``night`` (bool),
    ``snow`` (0..1). Camera response: ``colour_matrix [N, 3, 3]``, ``gamma``,
    ``noise_sigma`` (0..255 scale). ``occluder_rate``: mean number of occluders.
    ``seed``: per-image seed for occluders, noise and lit windows.
    """

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    pitch: np.ndarray
    fov: np.ndarray
    camera_height: np.ndarray
    sun_azimuth: np.ndarray
    ambient: np.ndarray
    diffuse: np.ndarray
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    fog_m: np.ndarray
    night: np.ndarray
    snow: np.ndarray
    colour_matrix: np.ndarray
    gamma: np.ndarray
    noise_sigma: np.ndarray
    occluder_rate: np.ndarray
    seed: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: np.ndarray | slice) -> Views:
        return Views(**{item.name: getattr(self, item.name)[index] for item in fields(self)})


@dataclass(frozen=True)
class Appearance:
    """How strongly images vary: 0 = identical conditions, 1 = query-like changes."""

    strength: float
    night_probability: float = 0.0
    snow_probability: float = 0.0
    occluder_rate: float = 1.0


DATABASE_LOOK = Appearance(strength=0.3, occluder_rate=0.7)
QUERY_LOOK = Appearance(strength=1.0, night_probability=0.15, snow_probability=0.2, occluder_rate=2.5)
TRAIN_LOOK = Appearance(strength=1.0, night_probability=0.12, snow_probability=0.15, occluder_rate=2.0)


def _colour_matrices(rng: np.random.Generator, count: int, strength: float) -> np.ndarray:
    """Per-image 3x3 colour transforms: hue rotation, saturation, white balance, brightness."""
    angle = rng.normal(0.0, np.radians(22.0) * strength, count)
    saturation = np.exp(rng.normal(0.0, 0.35 * strength, count))
    gain = np.exp(rng.normal(0.0, 0.12 * strength, (count, 3)))
    brightness = np.exp(rng.normal(0.0, 0.22 * strength, count))
    grey = np.full((3, 3), 1.0 / 3.0)
    axis = np.ones(3) / math.sqrt(3.0)
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    matrices = np.empty((count, 3, 3))
    for i in range(count):
        rotation = (math.cos(angle[i]) * np.eye(3) + math.sin(angle[i]) * cross
                    + (1 - math.cos(angle[i])) * np.outer(axis, axis))
        saturate = grey + saturation[i] * (np.eye(3) - grey)
        matrices[i] = brightness[i] * np.diag(gain[i]) @ saturate @ rotation
    return matrices


def sample_views(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, heading: np.ndarray,
                 look: Appearance, *, pitch: np.ndarray | None = None, fov: np.ndarray | None = None,
                 camera_height: np.ndarray | None = None, night: np.ndarray | None = None,
                 snow: np.ndarray | None = None) -> Views:
    """Views at the given poses with random appearance drawn for ``look``; geometry not given
    is drawn at random around a street-level camera."""
    count = len(x)
    strength = look.strength
    pitch = rng.uniform(-3.0, 6.0, count) if pitch is None else pitch
    fov = rng.uniform(75.0, 95.0, count) if fov is None else fov
    camera_height = rng.uniform(2.0, 3.0, count) if camera_height is None else camera_height
    night = rng.uniform(size=count) < look.night_probability if night is None else night
    snow_draw = rng.uniform(0.5, 1.0, count) * (rng.uniform(size=count) < look.snow_probability)
    snow = snow_draw if snow is None else snow
    overcast = rng.uniform(size=count) < 0.3 * max(strength, 0.3)
    dusk = (rng.uniform(size=count) < 0.2 * strength) & ~night
    ambient = np.where(overcast, rng.uniform(0.75, 0.9, count), rng.uniform(0.45, 0.65, count))
    diffuse = np.where(overcast, rng.uniform(0.03, 0.1, count), rng.uniform(0.3, 0.55, count))
    zenith = np.where(overcast[:, None], [0.62, 0.64, 0.68], [0.30, 0.50, 0.85]) + rng.normal(0, 0.04, (count, 3))
    horizon = np.where(overcast[:, None], [0.78, 0.79, 0.80], [0.72, 0.82, 0.93]) + rng.normal(0, 0.04, (count, 3))
    horizon = np.where(dusk[:, None], [0.95, 0.62, 0.38], horizon)
    zenith = np.where(dusk[:, None], [0.35, 0.35, 0.60], zenith)
    ambient = np.where(night, rng.uniform(0.12, 0.2, count), ambient)
    diffuse = np.where(night, 0.0, diffuse)
    zenith = np.where(night[:, None], [0.02, 0.03, 0.08], zenith)
    horizon = np.where(night[:, None], [0.10, 0.09, 0.14], horizon)
    return Views(
        x=np.asarray(x, dtype=np.float64), y=np.asarray(y, dtype=np.float64),
        heading=np.asarray(heading, dtype=np.float64) % 360.0, pitch=np.asarray(pitch, dtype=np.float64),
        fov=np.asarray(fov, dtype=np.float64), camera_height=np.asarray(camera_height, dtype=np.float64),
        sun_azimuth=rng.uniform(0.0, 360.0, count), ambient=ambient, diffuse=diffuse,
        sky_zenith=np.clip(zenith, 0, 1), sky_horizon=np.clip(horizon, 0, 1),
        fog_m=rng.uniform(90.0, 250.0, count) / (1.0 + strength * rng.uniform(0.0, 1.5, count)),
        night=np.asarray(night, dtype=bool), snow=np.asarray(snow, dtype=np.float64),
        colour_matrix=_colour_matrices(rng, count, strength),
        gamma=np.exp(rng.normal(0.0, 0.18 * strength, count)),
        noise_sigma=rng.uniform(0.5, 1.0 + 4.0 * strength, count),
        occluder_rate=np.full(count, look.occluder_rate),
        seed=rng.integers(0, 2**31 - 1, count),
    )


# ------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------

# ray-marching distances: fine near the camera, coarser far away (buildings are >= 4 m wide)
_MARCH = np.concatenate([np.arange(0.5, 25.0, 0.5), np.arange(25.0, 60.0, 1.0),
                         np.arange(60.0, 160.0, 2.0)]).astype(np.float32)
_SLOPE_LIMIT = 1000.0  # |slope| bound of the per-column running maximum

# facade materials: rows of the per-building colour table (COLOUR_ROWS)
_WALL, _GLASS, _SIGN, _SHOPFRONT, _ACCENT, _BOARD_A, _BOARD_B = range(7)
# ground materials
_GROUND_RGB = np.array([[0.33, 0.33, 0.35], [0.62, 0.60, 0.56], [0.92, 0.85, 0.45], [0.9, 0.9, 0.9]], dtype=np.float32)
_ROAD, _PAVEMENT, _LANE_MARK, _ZEBRA = 0, 1, 2, 3
_LIT_WINDOW_RGB = np.array([1.0, 0.82, 0.5], dtype=np.float32)


def _facade_colour(city: City, views: Views, view: np.ndarray, building: np.ndarray, s: np.ndarray,
                   z: np.ndarray, normal_azimuth: np.ndarray) -> np.ndarray:
    """Colours ``[P, 3]`` of facade points: building ``[P]``, position along the wall ``s``
    and height ``z`` (m), wall normal azimuth (deg), seen by ``view`` ``[P]``.

    Each point gets a material (wall, glass, shop sign, shop front, accent, board colours)
    whose colour comes from the building's colour table, times a brightness factor (brick
    texture, cornice, glass variation, sun shading)."""
    table = city.facade[building]  # [P, 17], one gather for every facade parameter
    (period, floor, offset, win_w, win_h, ground_floor, height, shop, pilasters, bands, board,
     board_start, board_bottom, board_width, board_height, board_pattern, board_stripes) = table.T
    u = (s - offset) / period
    column = np.floor(u)
    u_frac = u - column
    v = z / floor
    storey = np.floor(v)
    v_frac = v - storey
    upper = (z > ground_floor) & (z < height - 1.2)
    window = upper & (np.abs(u_frac - 0.5) < win_w * 0.5) & (v_frac > 0.3) & (v_frac < 0.3 + win_h)
    in_shop = (shop > 0) & (z < ground_floor)
    shop_front = in_shop & (z > 0.4) & (z < ground_floor - 0.9)
    sign = in_shop & (z >= ground_floor - 0.9) & (z < ground_floor - 0.15)
    bu = (s - board_start) / board_width  # position on the board, [0, 1) x [0, 1) inside it
    bv = (z - board_bottom) / board_height
    on_board = (board > 0) & (bu >= 0) & (bu < 1) & (bv >= 0) & (bv < 1)
    stripe_u, stripe_v = np.floor(bu * board_stripes), np.floor(bv * np.maximum(board_stripes // 2, 1))
    board_b = np.select(
        [board_pattern == 0, board_pattern == 1, board_pattern == 2],
        [stripe_u % 2 == 1, stripe_v % 2 == 1, (stripe_u + stripe_v) % 2 == 1],
        (bu - 0.5) ** 2 + (bv - 0.5) ** 2 < 0.12)
    material = np.full(len(building), _WALL, dtype=np.int64)
    material[upper & (((pilasters > 0) & (u_frac < 0.1)) | ((bands > 0) & (v_frac < 0.12)))] = _ACCENT
    material[window] = _GLASS
    material[sign] = np.where(_hash_unit(building[sign], np.floor(s[sign] / 5.0), 3) < 0.5, _SIGN, _BOARD_A)
    material[shop_front] = _SHOPFRONT
    material[on_board] = np.where(board_b[on_board], _BOARD_B, _BOARD_A)

    factor = np.float32(0.9) + np.float32(0.1) * _hash_unit(building, np.floor(s * 2.0), np.floor(z * 3.0))
    factor[(z > height - 1.2) & (z <= height)] *= np.float32(0.65)
    factor[window] *= np.float32(0.75) + np.float32(0.5) * _hash_unit(building[window], column[window], storey[window])
    sun_term = np.cos(np.radians(normal_azimuth - views.sun_azimuth[view]).astype(np.float32))
    factor *= (views.ambient[view] + views.diffuse[view] * np.maximum(sun_term, 0.0)).astype(np.float32)
    colour = city.colours[building, material] * factor[:, None]

    glowing = np.flatnonzero(views.night[view] & (window | shop_front))
    if len(glowing):
        lit = _hash_unit(building[glowing], column[glowing], storey[glowing], views.seed[view[glowing]]) < 0.4
        glowing = glowing[lit]
        glow = np.float32(0.7) + np.float32(0.3) * _hash_unit(building[glowing], column[glowing], storey[glowing])
        colour[glowing] = _LIT_WINDOW_RGB * glow[:, None]
    return colour


def _nearest_distance(sorted_lines: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Distance from each value to the nearest of ``sorted_lines``."""
    index = np.searchsorted(sorted_lines, values)
    below = sorted_lines[np.clip(index - 1, 0, len(sorted_lines) - 1)]
    above = sorted_lines[np.clip(index, 0, len(sorted_lines) - 1)]
    return np.minimum(np.abs(values - below), np.abs(values - above))


def _ground_colour(city: City, views: Views, view: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Colours ``[P, 3]`` of ground points ``(gx, gy)`` seen by ``view``: road, lane marks,
    zebra crossings, pavement; snow whitens it."""
    half = city.street_width / 2
    to_ns = _nearest_distance(city.street_x, gx)  # distance to a north-south street's centre line
    to_ew = _nearest_distance(city.street_y, gy)
    on_ns, on_ew = to_ns < half, to_ew < half
    material = np.where(on_ns | on_ew, _ROAD, _PAVEMENT)
    material[(to_ns < 0.12) & (np.mod(gy, 6.0) < 3.0) & (to_ew > half + 3.0)] = _LANE_MARK
    material[(to_ew < 0.12) & (np.mod(gx, 6.0) < 3.0) & (to_ns > half + 3.0)] = _LANE_MARK
    material[on_ns & (to_ew >= half) & (to_ew < half + 3.0) & (np.mod(gx, 1.2) < 0.6)] = _ZEBRA
    material[on_ew & (to_ns >= half) & (to_ns < half + 3.0) & (np.mod(gy, 1.2) < 0.6)] = _ZEBRA
    factor = np.float32(0.92) + np.float32(0.08) * _hash_unit(np.floor(gx * 2.0), np.floor(gy * 2.0))
    colour = _GROUND_RGB[material] * factor[:, None]
    snow = (views.snow[view] * np.where(material == _ROAD, 0.55, 0.9)).astype(np.float32)[:, None]
    colour = colour * (1 - snow) + np.float32(0.93) * snow
    light = (views.ambient[view] + 0.6 * views.diffuse[view]).astype(np.float32)
    return colour * light[:, None]


def render_views(city: City, views: Views, image_size: int) -> np.ndarray:
    """Render ``views`` of ``city`` as float images ``[N, H, W, 3]`` in [0, 1] (H = W = image_size),
    before occluders and camera response (see :func:`finish_images`).

    Each image column is a ray cast over the occupancy grid; the exact entry point into each
    building along the ray comes from a slab test on its footprint. A pixel row with
    elevation slope ``m`` shows the nearest building whose top slope ``(h - cam_h) / t`` is at
    least ``m`` (found with one ``searchsorted`` on the running maximum along the ray), the
    ground at ``t = cam_h / -m`` when that comes first, else the sky.
    """
    count, width, height = len(views), image_size, image_size
    steps = len(_MARCH)
    focal = (width / 2) / np.tan(np.radians(views.fov) / 2)  # [B]
    columns = np.arange(width) + 0.5 - width / 2
    ray_heading = views.heading[:, None] + np.degrees(np.arctan(columns[None, :] / focal[:, None]))  # [B, W]
    dir_x, dir_y = _direction(ray_heading)

    # march every ray over the occupancy grid: building id at each step [B, W, K]
    cells_x = ((views.x[:, None, None] + dir_x[..., None] * _MARCH) / city.cell_m).astype(np.float32)
    cells_y = ((views.y[:, None, None] + dir_y[..., None] * _MARCH) / city.cell_m).astype(np.float32)
    grid_y, grid_x = city.occupancy.shape
    inside = (cells_x >= 0) & (cells_x < grid_x) & (cells_y >= 0) & (cells_y < grid_y)
    flat_cell = (np.clip(cells_y.astype(np.int32), 0, grid_y - 1) * grid_x
                 + np.clip(cells_x.astype(np.int32), 0, grid_x - 1))
    ids = np.where(inside, city.occupancy.ravel()[flat_cell], -1)
    entering = ids >= 0
    entering[..., 1:] &= ids[..., 1:] != ids[..., :-1]
    entry_b, entry_w, entry_k = np.nonzero(entering)
    building = ids[entry_b, entry_w, entry_k]

    # exact entry into the building's footprint (slab test)
    rx, ry = dir_x[entry_b, entry_w], dir_y[entry_b, entry_w]
    safe_x = np.where(np.abs(rx) < 1e-9, 1e-9, rx)
    safe_y = np.where(np.abs(ry) < 1e-9, 1e-9, ry)
    cx, cy = views.x[entry_b], views.y[entry_b]
    rect = city.rects[building]
    tx = np.minimum((rect[:, 0] - cx) / safe_x, (rect[:, 2] - cx) / safe_x)
    ty = np.minimum((rect[:, 1] - cy) / safe_y, (rect[:, 3] - cy) / safe_y)
    x_face = tx > ty  # the ray crosses a wall facing east or west
    t_entry = np.clip(np.maximum(tx, ty), 0.3, None)
    along = np.where(x_face, cy + ry * t_entry, cx + rx * t_entry).astype(np.float32)  # position along the wall
    normal = np.where(x_face, np.where(rx > 0, 270.0, 90.0), np.where(ry > 0, 180.0, 0.0)).astype(np.float32)
    top_slope = (city.heights[building] - views.camera_height[entry_b]) / t_entry
    t_entry = t_entry.astype(np.float32)

    # running maximum of the top slope along each ray; one searchsorted finds, for every
    # pixel row, the first step whose building reaches above that row
    slope = np.full((count, width, steps), -_SLOPE_LIMIT)
    slope[entry_b, entry_w, entry_k] = np.clip(top_slope, -_SLOPE_LIMIT, _SLOPE_LIMIT)
    running = np.maximum.accumulate(slope, axis=-1)
    entry_index = np.zeros((count, width, steps), dtype=np.int64)
    entry_index[entry_b, entry_w, entry_k] = np.arange(len(building))
    rows = np.arange(height) + 0.5
    elevation = np.radians(views.pitch)[:, None] + np.arctan((height / 2 - rows)[None, :] / focal[:, None])
    pixel_slope = np.tan(np.clip(elevation, -1.45, 1.45))  # [B, H]
    lane = np.arange(count * width, dtype=np.float64).reshape(count, width, 1) * (4 * _SLOPE_LIMIT)
    found = np.searchsorted((running + lane).ravel(), (pixel_slope[:, None, :] + lane).ravel())
    k_hit = found.reshape(count, width, height) - (np.arange(count * width) * steps).reshape(count, width, 1)
    hit = k_hit < steps
    hit_entry = np.take_along_axis(entry_index, np.minimum(k_hit, steps - 1), axis=-1)  # [B, W, H]
    m = np.broadcast_to(pixel_slope.astype(np.float32)[:, None, :], (count, width, height))
    cam_h = views.camera_height.astype(np.float32)[:, None, None]
    hit_t = t_entry[hit_entry] if len(building) else np.zeros((count, width, height), dtype=np.float32)
    facade = hit & (cam_h + m * hit_t >= 0.0)
    ground = ~facade & (m < 0)
    sky = ~facade & ~ground

    image = np.empty((count, width, height, 3), dtype=np.float32)
    view_of = np.broadcast_to(np.arange(count)[:, None, None], (count, width, height))
    horizon_rgb = views.sky_horizon.astype(np.float32)
    zenith_rgb = views.sky_zenith.astype(np.float32)
    fog_m = views.fog_m.astype(np.float32)
    camera_height = views.camera_height.astype(np.float32)
    # sky: gradient from the horizon colour to the zenith colour
    sv = view_of[sky]
    blend = np.clip(m[sky] * 1.5, 0.0, 1.0)[:, None]
    image[sky] = horizon_rgb[sv] * (1 - blend) + zenith_rgb[sv] * blend
    # facades, fading into the horizon colour with distance
    fv = view_of[facade]
    fe = hit_entry[facade]
    ft = t_entry[fe]
    colour = _facade_colour(city, views, fv, building[fe], along[fe], camera_height[fv] + m[facade] * ft, normal[fe])
    fog = (1 - np.exp(-ft / fog_m[fv]))[:, None]
    image[facade] = colour + (horizon_rgb[fv] - colour) * fog
    # ground
    gv = view_of[ground]
    gt = camera_height[gv] / -m[ground]
    gw = np.broadcast_to(np.arange(width)[None, :, None], (count, width, height))[ground]
    gx = (views.x[gv] + dir_x[gv, gw] * gt).astype(np.float32)
    gy = (views.y[gv] + dir_y[gv, gw] * gt).astype(np.float32)
    colour = _ground_colour(city, views, gv, gx, gy)
    fog = (1 - np.exp(-gt / fog_m[gv]))[:, None]
    image[ground] = colour + (horizon_rgb[gv] - colour) * fog
    return image.transpose(0, 2, 1, 3)  # [B, H, W, 3]


def _draw_occluders(image: np.ndarray, rng: np.random.Generator, rate: float, snow: float,
                    yy: np.ndarray, xx: np.ndarray) -> None:
    """Paint random cars, pedestrians, trees and poles on one float image ``[H, W, 3]`` in
    place; ``yy``, ``xx`` ``[H, W]`` are the pixel rows and columns."""
    height, width = image.shape[:2]
    for _ in range(int(rng.poisson(rate))):
        kind = rng.choice(4, p=[0.35, 0.3, 0.2, 0.15])
        cx = rng.uniform(0, width)
        if kind == 0:  # car: body, window band, two wheels
            w, h = rng.uniform(0.2, 0.5) * width, rng.uniform(0.1, 0.2) * height
            bottom = rng.uniform(0.78, 1.05) * height
            body = (np.abs(xx - cx) < w / 2) & (yy > bottom - h) & (yy < bottom - 0.15 * h)
            hue, saturation, value = rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.15, 0.9)
            image[body] = _hsv_to_rgb(np.array(hue), np.array(saturation), np.array(value))
            glass = (np.abs(xx - cx) < w * 0.35) & (yy > bottom - h) & (yy < bottom - 0.65 * h)
            image[glass] = [0.12, 0.14, 0.18]
            for side in (-0.3, 0.3):
                wheel = ((xx - cx - side * w) ** 2 + (yy - bottom + 0.15 * h) ** 2) < (0.14 * h + 1) ** 2
                image[wheel] = [0.05, 0.05, 0.05]
        elif kind == 1:  # pedestrian: body and head
            w, h = rng.uniform(0.025, 0.06) * width, rng.uniform(0.15, 0.35) * height
            bottom = rng.uniform(0.7, 1.0) * height
            body = (np.abs(xx - cx) < w / 2) & (yy > bottom - 0.85 * h) & (yy < bottom)
            image[body] = rng.uniform(0.05, 0.8, 3)
            head = ((xx - cx) ** 2 + (yy - bottom + 0.92 * h) ** 2) < (0.6 * w) ** 2
            image[head] = np.array([0.75, 0.58, 0.45]) * rng.uniform(0.5, 1.1)
        elif kind == 2:  # tree: trunk and crown (bare grey-brown in snow)
            radius = rng.uniform(0.08, 0.2) * width
            cy = rng.uniform(0.2, 0.55) * height
            trunk = (np.abs(xx - cx) < 0.1 * radius) & (yy > cy) & (yy < rng.uniform(0.75, 1.0) * height)
            image[trunk] = [0.3, 0.22, 0.15]
            crown = ((xx - cx) ** 2 + ((yy - cy) * 1.2) ** 2) < radius**2
            leaves = np.array([0.45, 0.4, 0.35]) if snow > 0.3 else _hsv_to_rgb(
                np.array(rng.uniform(0.2, 0.38)), np.array(rng.uniform(0.4, 0.8)), np.array(rng.uniform(0.25, 0.6)))
            speckle = _hash_unit(np.floor(xx / 2), np.floor(yy / 2), int(rng.integers(1 << 20)))
            image[crown] = leaves * (0.7 + 0.6 * speckle[crown])[:, None]
        else:  # pole with a sign
            top = rng.uniform(0.1, 0.5) * height
            pole = (np.abs(xx - cx) < rng.uniform(0.6, 1.5)) & (yy > top)
            image[pole] = [0.35, 0.36, 0.38]
            sign = (np.abs(xx - cx) < 0.05 * width) & (np.abs(yy - top - 0.04 * height) < 0.04 * height)
            image[sign] = rng.uniform(0.1, 1.0, 3)


def finish_images(images: np.ndarray, views: Views) -> np.ndarray:
    """Occluders, colour transform, gamma and sensor noise: ``[N, H, W, 3]`` float -> uint8."""
    out = np.empty(images.shape, dtype=np.uint8)
    yy, xx = np.mgrid[0:images.shape[1], 0:images.shape[2]].astype(np.float32)
    for index in range(len(views)):
        rng = np.random.default_rng(int(views.seed[index]))
        image = images[index].copy()
        _draw_occluders(image, rng, float(views.occluder_rate[index]), float(views.snow[index]), yy, xx)
        matrix = views.colour_matrix[index].astype(np.float32)
        image = image[..., 0:1] * matrix[:, 0] + image[..., 1:2] * matrix[:, 1] + image[..., 2:3] * matrix[:, 2]
        image = np.clip(image, 0.0, 1.0) ** np.float32(views.gamma[index])
        noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(views.noise_sigma[index])
        out[index] = np.clip(np.rint(image * 255.0 + noise), 0, 255).astype(np.uint8)
    return out


# ------------------------------------------------------------------------------------------
# Render jobs
# ------------------------------------------------------------------------------------------

_CHUNK = 32  # views rendered together (numpy arrays of B x W x K ray steps)


@dataclass(frozen=True)
class RenderJob:
    """Images of one city to render and where to save them (one path per view)."""

    city: City
    views: Views
    paths: tuple[Path, ...]


def _run_job(job: RenderJob, image_size: int) -> int:
    """Render and save one job's images; returns how many were written."""
    for start in range(0, len(job.views), _CHUNK):
        chunk = job.views.take(slice(start, start + _CHUNK))
        pixels = finish_images(render_views(job.city, chunk, image_size), chunk)
        for offset, array in enumerate(pixels):
            path = job.paths[start + offset]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path, format="JPEG", quality=JPEG_QUALITY)
    return len(job.views)


def _split_jobs(jobs: Sequence[RenderJob], max_views: int) -> list[RenderJob]:
    """The same work in jobs of at most ``max_views`` views (units of work for the process pool)."""
    pieces: list[RenderJob] = []
    for job in jobs:
        for start in range(0, len(job.views), max_views):
            stop = start + max_views
            pieces.append(RenderJob(job.city, job.views.take(slice(start, stop)), job.paths[start:stop]))
    return pieces


def render_jobs(jobs: Sequence[RenderJob], image_size: int, workers: int = 1, progress: bool = True) -> int:
    """Render and save every job's images, with ``workers`` processes; returns the image count."""
    pieces = _split_jobs(jobs, 4 * _CHUNK)
    total = sum(len(piece.views) for piece in pieces)
    with tqdm(total=total, desc="rendering toy world", unit="img", disable=not progress) as bar:
        if workers <= 1:
            for piece in pieces:
                bar.update(_run_job(piece, image_size))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for written in pool.map(_run_job, pieces, [image_size] * len(pieces)):
                    bar.update(written)
    return total


# ------------------------------------------------------------------------------------------
# Geography: regions on the global plane, UTM and lat/lon
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """One city of the toy world: where it lies on the global plane and on the Earth.

    ``origin`` is the global position (m) of its local (0, 0); UTM and lat/lon of a local
    point are the region's reference values plus the local offset (a flat-Earth
    approximation, fine over a few hundred metres).
    """

    name: str
    origin: tuple[float, float]
    size: tuple[float, float]
    utm_origin: tuple[float, float] = (500000.0, 4000000.0)
    utm_zone: str = "30"
    utm_letter: str = "T"
    latlon_origin: tuple[float, float] = (0.0, 0.0)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.origin[0], self.origin[1], self.origin[0] + self.size[0], self.origin[1] + self.size[1])

    def utm(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """UTM easting, northing of local points."""
        return self.utm_origin[0] + np.asarray(x), self.utm_origin[1] + np.asarray(y)

    def latlon(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latitude, longitude (deg) of local points."""
        lat0, lon0 = self.latlon_origin
        lat = lat0 + np.asarray(y) / 111_320.0
        lon = lon0 + np.asarray(x) / (111_320.0 * math.cos(math.radians(lat0)))
        return lat, lon


_MSLS_VAL_GEO: dict[str, tuple[tuple[float, float], str, str, tuple[float, float]]] = {
    "cph": ((723000.0, 6175000.0), "33", "U", (55.6761, 12.5683)),
    "sf": ((549000.0, 4180000.0), "10", "S", (37.7749, -122.4194)),
}
_PITTS_GEO = ((584000.0, 4477000.0), "17", "T", (40.4406, -79.9959))
_GMBERTON_GEO = ((440000.0, 4474000.0), "30", "T", (40.4168, -3.7038))

_TRAIN_ROW_Y = 0.0  # GSV-Cities training regions lie along this row of the global plane ...
_EVAL_ROW_Y = 50_000.0  # ... and every evaluation region along this one, far away
_REGION_GAP = 5_000.0


def _layout_regions(specs: Sequence[tuple[str, float, float, dict]], row_y: float) -> list[Region]:
    """Place regions side by side along a row of the global plane, ``_REGION_GAP`` apart."""
    regions = []
    x = 0.0
    for name, size_x, size_y, geo in specs:
        regions.append(Region(name=name, origin=(x, row_y), size=(size_x, size_y), **geo))
        x += size_x + _REGION_GAP
    return regions


# ------------------------------------------------------------------------------------------
# Output helpers
# ------------------------------------------------------------------------------------------


def _write_csv(frame: pd.DataFrame, path: Path, index: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=index, lineterminator="\n")


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=array.dtype == object)


def _object_array(items: Sequence[object]) -> np.ndarray:
    """A 1-d object array holding ``items`` as they are (arrays stay arrays)."""
    array = np.empty(len(items), dtype=object)
    for index, item in enumerate(items):
        array[index] = item
    return array


def positives_within(query_xy: np.ndarray, db_xy: np.ndarray, radius: float = POSITIVE_RADIUS_M) -> list[np.ndarray]:
    """For each query ``[M, 2]``, the sorted int64 indices of database points ``[N, 2]`` within
    ``radius`` metres (inclusive, as ``NearestNeighbors.radius_neighbors``)."""
    distance = np.sqrt(((query_xy[:, None, :] - db_xy[None, :, :]) ** 2).sum(axis=2))
    return [np.flatnonzero(row <= radius).astype(np.int64) for row in distance]


_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: dataloaders.toy_world"


def _save_mat(path: Path, content: dict[str, object]) -> None:
    """``scipy.io.savemat`` with a fixed header text (scipy writes the creation time there,
    which would make two runs differ)."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, content, format="5")
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------
# Parts of the world
# ------------------------------------------------------------------------------------------


@dataclass
class _Part:
    """What one part of the world adds: images to render, files to write, counts to report."""

    jobs: list[RenderJob] = field(default_factory=list)
    tables: list[tuple[Path, pd.DataFrame, bool]] = field(default_factory=list)  # CSV path, rows, index column
    arrays: list[tuple[Path, np.ndarray]] = field(default_factory=list)  # .npy files
    mats: list[tuple[Path, dict[str, object]]] = field(default_factory=list)  # .mat files
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def write_files(self) -> None:
        for path, frame, index in self.tables:
            _write_csv(frame, path, index=index)
        for path, array in self.arrays:
            _save_npy(path, array)
        for path, content in self.mats:
            _save_mat(path, content)


def _is_winter(month: np.ndarray) -> np.ndarray:
    """Months that may show snow (December to February)."""
    return np.isin(month, (12, 1, 2))


def _gsv_part(root: Path, seed: int, size: ToyWorldSize, regions: Sequence[Region], cities: Sequence[City]) -> _Part:
    """GSV-Cities: ``Dataframes/<City>.csv`` and ``Images/<city_id>/<name>.jpg``."""
    part = _Part()
    base = root / "gsv-cities"
    total_places = total_images = 0
    for city_index, (name, region, city) in enumerate(zip(size.gsv_cities, regions, cities)):
        rng = _rng(seed, _STREAM_GSV, city_index)
        points = spaced_street_points(city, rng, size.gsv_places_per_city, min_spacing_m=12.0)
        low, high = size.gsv_images_per_place
        per_place = rng.integers(low, high + 1, len(points))
        offsets = np.array([0.0, 180.0, 90.0, -90.0, 45.0, -45.0, 135.0, -135.0])
        base_heading = np.array([p.street_heading for p in points]) + offsets[rng.integers(0, 8, len(points))]
        place_index = np.repeat(np.arange(len(points)), per_place)
        count = len(place_index)
        street = np.array([p.street_heading for p in points])[place_index]
        along_x, along_y = _direction(street)
        shift = rng.uniform(-4.0, 4.0, count)
        lateral = rng.uniform(-1.0, 1.0, count)
        x = np.array([p.x for p in points])[place_index] + along_x * shift + along_y * lateral
        y = np.array([p.y for p in points])[place_index] + along_y * shift - along_x * lateral
        heading = base_heading[place_index] + rng.normal(0.0, 8.0, count)
        year = rng.integers(2007, 2022, count)
        month = rng.integers(1, 13, count)
        snow = _is_winter(month) * rng.uniform(0.0, 1.0, count) * (rng.uniform(size=count) < 0.5)
        views = sample_views(rng, x, y, heading, TRAIN_LOOK, fov=rng.uniform(70.0, 100.0, count), snow=snow)
        lat, lon = region.latlon(x, y)
        # lat/lon written as text with 7 decimals: trailing zeros do not survive a float round trip
        lat_text = [f"{value:.7f}" for value in lat]
        lon_text = [f"{value:.7f}" for value in lon]
        place_ids = place_index  # place ids 0..P-1 within a city, as in the published CSVs
        northdeg = np.rint(views.heading).astype(int) % 360
        panoids = _random_keys(rng, count)
        frame = pd.DataFrame({
            "place_id": place_ids, "year": year, "month": month, "northdeg": northdeg,
            "city_id": name, "lat": lat_text, "lon": lon_text, "panoid": panoids,
        })
        paths = tuple(
            base / "Images" / name / f"{name}_{pid:07d}_{yr:04d}_{mo:02d}_{deg:03d}_{la}_{lo}_{pano}.jpg"
            for pid, yr, mo, deg, la, lo, pano in zip(place_ids, year, month, northdeg, lat_text, lon_text, panoids)
        )
        part.jobs.append(RenderJob(city, views, paths))
        part.tables.append((base / "Dataframes" / f"{name}.csv", frame, False))
        part.counts[f"gsv_{name}"] = {"places": len(points), "images": count}
        total_places += len(points)
        total_images += count
    part.counts["gsv_total"] = {"places": total_places, "images": total_images}
    return part


def _msls_frames(rng: np.random.Generator, route: Route, arc_lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames at ``arc_lengths`` (m, jittered by up to 0.5 m) along ``route``, in the right lane."""
    arc = np.clip(arc_lengths + rng.uniform(-0.5, 0.5, len(arc_lengths)), 0.0, route.length - 0.01)
    return route.sample(arc, lane_offset_m=rng.uniform(2.0, 3.5))


def _msls_tables(rng: np.random.Generator, region: Region, keys: list[str], sequence: np.ndarray, xy: np.ndarray,
                 heading: np.ndarray, night: np.ndarray, pano: np.ndarray, in_all: np.ndarray,
                 day_ms: int) -> dict[str, pd.DataFrame]:
    """The four MSLS ``train_val`` CSVs of one city's database or query side."""
    count = len(keys)
    frame_number = np.zeros(count, dtype=int)
    for seq in np.unique(sequence):
        members = np.flatnonzero(sequence == seq)
        frame_number[members] = np.arange(len(members))
    sequence_keys = _random_keys(rng, int(sequence.max()) + 1)
    easting, northing = region.utm(xy[:, 0], xy[:, 1])
    lat, lon = region.latlon(xy[:, 0], xy[:, 1])
    subtasks = {name: (in_all if name == "all" else in_all & (rng.uniform(size=count) < 0.3)) for name in MSLS_SUBTASKS}
    return {
        "seq_info": pd.DataFrame({"key": keys, "sequence_key": [sequence_keys[s] for s in sequence],
                                  "frame_number": frame_number}),
        "subtask_index": pd.DataFrame({"key": keys, **subtasks}),
        "raw": pd.DataFrame({"key": keys, "lon": np.round(lon, 7), "lat": np.round(lat, 7),
                             "ca": np.round(heading, 2),
                             "captured_at": day_ms + sequence * 3_600_000 + frame_number * 1000, "pano": pano}),
        "postprocessed": pd.DataFrame({
            "key": keys, "easting": np.round(easting, 3), "northing": np.round(northing, 3),
            "unique_cluster": (np.floor(xy[:, 0] / 50.0) * 100 + np.floor(xy[:, 1] / 50.0)).astype(int),
            "control_panel": False, "night": night, "view_direction": "Forward"}),
    }


def _msls_side(rng: np.random.Generator, city: City, region: Region, routes: Sequence[Route],
               arc_lengths: Sequence[np.ndarray], look: Appearance, folder: Path, day_ms: int,
               exclusion_rate: float) -> tuple[RenderJob, dict[str, pd.DataFrame], np.ndarray]:
    """Frames of one side (database or query) of an MSLS ``train_val`` city, one sequence per
    route at the given distances along it: its render job, CSVs and the keep mask of the val
    protocol (``subtask_index.all`` and not a panorama)."""
    xy_parts, heading_parts, sequence_parts = [], [], []
    for seq, (route, arcs) in enumerate(zip(routes, arc_lengths)):
        count = len(arcs)
        xy, heading = _msls_frames(rng, route, arcs)
        xy_parts.append(xy)
        heading_parts.append(heading + rng.normal(0.0, 4.0, count))
        sequence_parts.append(np.full(count, seq))
    xy = np.concatenate(xy_parts)
    heading = np.concatenate(heading_parts)
    sequence = np.concatenate(sequence_parts)
    count = len(xy)
    # a few panoramas, and as many other rows left out of subtask `all` (at least one each)
    excluded = rng.choice(count, 2 * max(1, round(exclusion_rate * count)), replace=False)
    pano = np.zeros(count, dtype=bool)
    pano[excluded[: len(excluded) // 2]] = True
    in_all = np.ones(count, dtype=bool)
    in_all[excluded[len(excluded) // 2:]] = False
    fov = np.where(pano, 150.0, rng.uniform(80.0, 100.0, count))
    views = sample_views(rng, xy[:, 0], xy[:, 1], heading, look, fov=fov, pitch=rng.uniform(-4.0, 2.0, count))
    keys = _random_keys(rng, count)
    tables = _msls_tables(rng, region, keys, sequence, xy, heading, views.night, pano, in_all, day_ms)
    paths = tuple(folder / "images" / f"{key}.jpg" for key in keys)
    return RenderJob(city, views, paths), tables, in_all & ~pano


def _msls_val_part(root: Path, seed: int, size: ToyWorldSize, regions: Sequence[Region],
                   cities: Sequence[City]) -> _Part:
    """MSLS ``train_val/{cph,sf}`` raw tree and ``msls_val_*`` index files."""
    part = _Part()
    base = root / "mapillary"
    db_images: list[str] = []
    q_images: list[str] = []
    q_idx: list[int] = []
    p_idx: list[np.ndarray] = []
    spacing_db, spacing_q = 5.0, 6.0
    for city_index, (name, region, city) in enumerate(zip(MSLS_VAL_CITIES, regions, cities)):
        rng = _rng(seed, _STREAM_MSLS_VAL, city_index)
        db_counts = [len(c) for c in np.array_split(np.arange(size.msls_val_db_per_city), 3)]
        q_counts = [len(c) for c in np.array_split(np.arange(size.msls_val_queries_per_city), 2)]
        routes = [random_route(city, rng, spacing_db * n + spacing_q * max(q_counts) + 80.0) for n in db_counts]
        db_arcs = [spacing_db * np.arange(n) for n in db_counts]
        db_job, db_tables, db_keep = _msls_side(
            rng, city, region, routes, db_arcs, DATABASE_LOOK,
            base / "train_val" / name / "database", 1_500_000_000_000, 0.05)
        # queries drive the first two database routes again; the second goes on 35 m and more
        # past the database's last frame for its last frames, which then have no positive
        # (the protocol drops them)
        overrun = max(1, q_counts[1] // 5)
        last_db = [spacing_db * (n - 1) for n in db_counts]
        start_0 = rng.uniform(0.0, max(last_db[0] - spacing_q * (q_counts[0] - 1), 0.0) + 1e-6)
        start_1 = max(0.0, last_db[1] - spacing_q * (q_counts[1] - overrun - 1))
        q_arcs = [start_0 + spacing_q * np.arange(q_counts[0]),
                  np.concatenate([start_1 + spacing_q * np.arange(q_counts[1] - overrun),
                                  last_db[1] + 35.0 + spacing_q * np.arange(overrun)])]
        q_job, q_tables, q_keep = _msls_side(
            rng, city, region, routes[:2], q_arcs, QUERY_LOOK,
            base / "train_val" / name / "query", 1_560_000_000_000, 0.05)
        for side, tables in (("database", db_tables), ("query", q_tables)):
            for table_name, table in tables.items():
                part.tables.append((base / "train_val" / name / side / f"{table_name}.csv", table, True))
        part.jobs += [db_job, q_job]

        db_frame, q_frame = db_tables["postprocessed"], q_tables["postprocessed"]
        db_xy = db_frame.loc[db_keep, ["easting", "northing"]].to_numpy()
        q_xy = q_frame.loc[q_keep, ["easting", "northing"]].to_numpy()
        offset_db, offset_q = len(db_images), len(q_images)
        db_images += [f"train_val/{name}/database/images/{k}.jpg" for k in db_frame.loc[db_keep, "key"]]
        q_images += [f"train_val/{name}/query/images/{k}.jpg" for k in q_frame.loc[q_keep, "key"]]
        for j, positives in enumerate(positives_within(q_xy, db_xy)):
            if len(positives):
                q_idx.append(offset_q + j)
                p_idx.append(positives + offset_db)
        part.counts[f"msls_val_{name}"] = {"database_rows": len(db_keep), "query_rows": len(q_keep),
                                           "database": int(db_keep.sum()), "queries": int(q_keep.sum())}
    index_dir = root / "datasets" / "msls_val"
    arrays = {
        "msls_val_dbImages.npy": np.array(db_images), "msls_val_qImages.npy": np.array(q_images),
        "msls_val_qIdx.npy": np.array(q_idx, dtype=np.int64), "msls_val_pIdx.npy": _object_array(p_idx),
    }
    part.arrays += [(index_dir / name, array) for name, array in arrays.items()]
    part.counts["msls_val"] = {"database": len(db_images), "queries": len(q_images),
                               "queries_with_positives": len(q_idx)}
    return part


def _msls_test_part(root: Path, seed: int, size: ToyWorldSize, regions: Sequence[Region],
                    cities: Sequence[City]) -> _Part:
    """MSLS ``test/<city>`` tree (images, ``seq_info.csv``, ``subtask_index.csv``) and ``msls_test_*``."""
    part = _Part()
    base = root / "mapillary"
    db_images: list[str] = []
    q_images: list[str] = []
    for city_index, (name, region, city) in enumerate(zip(MSLS_TEST_CITIES, regions, cities)):
        rng = _rng(seed, _STREAM_MSLS_TEST, city_index)
        n_db, n_q = size.msls_test_db_per_city, size.msls_test_queries_per_city
        route = random_route(city, rng, 5.0 * n_db + 10.0)
        sides = (("database", n_db, 5.0, DATABASE_LOOK), ("query", n_q, 5.0 * n_db / n_q, QUERY_LOOK))
        for side, count, spacing, look in sides:
            xy, heading = _msls_frames(rng, route, 1.0 + spacing * np.arange(count))
            views = sample_views(rng, xy[:, 0], xy[:, 1], heading + rng.normal(0, 4.0, count), look)
            keys = _random_keys(rng, count)
            folder = base / "test" / name / side
            part.jobs.append(RenderJob(city, views, tuple(folder / "images" / f"{k}.jpg" for k in keys)))
            seq_info = pd.DataFrame({"key": keys, "sequence_key": _random_keys(rng, 1) * count,
                                     "frame_number": np.arange(count)})
            subtasks = pd.DataFrame({"key": keys,
                                     **{t: (t == "all") | (rng.uniform(size=count) < 0.3) for t in MSLS_SUBTASKS}})
            part.tables += [(folder / "seq_info.csv", seq_info, True), (folder / "subtask_index.csv", subtasks, True)]
            target = db_images if side == "database" else q_images
            target += [f"test/{name}/{side}/images/{k}.jpg" for k in keys]
    index_dir = root / "datasets" / "msls_test"
    part.arrays += [(index_dir / "msls_test_dbImages.npy", _object_array(db_images)),
                    (index_dir / "msls_test_qImages.npy", _object_array(q_images))]
    part.counts["msls_test"] = {"database": len(db_images), "queries": len(q_images)}
    return part


def _pitts_views(rng: np.random.Generator, points: Sequence[StreetPoint], look: Appearance) -> Views:
    """24 views per place: pitch 1..2 x yaw 1..12 (30 degrees apart), in the published order."""
    count = len(points) * len(PITTS_PITCHES_DEG) * PITTS_YAWS
    base = rng.uniform(0.0, 30.0, len(points))
    place = np.repeat(np.arange(len(points)), len(PITTS_PITCHES_DEG) * PITTS_YAWS)
    pitch_index = np.tile(np.repeat(np.arange(len(PITTS_PITCHES_DEG)), PITTS_YAWS), len(points))
    yaw_index = np.tile(np.arange(PITTS_YAWS), len(points) * len(PITTS_PITCHES_DEG))
    x = np.array([p.x for p in points])[place]
    y = np.array([p.y for p in points])[place]
    heading = base[place] + 30.0 * yaw_index
    pitch = np.array(PITTS_PITCHES_DEG)[pitch_index] - 4.0  # the lower pitch looks level
    views = sample_views(rng, x, y, heading, look, pitch=pitch, fov=np.full(count, 60.0),
                         camera_height=np.full(count, 2.5))
    # one capture per place: the same light for its 24 views
    first = np.repeat(np.arange(len(points)) * len(PITTS_PITCHES_DEG) * PITTS_YAWS, len(PITTS_PITCHES_DEG) * PITTS_YAWS)
    light = ("sun_azimuth", "ambient", "diffuse", "sky_zenith", "sky_horizon", "fog_m", "night", "snow",
             "colour_matrix", "gamma")
    shared = {name: getattr(views, name)[first] for name in light}
    return replace(views, **shared)


def _pitts_names(numbers: Sequence[int]) -> list[str]:
    """``DDD/NNNNNN_pitchP_yawY.jpg`` for each place number, 24 per place in the published order."""
    return [f"{n // 1000:03d}/{n:06d}_pitch{p + 1}_yaw{y + 1}.jpg"
            for n in numbers for p in range(len(PITTS_PITCHES_DEG)) for y in range(PITTS_YAWS)]


def _pitts_part(root: Path, seed: int, size: ToyWorldSize, region: Region, city: City) -> _Part:
    """Pittsburgh images, ``datasets/*.mat`` and the ``pitts30k_{val,test}`` / ``pitts250k_test`` index files."""
    part = _Part()
    rng = _rng(seed, _STREAM_PITTS)
    base = root / "Pittsburgh"
    n_area, n_query = size.pitts_db_places_per_area, size.pitts_query_places_per_set
    # database places: two areas (west half for 30k val, east half for 30k test)
    candidates = spaced_street_points(city, rng, 6 * n_area, min_spacing_m=18.0)
    west = [p for p in candidates if p.x < city.size_x / 2][:n_area]
    east = [p for p in candidates if p.x >= city.size_x / 2][:n_area]
    while len(west) < n_area or len(east) < n_area:  # unlucky draw: top up each half
        point = random_street_point(city, rng)
        half = west if point.x < city.size_x / 2 else east
        if len(half) < n_area:
            half.append(point)
    db_points = west + east
    db_numbers = sorted(int(n) for n in rng.choice(3000, len(db_points), replace=False))
    db_views = _pitts_views(rng, db_points, DATABASE_LOOK)
    db_names = _pitts_names(db_numbers)
    part.jobs.append(RenderJob(city, db_views, tuple(base / name for name in db_names)))
    db_utm = np.stack(region.utm(db_views.x, db_views.y), axis=1)

    def near_database(area: Sequence[StreetPoint]) -> list[StreetPoint]:
        """Query places a few metres along the street from a random database place of ``area``."""
        chosen = []
        for _ in range(n_query):
            anchor = area[int(rng.integers(len(area)))]
            dx, dy = _direction(anchor.street_heading)
            shift = rng.choice([-1.0, 1.0]) * rng.uniform(3.0, 12.0)
            chosen.append(StreetPoint(anchor.x + dx * shift, anchor.y + dy * shift, anchor.street_heading))
        return chosen

    query_sets = {"pitts30k_val": (near_database(west), list(range(n_area))),
                  "pitts30k_test": (near_database(east), list(range(n_area, 2 * n_area))),
                  "pitts250k_test": (near_database(db_points), list(range(2 * n_area)))}
    all_numbers = rng.choice(3000, n_query * len(query_sets), replace=False)
    for set_index, (set_name, (q_points, db_places)) in enumerate(query_sets.items()):
        q_numbers = sorted(int(n) for n in all_numbers[set_index * n_query:(set_index + 1) * n_query])
        q_views = _pitts_views(rng, q_points, QUERY_LOOK)
        q_names = _pitts_names(q_numbers)
        part.jobs.append(RenderJob(city, q_views, tuple(base / "queries_real" / name for name in q_names)))
        q_utm = np.stack(region.utm(q_views.x, q_views.y), axis=1)
        db_rows = np.concatenate([np.arange(p * 24, (p + 1) * 24) for p in db_places])
        set_db_names = [db_names[i] for i in db_rows]
        set_db_utm = db_utm[db_rows]
        which = "val" if set_name.endswith("val") else "test"
        mat = {"dbStruct": {
            "whichSet": which,
            "dbImageFns": np.array(set_db_names, dtype=object).reshape(-1, 1),
            "utmDb": set_db_utm.T.copy(),
            "qImageFns": np.array(q_names, dtype=object).reshape(-1, 1),
            "utmQ": q_utm.T.copy(),
            "numImages": float(len(set_db_names)),
            "numQueries": float(len(q_names)),
            "posDistThr": POSITIVE_RADIUS_M,
            "posDistSqThr": POSITIVE_RADIUS_M**2,
            "nonTrivPosDistSqThr": 100.0,
        }}
        part.mats.append((base / "datasets" / f"{set_name}.mat", mat))
        index_dir = root / "datasets" / "Pittsburgh"
        arrays = {
            f"{set_name}_dbImages.npy": np.array(set_db_names),
            f"{set_name}_qImages.npy": np.array([f"queries_real/{n}" for n in q_names]),
            f"{set_name}_gt.npy": _object_array(positives_within(q_utm, set_db_utm)),
        }
        part.arrays += [(index_dir / name, array) for name, array in arrays.items()]
        part.counts[set_name] = {"database": len(set_db_names), "queries": len(q_names)}
    return part


def _vprbench_ground_truth(positives: Sequence[Sequence[int]]) -> np.ndarray:
    """VPR-Bench ``ground_truth_new.npy``: object ``[Nq, 2]`` rows ``[query_index, [ref indices]]``."""
    table = np.empty((len(positives), 2), dtype=object)
    for index, refs in enumerate(positives):
        table[index, 0] = index
        table[index, 1] = [int(r) for r in refs]
    return table


def _nordland_part(root: Path, seed: int, size: ToyWorldSize, city: City) -> _Part:
    """Nordland (VPR-Bench): a drive along one long street; summer database, winter queries."""
    part = _Part()
    rng = _rng(seed, _STREAM_NORDLAND)
    n_q = size.nordland_queries
    n_db = 10 * (n_q - 1) + 2
    spacing = 6.0
    street = city.street_y[np.argmin(np.abs(city.street_y - city.size_y / 2))]
    x = 40.0 + spacing * np.arange(n_db)
    y = np.full(n_db, street - 2.5)  # right lane when driving east
    heading = np.full(n_db, 90.0 + 25.0)  # forward, turned a little towards the right-hand facades
    summer = Appearance(strength=0.2, occluder_rate=0.3)
    winter = Appearance(strength=0.8, snow_probability=1.0, occluder_rate=0.3)
    db_views = sample_views(rng, x, y, heading, summer, pitch=np.zeros(n_db), fov=np.full(n_db, 80.0),
                            camera_height=np.full(n_db, 3.0), snow=np.zeros(n_db))
    frames = 10 * np.arange(n_q)
    q_views = sample_views(rng, x[frames] + rng.uniform(-0.5, 0.5, n_q), y[frames],
                           heading[frames] + rng.normal(0, 1.0, n_q), winter, pitch=np.zeros(n_q),
                           fov=np.full(n_q, 80.0), camera_height=np.full(n_q, 3.0), night=np.zeros(n_q, dtype=bool))
    db_names = [f"ref/{i:07d}.jpg" for i in range(n_db)]
    q_names = [f"query/{i:07d}.jpg" for i in range(n_q)]
    base = root / "Nordland"
    part.jobs.append(RenderJob(city, db_views, tuple(base / n for n in db_names)))
    part.jobs.append(RenderJob(city, q_views, tuple(base / n for n in q_names)))
    positives = [[r for r in (10 * i - 1, 10 * i, 10 * i + 1) if 0 <= r < n_db] for i in range(n_q)]
    index_dir = root / "datasets" / "Nordland"
    part.arrays += [
        (base / "ground_truth_new.npy", _vprbench_ground_truth(positives)),
        (index_dir / "Nordland_dbImages.npy", np.array(db_names)),
        (index_dir / "Nordland_qImages.npy", np.array(q_names)),
        (index_dir / "Nordland_gt.npy", _object_array([np.array(refs, dtype=np.int64) for refs in positives])),
    ]
    part.counts["nordland"] = {"database": n_db, "queries": n_q}
    return part


def _sped_part(root: Path, seed: int, size: ToyWorldSize, city: City) -> _Part:
    """SPED (VPR-Bench): fixed raised cameras seen at two different times."""
    part = _Part()
    rng = _rng(seed, _STREAM_SPED)
    n = size.sped_pairs
    points = spaced_street_points(city, rng, n, min_spacing_m=30.0)
    x = np.array([p.x for p in points])
    y = np.array([p.y for p in points])
    # looking along the street (not into the wall across it), slightly down
    street = np.array([p.street_heading for p in points])
    heading = street + rng.choice([0.0, 180.0], n) + rng.uniform(-35.0, 35.0, n)
    pitch = rng.uniform(-10.0, -3.0, n)
    fov = rng.uniform(60.0, 80.0, n)
    height = rng.uniform(3.5, 4.5, n)
    db_views = sample_views(rng, x, y, heading, DATABASE_LOOK, pitch=pitch, fov=fov, camera_height=height)
    q_views = sample_views(rng, x, y, heading, QUERY_LOOK, pitch=pitch, fov=fov, camera_height=height)
    db_names = [f"ref/{i:07d}.jpg" for i in range(n)]
    q_names = [f"query/{i:07d}.jpg" for i in range(n)]
    base = root / "SPEDTEST"
    part.jobs.append(RenderJob(city, db_views, tuple(base / p for p in db_names)))
    part.jobs.append(RenderJob(city, q_views, tuple(base / p for p in q_names)))
    index_dir = root / "datasets" / "SPED"
    part.arrays += [
        (base / "ground_truth_new.npy", _vprbench_ground_truth([[i] for i in range(n)])),
        (index_dir / "SPED_dbImages.npy", np.array(db_names)),
        (index_dir / "SPED_qImages.npy", np.array(q_names)),
        (index_dir / "SPED_gt.npy", np.arange(n, dtype=np.int64).reshape(n, 1)),
    ]
    part.counts["sped"] = {"database": n, "queries": n}
    return part


def gmberton_name(easting: float, northing: float, zone: str, letter: str, lat: float, lon: float,
                  pano_id: str, heading: float, timestamp: str) -> str:
    """``@east@north@zone@letter@lat@lon@pano@tile@heading@pitch@roll@height@timestamp@note@.jpg``."""
    return (f"@{easting:010.2f}@{northing:010.2f}@{zone}@{letter}@{lat:.5f}@{lon:.5f}@{pano_id}@@"
            f"{heading:.0f}@@@@{timestamp}@@.jpg")


def _gmberton_part(root: Path, seed: int, size: ToyWorldSize, region: Region, city: City) -> _Part:
    """A gmberton-format test set: ``images/test/{database,queries}`` with UTM in the names."""
    part = _Part()
    rng = _rng(seed, _STREAM_GMBERTON)
    n_db, n_q = size.gmberton_db, size.gmberton_queries
    points = spaced_street_points(city, rng, n_db, min_spacing_m=8.0)
    offsets = np.array([0.0, 180.0, 90.0, -90.0])
    db_x = np.array([p.x for p in points])
    db_y = np.array([p.y for p in points])
    street = np.array([p.street_heading for p in points])
    db_heading = street + offsets[rng.integers(0, 4, n_db)] + rng.normal(0.0, 5.0, n_db)
    db_views = sample_views(rng, db_x, db_y, db_heading, DATABASE_LOOK)
    anchor = rng.choice(n_db, n_q, replace=n_q > n_db)
    along_x, along_y = _direction(street[anchor])
    shift = rng.uniform(-8.0, 8.0, n_q)
    q_views = sample_views(rng, db_x[anchor] + along_x * shift, db_y[anchor] + along_y * shift,
                           db_heading[anchor] + rng.normal(0.0, 10.0, n_q), QUERY_LOOK)
    base = root / "gmberton" / GMBERTON_SET / "images" / "test"
    for side, views, year in (("database", db_views, 2013), ("queries", q_views, 2019)):
        easting, northing = region.utm(views.x, views.y)
        lat, lon = region.latlon(views.x, views.y)
        panos = _random_keys(rng, len(views))
        months = rng.integers(1, 13, len(views))
        names = [gmberton_name(e, n, region.utm_zone, region.utm_letter, la, lo, p, h, f"{year}{m:02d}")
                 for e, n, la, lo, p, h, m in zip(easting, northing, lat, lon, panos, views.heading, months)]
        part.jobs.append(RenderJob(city, views, tuple(base / side / name for name in names)))
    part.counts["gmberton_toy_city"] = {"database": n_db, "queries": n_q}
    return part


# ------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------


def _check_output_folder(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"toy world output {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        raise FileExistsError(f"toy world output folder {root} is not empty; choose a new or empty folder")


def plan_regions(size: ToyWorldSize) -> tuple[list[Region], dict[str, Region]]:
    """The training regions (one per GSV city) and the evaluation regions, by name."""
    train = _layout_regions([(name, 400.0, 400.0, {"latlon_origin": GSV_CITY_CENTRES[name]})
                             for name in size.gsv_cities], _TRAIN_ROW_Y)
    nordland_length = 6.0 * (10 * (size.nordland_queries - 1) + 2) + 80.0
    specs: list[tuple[str, float, float, dict]] = []
    for name in MSLS_VAL_CITIES:
        utm, zone, letter, latlon = _MSLS_VAL_GEO[name]
        specs.append((f"msls_val_{name}", 400.0, 400.0,
                      {"utm_origin": utm, "utm_zone": zone, "utm_letter": letter, "latlon_origin": latlon}))
    specs += [(f"msls_test_{name}", 240.0, 240.0, {}) for name in MSLS_TEST_CITIES]
    utm, zone, letter, latlon = _PITTS_GEO
    specs.append(("pittsburgh", 400.0, 400.0,
                  {"utm_origin": utm, "utm_zone": zone, "utm_letter": letter, "latlon_origin": latlon}))
    specs.append(("nordland", nordland_length, 140.0, {}))
    specs.append(("sped", 400.0, 400.0, {}))
    utm, zone, letter, latlon = _GMBERTON_GEO
    specs.append((f"gmberton_{GMBERTON_SET}", 400.0, 400.0,
                  {"utm_origin": utm, "utm_zone": zone, "utm_letter": letter, "latlon_origin": latlon}))
    evaluation = {region.name: region for region in _layout_regions(specs, _EVAL_ROW_Y)}
    return train, evaluation


def generate_toy_world(root: str | os.PathLike[str], seed: int = 0, size: str | ToyWorldSize = "default",
                       image_size: int = 112, workers: int = 1, progress: bool = True) -> ToyWorldSummary:
    """Generate the toy world under ``root`` (which must be absent or empty).

    Args:
        root: output folder.
        seed: any non-negative integer; the same seed gives byte-identical files.
        size: ``"small"`` (a few hundred images, for tests), ``"default"`` (a few thousand), or
            an explicit :class:`ToyWorldSize`.
        image_size: side of the square JPEG images, in pixels (at least 16).
        workers: rendering processes (the output does not depend on it).
        progress: show a tqdm progress bar.

    Raises:
        FileExistsError: ``root`` exists and is not an empty folder.
        ValueError: a bad ``seed``, ``size`` or ``image_size``.
    """
    root = Path(root)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    resolved = resolve_size(size)
    size_name = size if isinstance(size, str) else next(
        (name for name, preset in TOY_WORLD_SIZES.items() if preset == size), "custom")
    _check_output_folder(root)

    train_regions, eval_regions = plan_regions(resolved)

    def city_of(region: Region, index: int) -> City:
        return build_city(_rng(seed, _STREAM_CITY, index), region.size[0], region.size[1])

    gsv_cities = [city_of(region, i) for i, region in enumerate(train_regions)]
    eval_cities = {name: city_of(region, 1000 + i) for i, (name, region) in enumerate(eval_regions.items())}
    val_names = [f"msls_val_{c}" for c in MSLS_VAL_CITIES]
    test_names = [f"msls_test_{c}" for c in MSLS_TEST_CITIES]
    gmberton = f"gmberton_{GMBERTON_SET}"
    parts = [
        _gsv_part(root, seed, resolved, train_regions, gsv_cities),
        _msls_val_part(root, seed, resolved, [eval_regions[n] for n in val_names], [eval_cities[n] for n in val_names]),
        _msls_test_part(root, seed, resolved, [eval_regions[n] for n in test_names],
                        [eval_cities[n] for n in test_names]),
        _pitts_part(root, seed, resolved, eval_regions["pittsburgh"], eval_cities["pittsburgh"]),
        _nordland_part(root, seed, resolved, eval_cities["nordland"]),
        _sped_part(root, seed, resolved, eval_cities["sped"]),
        _gmberton_part(root, seed, resolved, eval_regions[gmberton], eval_cities[gmberton]),
    ]
    root.mkdir(parents=True, exist_ok=True)
    jobs = [job for part in parts for job in part.jobs]
    num_images = render_jobs(jobs, image_size, workers=workers, progress=progress)
    for part in parts:
        part.write_files()
    counts: dict[str, dict[str, int]] = {}
    for part in parts:
        counts.update(part.counts)
    regions = {f"gsv_{r.name}": r.box for r in train_regions} | {name: r.box for name, r in eval_regions.items()}
    summary = ToyWorldSummary(root=root, seed=seed, size=size_name, image_size=image_size,
                              version=TOY_WORLD_VERSION, num_images=num_images,
                              gsv_cities=tuple(resolved.gsv_cities), parameters=asdict(resolved), counts=counts,
                              regions=regions)
    (root / SUMMARY_FILE).write_text(summary.to_json())
    logger.info("toy world: %d images under %s", num_images, root)
    return summary
