"""gmberton-format part of the toy world: ``images/test/{database,queries}`` with UTM in the names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .city import City
from .jobs import RenderJob
from .layout import GMBERTON_SET
from .part import DatasetPart
from .randomness import STREAM_GMBERTON, random_keys, stream_rng
from .regions import Region
from .sizes import ToyWorldSize
from .streets import heading_vector, spaced_street_points
from .views import DATABASE_LOOK, QUERY_LOOK, sample_views


def gmberton_name(easting: float, northing: float, zone: str, letter: str, lat: float, lon: float,
                  pano_id: str, heading: float, timestamp: str) -> str:
    """``@east@north@zone@letter@lat@lon@pano@tile@heading@pitch@roll@height@timestamp@note@.jpg``."""
    return (f"@{easting:010.2f}@{northing:010.2f}@{zone}@{letter}@{lat:.5f}@{lon:.5f}@{pano_id}@@"
            f"{heading:.0f}@@@@{timestamp}@@.jpg")


def gmberton_part(root: Path, seed: int, size: ToyWorldSize, region: Region, city: City) -> DatasetPart:
    """A gmberton-format test set: ``images/test/{database,queries}`` with UTM in the names."""
    part = DatasetPart()
    rng = stream_rng(seed, STREAM_GMBERTON)
    n_db, n_q = size.gmberton_db, size.gmberton_queries
    points = spaced_street_points(city, rng, n_db, min_spacing_m=8.0)
    offsets = np.array([0.0, 180.0, 90.0, -90.0])
    db_x = np.array([p.x for p in points])
    db_y = np.array([p.y for p in points])
    street = np.array([p.street_heading for p in points])
    db_heading = street + offsets[rng.integers(0, 4, n_db)] + rng.normal(0.0, 5.0, n_db)
    db_views = sample_views(rng, db_x, db_y, db_heading, DATABASE_LOOK)
    anchor = rng.choice(n_db, n_q, replace=n_q > n_db)
    along_x, along_y = heading_vector(street[anchor])
    shift = rng.uniform(-8.0, 8.0, n_q)
    q_views = sample_views(rng, db_x[anchor] + along_x * shift, db_y[anchor] + along_y * shift,
                           db_heading[anchor] + rng.normal(0.0, 10.0, n_q), QUERY_LOOK)
    base = root / "gmberton" / GMBERTON_SET / "images" / "test"
    for side, views, year in (("database", db_views, 2013), ("queries", q_views, 2019)):
        easting, northing = region.utm(views.x, views.y)
        lat, lon = region.latlon(views.x, views.y)
        panos = random_keys(rng, len(views))
        months = rng.integers(1, 13, len(views))
        names = [gmberton_name(e, n, region.utm_zone, region.utm_letter, la, lo, p, h, f"{year}{m:02d}")
                 for e, n, la, lo, p, h, m in zip(easting, northing, lat, lon, panos, views.heading, months)]
        part.jobs.append(RenderJob(city, views, tuple(base / side / name for name in names)))
    part.counts["gmberton_toy_city"] = {"database": n_db, "queries": n_q}
    return part
