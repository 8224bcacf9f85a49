"""Rebuild the published ``.npy`` index files from raw downloads.

Each ``*_index_files`` function returns ``{file name: array}`` in the published dtypes and
shapes (image lists as numpy unicode arrays, except MSLS test's object arrays of str; ground
truth as object arrays of int64 arrays, except VPR-Bench sets whose rows all have the same
length, which are 2-d int64 like the published ``SPED_gt.npy``). ``write_index_files`` saves
them without overwriting anything unless asked to.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dataloaders.eval_sets.base import EvalSet
from dataloaders.eval_sets.folders import list_images
from dataloaders.constants import MSLS_TEST_CITIES, MSLS_VAL_CITIES, POSITIVE_RADIUS_M
from dataloaders.eval_sets.gmberton import read_gmberton
from dataloaders.eval_sets.msls_raw import read_msls_test, read_msls_val
from dataloaders.eval_sets.pittsburgh_mat import read_pittsburgh_mat
from dataloaders.eval_sets.published_index import load_index_array
from utils.atomic_write import write_atomically
from utils.errors import UserError, UserFileExistsError

IndexFiles = dict[str, np.ndarray]

VPRBENCH_GROUND_TRUTH = "ground_truth_new.npy"
VPRBENCH_DB_FOLDER = "ref"
VPRBENCH_QUERY_FOLDER = "query"


def unicode_array(paths: Sequence[str]) -> np.ndarray:
    """``[N]`` numpy unicode array (``<U<longest>``), the published image-list dtype."""
    return np.array(list(paths), dtype=str)


def object_str_array(paths: Sequence[str]) -> np.ndarray:
    """``[N]`` object array of ``str`` (the published MSLS test lists)."""
    array = np.empty(len(paths), dtype=object)
    for i, path in enumerate(paths):
        array[i] = str(path)
    return array


def ragged_int_array(rows: Sequence[np.ndarray]) -> np.ndarray:
    """``[N]`` object array whose items are int64 arrays (kept 1-d even if rows are equal)."""
    array = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        array[i] = np.asarray(row, dtype=np.int64).reshape(-1)
    return array


def standard_index_files(eval_set: EvalSet, prefix: str) -> IndexFiles:
    """``<prefix>_{dbImages,qImages,gt}.npy`` of a labelled set."""
    if eval_set.ground_truth is None:
        raise UserError(f"{eval_set.name}: has no ground truth to write as {prefix}_gt.npy")
    return {
        f"{prefix}_dbImages.npy": unicode_array(eval_set.db_paths),
        f"{prefix}_qImages.npy": unicode_array(eval_set.query_paths),
        f"{prefix}_gt.npy": ragged_int_array(eval_set.ground_truth),
    }


def msls_val_index_files(
    msls_root: Path,
    cities: Sequence[str] = MSLS_VAL_CITIES,
    positive_dist_threshold: float = POSITIVE_RADIUS_M,
) -> IndexFiles:
    """``msls_val_{dbImages,qImages,qIdx,pIdx}.npy`` from the raw MSLS tree."""
    index = read_msls_val(msls_root, cities, positive_dist_threshold)
    return {
        "msls_val_dbImages.npy": unicode_array(index.db_images),
        "msls_val_qImages.npy": unicode_array(index.query_images),
        "msls_val_qIdx.npy": index.query_idx.astype(np.int64),
        "msls_val_pIdx.npy": ragged_int_array(index.positives),
    }


def msls_test_index_files(msls_root: Path, cities: Sequence[str] = MSLS_TEST_CITIES) -> IndexFiles:
    """``msls_test_{dbImages,qImages}.npy`` (object arrays of str) from the raw MSLS tree."""
    db_images, query_images = read_msls_test(msls_root, cities)
    return {
        "msls_test_dbImages.npy": object_str_array(db_images),
        "msls_test_qImages.npy": object_str_array(query_images),
    }


def pittsburgh_index_files(mat_file: Path, name: str | None = None) -> IndexFiles:
    """``<name>_{dbImages,qImages,gt}.npy`` from a Pittsburgh ``.mat`` (name: file stem)."""
    prefix = name or Path(mat_file).stem
    # the image root plays no part in the index files
    eval_set = read_pittsburgh_mat(mat_file, image_root=Path("."), name=prefix)
    return standard_index_files(eval_set, prefix)


def gmberton_index_files(
    root: Path, name: str, positive_dist_threshold: float = POSITIVE_RADIUS_M
) -> IndexFiles:
    """``<name>_{dbImages,qImages,gt}.npy`` of a gmberton dataset; paths relative to ``root``."""
    return standard_index_files(read_gmberton(root, name, positive_dist_threshold), name)


def vprbench_index_files(
    dataset_root: Path, name: str, ground_truth_file: Path | None = None
) -> IndexFiles:
    """``<name>_{dbImages,qImages,gt}.npy`` of a VPR-Bench set (Nordland, SPED).

    Args:
        dataset_root: folder holding ``ref/`` (database) and ``query/`` images.
        name: file prefix, ``Nordland`` or ``SPED`` for the published files.
        ground_truth_file: VPR-Bench ``ground_truth_new.npy``, an object array ``[Q, 2]``
            of rows ``[query_index, [ref indices]]``; defaults to the one in ``dataset_root``.

    The published ``gt`` is column 1: a 2-d int64 array when every query has the same
    number of positives (SPED), else an object array of int64 arrays (Nordland).
    """
    dataset_root = Path(dataset_root)
    gt_file = Path(ground_truth_file) if ground_truth_file else dataset_root / VPRBENCH_GROUND_TRUTH
    db_paths = _relative_images(dataset_root, VPRBENCH_DB_FOLDER)
    query_paths = _relative_images(dataset_root, VPRBENCH_QUERY_FOLDER)
    positives = vprbench_positives(load_index_array(gt_file), gt_file)
    if len(positives) != len(query_paths):
        raise UserError(
            f"{gt_file}: {len(positives)} rows for {len(query_paths)} images in "
            f"{dataset_root / VPRBENCH_QUERY_FOLDER}"
        )
    largest = max((int(row.max()) for row in positives if row.size), default=-1)
    if largest >= len(db_paths):
        raise UserError(
            f"{gt_file}: reference index {largest} but {dataset_root / VPRBENCH_DB_FOLDER} "
            f"holds {len(db_paths)} images"
        )
    return {
        f"{name}_dbImages.npy": unicode_array(db_paths),
        f"{name}_qImages.npy": unicode_array(query_paths),
        f"{name}_gt.npy": published_vprbench_gt(positives),
    }


def vprbench_positives(ground_truth: np.ndarray, source: Path) -> list[np.ndarray]:
    """Column 1 of a VPR-Bench ``[Q, 2]`` ground truth, checking column 0 is ``0..Q-1``."""
    if ground_truth.ndim != 2 or ground_truth.shape[1] != 2:
        raise UserError(
            f"{source}: expected rows [query_index, [ref indices]] (shape [Q, 2]), "
            f"got shape {list(ground_truth.shape)}"
        )
    query_indices = [int(index) for index in ground_truth[:, 0]]
    if query_indices != list(range(len(ground_truth))):
        raise UserError(f"{source}: column 0 is not the query indices 0..{len(ground_truth) - 1}")
    return [np.asarray(row, dtype=np.int64).reshape(-1) for row in ground_truth[:, 1]]


def published_vprbench_gt(positives: Sequence[np.ndarray]) -> np.ndarray:
    """2-d int64 ``[Q, K]`` when every row has ``K`` entries, else a ragged object array."""
    lengths = {len(row) for row in positives}
    if len(lengths) == 1:
        return np.stack(positives).astype(np.int64)
    return ragged_int_array(positives)


def write_index_files(files: IndexFiles, out_dir: Path, force: bool = False) -> list[Path]:
    """Save ``files`` into ``out_dir`` (created if needed); returns the written paths.

    Raises:
        FileExistsError: one of the files exists and ``force`` is false (nothing is written).
    """
    out_dir = Path(out_dir)
    targets = {out_dir / name: array for name, array in files.items()}
    existing = [str(path) for path in targets if path.exists()]
    if existing and not force:
        raise UserFileExistsError(
            f"{len(existing)} index file(s) already exist ({', '.join(existing)}); "
            "pass force=True to overwrite"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, array in targets.items():
        write_atomically(path, lambda stream, array=array: np.save(stream, array, allow_pickle=array.dtype == object))
    return list(targets)


def _relative_images(dataset_root: Path, subfolder: str) -> list[str]:
    folder = dataset_root / subfolder
    images = list_images(folder, f"VPR-Bench {subfolder}/ folder")
    return [path.relative_to(dataset_root).as_posix() for path in images]
