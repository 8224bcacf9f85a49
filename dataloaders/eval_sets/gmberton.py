"""Reader of the gmberton "VPR-datasets-downloader" folder format.

``<root>/images/test/{database,queries}/`` (or a root that directly holds ``database/`` and
``queries/``; SF-XL's test split holds ``database/``, ``queries_v1/`` and ``queries_night/``) with file names ``@UTM_east@UTM_north@zone@letter@lat@lon@...@.jpg``. Only
fields 1 and 2 (UTM east, north) matter: a query's positives are the database images
within ``positive_dist_threshold`` metres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataloaders.eval_sets.base import EvalSet
from dataloaders.eval_sets.folders import check_distinct_folders, check_no_shared_images, common_root, list_images
from dataloaders.constants import POSITIVE_RADIUS_M
from dataloaders.geo import is_position, positives_within
from utils.errors import UserError, UserFileError
TEST_SUBFOLDER = Path("images") / "test"


def utm_from_name(path: Path) -> tuple[float, float]:
    """UTM (east, north) from fields 1 and 2 of an ``@``-separated file name.

    Raises:
        ValueError: the name does not have the gmberton form, naming the file.
    """
    fields = Path(path).name.split("@")
    try:
        if len(fields) < 3:
            raise ValueError("fewer than 3 '@'-separated fields")
        east, north = float(fields[1]), float(fields[2])
    except ValueError as error:
        raise UserError(
            f"{path}: not a gmberton file name '@UTM_east@UTM_north@...@.jpg' ({error})"
        ) from None
    if not (is_position(east) and is_position(north)):
        raise UserError(f"{path}: UTM position {fields[1]}, {fields[2]} in the file name is not a position "
                        "(NaN, infinite or beyond 1e9 m): rename the image with its real coordinates")
    return east, north


def utm_of(paths: list[Path]) -> np.ndarray:
    """``[N, 2]`` UTM positions parsed from the file names of ``paths``."""
    return np.array([utm_from_name(path) for path in paths], dtype=np.float64).reshape(-1, 2)


def find_split_folders(root: Path, queries: str = "queries") -> tuple[Path, Path]:
    """``(database, queries)`` folders of a gmberton dataset root; ``queries`` names the queries
    folder (SF-XL's test split has two: ``queries_v1`` and ``queries_night``).

    Raises:
        FileNotFoundError: neither ``root/images/test/{database,<queries>}`` nor
            ``root/{database,<queries>}`` exists.
    """
    root = Path(root)
    for base in (root / TEST_SUBFOLDER, root):
        if (base / "database").is_dir() and (base / queries).is_dir():
            return base / "database", base / queries
    others = sorted(path.name for base in (root / TEST_SUBFOLDER, root) if base.is_dir()
                    for path in base.glob("queries*") if path.is_dir())
    hint = f"; it has {', '.join(others)}: name one as queries" if others else ""
    raise UserFileError(
        f"{root} holds neither images/test/{{database,{queries}}}/ nor {{database,{queries}}}/{hint}"
    )


def read_gmberton_folders(
    name: str,
    database_folder: Path,
    queries_folder: Path,
    positive_dist_threshold: float = POSITIVE_RADIUS_M,
    image_root: Path | None = None,
) -> EvalSet:
    """A labelled set from two folders of gmberton-named images (sorted, recursive).

    Args:
        name: set name.
        database_folder / queries_folder: the image folders.
        positive_dist_threshold: positive radius in metres.
        image_root: folder the stored paths are relative to; defaults to the folders'
            common parent.
    """
    check_distinct_folders(database_folder, queries_folder)
    db_images = list_images(database_folder, "database folder")
    query_images = list_images(queries_folder, "queries folder")
    check_no_shared_images(db_images, query_images, database_folder, queries_folder)
    root = (
        Path(image_root).expanduser().absolute()
        if image_root is not None
        else common_root(database_folder, queries_folder)
    )
    db_utm, query_utm = utm_of(db_images), utm_of(query_images)
    return EvalSet(
        name=name,
        image_root=root,
        db_paths=[_relative(path, root) for path in db_images],
        query_paths=[_relative(path, root) for path in query_images],
        ground_truth=positives_within(db_utm, query_utm, positive_dist_threshold),
        db_positions=db_utm,
        query_positions=query_utm,
    )


def read_gmberton(
    root: Path, name: str, positive_dist_threshold: float = POSITIVE_RADIUS_M, queries: str = "queries"
) -> EvalSet:
    """A gmberton dataset root; stored paths are relative to ``root``. ``queries`` names the
    queries folder (``queries_v1`` or ``queries_night`` for SF-XL's test split)."""
    database_folder, queries_folder = find_split_folders(root, queries)
    return read_gmberton_folders(
        name, database_folder, queries_folder, positive_dist_threshold, image_root=root
    )


def _relative(path: Path, root: Path) -> str:
    return Path(path).expanduser().absolute().relative_to(root).as_posix()
