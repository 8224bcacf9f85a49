"""GSV-Cities part of the toy world: ``Dataframes/<City>.csv`` and ``Images/<city>/<name>.jpg``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .city import City
from .jobs import RenderJob
from .part import DatasetPart
from .randomness import STREAM_GSV, random_keys, stream_rng
from .regions import Region
from .sizes import ToyWorldSize
from .streets import heading_vector, spaced_street_points
from .views import TRAIN_LOOK, sample_views


def _is_winter(month: np.ndarray) -> np.ndarray:
    """Months that may show snow (December to February)."""
    return np.isin(month, (12, 1, 2))


def gsv_part(root: Path, seed: int, size: ToyWorldSize, regions: Sequence[Region], cities: Sequence[City]) -> DatasetPart:
    """GSV-Cities: ``Dataframes/<City>.csv`` and ``Images/<city_id>/<name>.jpg``."""
    part = DatasetPart()
    base = root / "gsv-cities"
    total_places = total_images = 0
    for city_index, (name, region, city) in enumerate(zip(size.gsv_cities, regions, cities)):
        rng = stream_rng(seed, STREAM_GSV, city_index)
        points = spaced_street_points(city, rng, size.gsv_places_per_city, min_spacing_m=12.0)
        low, high = size.gsv_images_per_place
        per_place = rng.integers(low, high + 1, len(points))
        offsets = np.array([0.0, 180.0, 90.0, -90.0, 45.0, -45.0, 135.0, -135.0])
        base_heading = np.array([p.street_heading for p in points]) + offsets[rng.integers(0, 8, len(points))]
        place_index = np.repeat(np.arange(len(points)), per_place)
        count = len(place_index)
        street = np.array([p.street_heading for p in points])[place_index]
        along_x, along_y = heading_vector(street)
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
        panoids = random_keys(rng, count)
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
