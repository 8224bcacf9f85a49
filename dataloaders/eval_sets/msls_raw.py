"""Reader of the raw MSLS tree (``mapillary_sls``), applying the published val/test protocols.

Tree: ``<msls_root>/{train_val,test}/<city>/{database,query}/`` with ``images/<key>.jpg`` and
CSV files that all start with an unnamed index column: ``seq_info.csv``,
``subtask_index.csv`` and, for ``train_val``, ``raw.csv`` (``pano``) and ``postprocessed.csv``
(``easting``, ``northing``). Row ``i`` of every CSV of a folder describes the same image.

Val protocol (cities ``cph`` then ``sf``): per city keep the images whose
``subtask_index.all`` is true and that are not panoramas; a query's positives are the kept
database images within 25 m (UTM); every kept query is listed (``qImages``, 747) but only
those with a positive are evaluated (``qIdx``, 740); database indices are offset by the
earlier cities' kept counts. Test protocol: keep the images whose ``subtask_index.all`` is
true; no positions, no ground truth.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dataloaders.eval_sets.base import EvalSet, path_stems
from dataloaders.constants import MSLS_TEST_CITIES, MSLS_VAL_CITIES, POSITIVE_RADIUS_M
from dataloaders.geo import positives_within
from dataloaders.eval_sets.published_index import msls_cities
from dataloaders.msls_csv import msls_flags, msls_positions, read_msls_csv
from utils.errors import UserError, UserFileError

log = logging.getLogger(__name__)

VAL_SPLIT = "train_val"
TEST_SPLIT = "test"
SUBTASK = "all"

# CSVs whose ``key`` column names the images, in the order they are consulted
_KEY_SOURCES = ("seq_info.csv", "postprocessed.csv", "raw.csv", "subtask_index.csv")


@dataclass
class MslsCityFolder:
    """The images of one ``<split>/<city>/{database,query}`` folder kept by the protocol.

    Attributes:
        paths: kept images, relative to the MSLS root
            (``<split>/<city>/<database|query>/images/<key>.jpg``).
        utm: ``[K, 2]`` UTM easting, northing of the kept images (``None`` for test).
    """

    paths: list[str]
    utm: np.ndarray | None


@dataclass
class MslsValIndex:
    """MSLS val in the published layout.

    Attributes:
        db_images: kept database images of all cities.
        query_images: every kept query (with or without positives).
        query_idx: ``[Q]`` int64 indices into ``query_images`` of the evaluated queries.
        positives: per evaluated query, ascending int64 indices into ``db_images``.
    """

    db_images: list[str]
    query_images: list[str]
    query_idx: np.ndarray
    positives: list[np.ndarray]

    def to_eval_set(self, image_root: Path, name: str = "msls_val") -> EvalSet:
        """The evaluated queries as an ``EvalSet`` with city groups and stem keys."""
        query_paths = [self.query_images[i] for i in self.query_idx]
        return EvalSet(
            name,
            image_root,
            self.db_images,
            query_paths,
            ground_truth=self.positives,
            db_groups=msls_cities(self.db_images, image_root),
            query_groups=msls_cities(query_paths, image_root),
            query_keys=path_stems(query_paths),
            db_keys=path_stems(self.db_images),
        )


def read_msls_val(
    msls_root: Path,
    cities: Sequence[str] = MSLS_VAL_CITIES,
    positive_dist_threshold: float = POSITIVE_RADIUS_M,
) -> MslsValIndex:
    """Apply the val protocol to ``<msls_root>/train_val/<city>`` for each city, in order."""
    db_images: list[str] = []
    query_images: list[str] = []
    query_idx: list[int] = []
    positives: list[np.ndarray] = []
    for city in cities:
        database = read_city_folder(msls_root, VAL_SPLIT, city, "database", with_positions=True)
        queries = read_city_folder(msls_root, VAL_SPLIT, city, "query", with_positions=True)
        city_positives = positives_within(database.utm, queries.utm, positive_dist_threshold)
        if not any(len(query_positives) for query_positives in city_positives):
            log.warning("MSLS city %s: none of its %d queries has a database image within %g m "
                        "(positive_dist_threshold=%g): none of them is evaluated", city, len(queries.paths),
                        positive_dist_threshold, positive_dist_threshold)
        for query, query_positives in enumerate(city_positives):
            if len(query_positives):
                query_idx.append(len(query_images) + query)
                positives.append(query_positives + len(db_images))
        db_images.extend(database.paths)
        query_images.extend(queries.paths)
    return MslsValIndex(db_images, query_images, np.asarray(query_idx, dtype=np.int64), positives)


def read_msls_test(
    msls_root: Path, cities: Sequence[str] = MSLS_TEST_CITIES
) -> tuple[list[str], list[str]]:
    """``(db_images, query_images)`` of the test protocol over ``cities``, in order."""
    db_images: list[str] = []
    query_images: list[str] = []
    for city in cities:
        db_images.extend(read_city_folder(msls_root, TEST_SPLIT, city, "database").paths)
        query_images.extend(read_city_folder(msls_root, TEST_SPLIT, city, "query").paths)
    return db_images, query_images


def read_city_folder(
    msls_root: Path, split: str, city: str, role: str, with_positions: bool = False
) -> MslsCityFolder:
    """The kept images of ``<msls_root>/<split>/<city>/<role>``.

    Args:
        with_positions: val protocol (also drop panoramas, read UTM); else test protocol.

    Raises:
        UserFileError: the city folder or one of its CSVs is missing.
        UserError: a CSV is refused by :mod:`dataloaders.msls_csv` (unreadable, no row, a column
            missing or holding a bad value), disagrees with the others, or no image is kept.
    """
    city_folder = Path(msls_root) / split / city
    if not city_folder.is_dir():
        raise UserFileError(
            f"MSLS city folder {city_folder} does not exist "
            f"(check msls_root={msls_root} and cities=)"
        )
    folder = city_folder / role
    needed = ["subtask_index.csv"] + (["raw.csv", "postprocessed.csv"] if with_positions else [])
    tables = {name: read_msls_csv(folder / name) for name in _KEY_SOURCES
              if name in needed or (folder / name).is_file()}
    keys = _image_keys(folder, tables)
    keep = msls_flags(tables["subtask_index.csv"], SUBTASK, folder / "subtask_index.csv")
    utm = None
    if with_positions:
        keep = keep & ~msls_flags(tables["raw.csv"], "pano", folder / "raw.csv")
        utm = msls_positions(tables["postprocessed.csv"], folder / "postprocessed.csv")[keep]
    if not keep.any():
        kept = f"subtask_index.csv's {SUBTASK!r} true" + (" and not a panorama" if with_positions else "")
        raise UserError(f"MSLS: no image of {folder} is kept ({kept}), so city {city} would be dropped: "
                        f"restore its CSVs from the MSLS download, or leave {city} out of cities=")
    prefix = f"{split}/{city}/{role}/images"
    return MslsCityFolder([f"{prefix}/{key}.jpg" for key in keys[keep]], utm)


def _image_keys(folder: Path, tables: dict[str, pd.DataFrame]) -> np.ndarray:
    """Image keys of ``folder``, checked to agree across every CSV that lists them."""
    lengths = {name: len(table) for name, table in tables.items()}
    if len(set(lengths.values())) > 1:
        raise UserError(f"MSLS CSVs in {folder} have different row counts: {lengths}")
    with_keys = [name for name in _KEY_SOURCES if name in tables and "key" in tables[name].columns]
    if not with_keys:
        raise UserError(f"no CSV in {folder} has a 'key' column ({', '.join(tables)})")
    keys = tables[with_keys[0]]["key"].to_numpy(dtype=str)
    for name in with_keys[1:]:
        if not np.array_equal(tables[name]["key"].to_numpy(dtype=str), keys):
            raise UserError(f"MSLS keys of {folder / name} differ from {folder / with_keys[0]}")
    return keys
