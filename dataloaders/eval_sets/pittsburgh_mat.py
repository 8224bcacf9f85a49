"""Reader of the Pittsburgh ``.mat`` files (``pitts30k_val.mat``, ``pitts250k_test.mat``, ...).

``loadmat(f)["dbStruct"]`` holds, in this order: ``whichSet, dbImageFns, utmDb (2 x N),
qImageFns, utmQ (2 x M), numImages, numQueries, posDistThr, posDistSqThr,
nonTrivPosDistSqThr``. Query file names are relative to ``queries_real/``; positives are the
database images within ``posDistThr`` metres (UTM) of the query.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from dataloaders.eval_sets.base import EvalSet
from dataloaders.geo import positives_within
from utils.errors import UserError, UserFileError

QUERY_FOLDER = "queries_real"

DB_STRUCT_FIELDS = (
    "whichSet",
    "dbImageFns",
    "utmDb",
    "qImageFns",
    "utmQ",
    "numImages",
    "numQueries",
    "posDistThr",
    "posDistSqThr",
    "nonTrivPosDistSqThr",
)


@dataclass
class PittsburghDbStruct:
    """The fields of a Pittsburgh ``dbStruct`` that evaluation uses.

    Attributes:
        which_set: ``"train"``, ``"val"`` or ``"test"``.
        db_images: database file names, e.g. ``"000/000000_pitch1_yaw1.jpg"``.
        db_utm: ``[N, 2]`` database UTM easting, northing.
        query_images: query file names relative to ``queries_real/``.
        query_utm: ``[M, 2]`` query UTM easting, northing.
        pos_dist_thr: positive radius in metres (25 in the published files).
    """

    which_set: str
    db_images: list[str]
    db_utm: np.ndarray
    query_images: list[str]
    query_utm: np.ndarray
    pos_dist_thr: float


def load_db_struct(mat_file: Path) -> PittsburghDbStruct:
    """Parse ``mat_file``'s ``dbStruct``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not a readable ``.mat`` file (truncated, not MATLAB), has no
            ``dbStruct``, or its fields do not match the documented layout.
    """
    mat_file = Path(mat_file)
    if not mat_file.is_file():
        raise UserFileError(f"Pittsburgh .mat file {mat_file} does not exist")
    try:
        contents = loadmat(mat_file)
    except Exception as error:  # scipy raises MatReadError, OSError, ValueError, IndexError, ... on broken files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no details"
        raise UserError(
            f"Pittsburgh .mat file {mat_file} is not a readable MATLAB file ({type(error).__name__}: {reason}); "
            "it may be truncated: download it again"
        ) from None
    if "dbStruct" not in contents:
        raise UserError(f"{mat_file}: no 'dbStruct' variable (found {sorted(contents)})")
    struct = contents["dbStruct"].item()
    if len(struct) < len(DB_STRUCT_FIELDS):
        raise UserError(
            f"{mat_file}: dbStruct has {len(struct)} fields, expected {len(DB_STRUCT_FIELDS)} "
            f"({', '.join(DB_STRUCT_FIELDS)})"
        )
    parsed = PittsburghDbStruct(
        which_set=_matlab_string(struct[0]),
        db_images=[_matlab_string(cell) for cell in np.asarray(struct[1]).reshape(-1)],
        db_utm=_utm_columns(struct[2], mat_file, "utmDb"),
        query_images=[_matlab_string(cell) for cell in np.asarray(struct[3]).reshape(-1)],
        query_utm=_utm_columns(struct[4], mat_file, "utmQ"),
        pos_dist_thr=float(np.asarray(struct[7]).item()),
    )
    _check_count(mat_file, "dbImageFns", len(parsed.db_images), "utmDb", len(parsed.db_utm))
    _check_count(mat_file, "qImageFns", len(parsed.query_images), "utmQ", len(parsed.query_utm))
    num_images, num_queries = int(np.asarray(struct[5]).item()), int(np.asarray(struct[6]).item())
    _check_count(mat_file, "numImages", num_images, "dbImageFns", len(parsed.db_images))
    _check_count(mat_file, "numQueries", num_queries, "qImageFns", len(parsed.query_images))
    return parsed


def read_pittsburgh_mat(
    mat_file: Path, image_root: Path, name: str | None = None, max_distance: float | None = None
) -> EvalSet:
    """An evaluation set from a Pittsburgh ``.mat`` file.

    Args:
        mat_file: e.g. ``datasets/pitts30k_test.mat``.
        image_root: the Pittsburgh folder holding ``000/...`` and ``queries_real/``.
        name: set name; defaults to the file's stem (``pitts30k_test``).
        max_distance: positive radius in metres; defaults to the file's ``posDistThr``.
    """
    struct = load_db_struct(mat_file)
    radius = struct.pos_dist_thr if max_distance is None else max_distance
    return EvalSet(
        name=name or Path(mat_file).stem,
        image_root=image_root,
        db_paths=struct.db_images,
        query_paths=[f"{QUERY_FOLDER}/{file_name}" for file_name in struct.query_images],
        ground_truth=positives_within(struct.db_utm, struct.query_utm, radius),
        db_positions=struct.db_utm,
        query_positions=struct.query_utm,
    )


def _matlab_string(value: object) -> str:
    """A MATLAB char array / cell holding one string, as ``str``."""
    array = np.asarray(value)
    while array.dtype == object and array.size == 1:
        array = np.asarray(array.reshape(-1)[0])
    if array.size != 1:
        raise UserError(f"expected one string, got an array of shape {list(array.shape)}")
    return str(array.reshape(-1)[0])


def _utm_columns(value: object, mat_file: Path, field: str) -> np.ndarray:
    """``2 x N`` UTM array as ``[N, 2]`` float64."""
    array = np.asarray(value, dtype=np.float64)
    if array.size == 0:
        return np.empty((0, 2), dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != 2:
        raise UserError(f"{mat_file}: {field} must be 2 x N, got shape {list(array.shape)}")
    return array.T.copy()


def _check_count(
    mat_file: Path, field: str, count: int, other_field: str, other_count: int
) -> None:
    if count != other_count:
        raise UserError(
            f"{mat_file}: {field} says {count} entries but {other_field} has {other_count}"
        )
