"""MSLS training cities of the toy world: ``train_val/<city>`` in the raw layout, for CliqueMining.

Each city has a few routes; along each, clusters (``unique_cluster``) every
:data:`CLUSTER_SPACING_M` metres, each of a few images within a metre or two of its centre, split
between the database and the query side (other appearance). Neighbouring clusters are close
enough to look alike and to be joined by the 25 m threshold; a few images are panoramas (which
training drops). Drawn from its own random stream: the rest of the world does not change.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .city import City
from .part import DatasetPart
from .randomness import STREAM_MSLS_TRAIN, stream_rng
from .regions import Region
from .sizes import ToyWorldSize
from .streets import random_route
from .msls import _msls_side
from .views import DATABASE_LOOK, QUERY_LOOK

CLUSTER_SPACING_M = 8.0
"""Distance between neighbouring cluster centres along a route."""
CLUSTER_SPREAD_M = 1.5
"""Images of a cluster lie within this many metres of its centre, along the route."""


def msls_train_part(root: Path, seed: int, size: ToyWorldSize, regions: Sequence[Region],
                    cities: Sequence[City]) -> DatasetPart:
    """``mapillary/train_val/<city>/{database,query}`` of the MSLS training cities."""
    part = DatasetPart()
    base = root / "mapillary" / "train_val"
    low, high = size.msls_train_images_per_cluster
    for city_index, (region, city) in enumerate(zip(regions, cities)):
        name = region.name.removeprefix("msls_train_")
        rng = stream_rng(seed, STREAM_MSLS_TRAIN, city_index)
        clusters = size.msls_train_clusters_per_route
        routes = [random_route(city, rng, CLUSTER_SPACING_M * clusters + 20.0)
                  for _ in range(size.msls_train_routes_per_city)]
        cluster_ids = rng.choice(10 * clusters * len(routes), clusters * len(routes), replace=False)
        counts = rng.integers(low, high + 1, (len(routes), clusters))
        db_counts = (counts + 1) // 2
        for side, look, day_ms, side_counts in (("database", DATABASE_LOOK, 1_500_000_000_000, db_counts),
                                                ("query", QUERY_LOOK, 1_560_000_000_000, counts - db_counts)):
            arcs = [np.concatenate([CLUSTER_SPACING_M * c + 5.0 + rng.uniform(-CLUSTER_SPREAD_M, CLUSTER_SPREAD_M, n)
                                    for c, n in enumerate(route_counts)]) for route_counts in side_counts]
            frame_cluster = np.concatenate([np.repeat(cluster_ids[r * clusters:(r + 1) * clusters], route_counts)
                                            for r, route_counts in enumerate(side_counts)])
            job, tables, _ = _msls_side(rng, city, region, routes, arcs, look, base / name / side, day_ms, 0.05)
            tables["postprocessed"]["unique_cluster"] = frame_cluster
            part.jobs.append(job)
            part.tables += [(base / name / side / f"{table}.csv", frame, True) for table, frame in tables.items()]
        part.counts[f"msls_train_{name}"] = {"images": int(counts.sum()), "clusters": int(counts.size)}
    return part
