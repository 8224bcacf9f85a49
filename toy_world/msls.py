"""MSLS parts of the toy world: the raw ``train_val`` and ``test`` trees and the ``msls_*`` index files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dataloaders.constants import MSLS_TEST_CITIES, MSLS_VAL_CITIES
from dataloaders.geo import positives_within

from .city import City
from .files import object_array
from .jobs import RenderJob
from .layout import MSLS_SUBTASKS
from .part import DatasetPart
from .randomness import STREAM_MSLS_TEST, STREAM_MSLS_VAL, random_keys, stream_rng
from .regions import Region
from .sizes import ToyWorldSize
from .streets import Route, random_route
from .views import DATABASE_LOOK, QUERY_LOOK, Appearance, sample_views


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
    sequence_keys = random_keys(rng, int(sequence.max()) + 1)
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
    keys = random_keys(rng, count)
    tables = _msls_tables(rng, region, keys, sequence, xy, heading, views.night, pano, in_all, day_ms)
    paths = tuple(folder / "images" / f"{key}.jpg" for key in keys)
    return RenderJob(city, views, paths), tables, in_all & ~pano


def msls_val_part(root: Path, seed: int, size: ToyWorldSize, regions: Sequence[Region],
                   cities: Sequence[City]) -> DatasetPart:
    """MSLS ``train_val/{cph,sf}`` raw tree and ``msls_val_*`` index files."""
    part = DatasetPart()
    base = root / "mapillary"
    db_images: list[str] = []
    q_images: list[str] = []
    q_idx: list[int] = []
    p_idx: list[np.ndarray] = []
    spacing_db, spacing_q = 5.0, 6.0
    for city_index, (name, region, city) in enumerate(zip(MSLS_VAL_CITIES, regions, cities)):
        rng = stream_rng(seed, STREAM_MSLS_VAL, city_index)
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
        for j, positives in enumerate(positives_within(db_xy, q_xy)):
            if len(positives):
                q_idx.append(offset_q + j)
                p_idx.append(positives + offset_db)
        part.counts[f"msls_val_{name}"] = {"database_rows": len(db_keep), "query_rows": len(q_keep),
                                           "database": int(db_keep.sum()), "queries": int(q_keep.sum())}
    index_dir = root / "datasets" / "msls_val"
    arrays = {
        "msls_val_dbImages.npy": np.array(db_images), "msls_val_qImages.npy": np.array(q_images),
        "msls_val_qIdx.npy": np.array(q_idx, dtype=np.int64), "msls_val_pIdx.npy": object_array(p_idx),
    }
    part.arrays += [(index_dir / name, array) for name, array in arrays.items()]
    part.counts["msls_val"] = {"database": len(db_images), "queries": len(q_images),
                               "queries_with_positives": len(q_idx)}
    return part


def msls_test_part(root: Path, seed: int, size: ToyWorldSize, regions: Sequence[Region],
                    cities: Sequence[City]) -> DatasetPart:
    """MSLS ``test/<city>`` tree (images, ``seq_info.csv``, ``subtask_index.csv``) and ``msls_test_*``."""
    part = DatasetPart()
    base = root / "mapillary"
    db_images: list[str] = []
    q_images: list[str] = []
    for city_index, (name, region, city) in enumerate(zip(MSLS_TEST_CITIES, regions, cities)):
        rng = stream_rng(seed, STREAM_MSLS_TEST, city_index)
        n_db, n_q = size.msls_test_db_per_city, size.msls_test_queries_per_city
        route = random_route(city, rng, 5.0 * n_db + 10.0)
        sides = (("database", n_db, 5.0, DATABASE_LOOK), ("query", n_q, 5.0 * n_db / n_q, QUERY_LOOK))
        for side, count, spacing, look in sides:
            xy, heading = _msls_frames(rng, route, 1.0 + spacing * np.arange(count))
            views = sample_views(rng, xy[:, 0], xy[:, 1], heading + rng.normal(0, 4.0, count), look)
            keys = random_keys(rng, count)
            folder = base / "test" / name / side
            part.jobs.append(RenderJob(city, views, tuple(folder / "images" / f"{k}.jpg" for k in keys)))
            seq_info = pd.DataFrame({"key": keys, "sequence_key": random_keys(rng, 1) * count,
                                     "frame_number": np.arange(count)})
            subtasks = pd.DataFrame({"key": keys,
                                     **{t: (t == "all") | (rng.uniform(size=count) < 0.3) for t in MSLS_SUBTASKS}})
            part.tables += [(folder / "seq_info.csv", seq_info, True), (folder / "subtask_index.csv", subtasks, True)]
            target = db_images if side == "database" else q_images
            target += [f"test/{name}/{side}/images/{k}.jpg" for k in keys]
    index_dir = root / "datasets" / "msls_test"
    part.arrays += [(index_dir / "msls_test_dbImages.npy", object_array(db_images)),
                    (index_dir / "msls_test_qImages.npy", object_array(q_images))]
    part.counts["msls_test"] = {"database": len(db_images), "queries": len(q_images)}
    return part
