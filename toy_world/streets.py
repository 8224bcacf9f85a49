"""Camera positions on a city's streets: single street points and drives (routes) along streets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .city import City


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


def heading_vector(heading_deg: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
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
