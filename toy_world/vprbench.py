"""VPR-Bench parts of the toy world: Nordland and SPED, with ``ground_truth_new.npy`` and index files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .city import City
from .files import object_array
from .jobs import RenderJob
from .part import DatasetPart
from .randomness import STREAM_NORDLAND, STREAM_SPED, stream_rng
from .sizes import ToyWorldSize
from .streets import spaced_street_points
from .views import DATABASE_LOOK, QUERY_LOOK, Appearance, sample_views


def _vprbench_ground_truth(positives: Sequence[Sequence[int]]) -> np.ndarray:
    """VPR-Bench ``ground_truth_new.npy``: object ``[Nq, 2]`` rows ``[query_index, [ref indices]]``."""
    table = np.empty((len(positives), 2), dtype=object)
    for index, refs in enumerate(positives):
        table[index, 0] = index
        table[index, 1] = [int(r) for r in refs]
    return table


def nordland_part(root: Path, seed: int, size: ToyWorldSize, city: City) -> DatasetPart:
    """Nordland (VPR-Bench): a drive along one long street; summer database, winter queries."""
    part = DatasetPart()
    rng = stream_rng(seed, STREAM_NORDLAND)
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
        (index_dir / "Nordland_gt.npy", object_array([np.array(refs, dtype=np.int64) for refs in positives])),
    ]
    part.counts["nordland"] = {"database": n_db, "queries": n_q}
    return part


def sped_part(root: Path, seed: int, size: ToyWorldSize, city: City) -> DatasetPart:
    """SPED (VPR-Bench): fixed raised cameras seen at two different times."""
    part = DatasetPart()
    rng = stream_rng(seed, STREAM_SPED)
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
