"""Pittsburgh part of the toy world: images, ``datasets/*.mat`` and the ``pitts*`` index files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from dataloaders.constants import POSITIVE_RADIUS_M
from dataloaders.geo import positives_within

from .city import City
from .files import object_array
from .jobs import RenderJob
from .layout import PITTS_PITCHES_DEG, PITTS_YAWS
from .part import DatasetPart
from .randomness import STREAM_PITTS, stream_rng
from .regions import Region
from .sizes import ToyWorldSize
from .streets import StreetPoint, heading_vector, random_street_point, spaced_street_points
from .views import DATABASE_LOOK, QUERY_LOOK, Appearance, Views, sample_views


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


def pitts_part(root: Path, seed: int, size: ToyWorldSize, region: Region, city: City) -> DatasetPart:
    """Pittsburgh images, ``datasets/*.mat`` and the ``pitts30k_{val,test}`` / ``pitts250k_test`` index files."""
    part = DatasetPart()
    rng = stream_rng(seed, STREAM_PITTS)
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
            dx, dy = heading_vector(anchor.street_heading)
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
            f"{set_name}_gt.npy": object_array(positives_within(set_db_utm, q_utm)),
        }
        part.arrays += [(index_dir / name, array) for name, array in arrays.items()]
        part.counts[set_name] = {"database": len(set_db_names), "queries": len(q_names)}
    return part
