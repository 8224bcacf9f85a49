"""Reader of the published SALAD / MixVPR ``.npy`` index files.

Three layouts cover the seven published sets:

- MSLS val: ``dbImages``, ``qImages`` (747), ``qIdx`` (the 740 used) and ``pIdx`` (positives
  of ``qImages[qIdx[j]]``);
- MSLS test (challenge): ``dbImages`` and ``qImages`` as object arrays of str, no labels;
- Pittsburgh, Nordland, SPED: ``dbImages``, ``qImages`` and ``gt`` (an object array of int64
  arrays, or for SPED a 2-d int64 array with one positive per row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataloaders.eval_sets.base import EvalSet, as_path_list, path_stems
from dataloaders.safe_npy import load_npy
from utils.errors import UserError


def load_index_array(path: Path) -> np.ndarray:
    """Load one ``.npy`` index file; object arrays (the published files need them) are rebuilt
    without running anything the file holds (see :mod:`dataloaders.safe_npy`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a readable ``.npy`` array, or its pickle names anything
            but numpy arrays and plain values (refused, not executed).
    """
    return load_npy(path, "index file")


def ground_truth_rows(ground_truth: np.ndarray, source: Path) -> list[np.ndarray]:
    """Per-query positives from a ``gt``/``pIdx`` array: object array of arrays, or 2-d ints."""
    if ground_truth.dtype != object and ground_truth.ndim != 2:
        raise UserError(
            f"{source}: expected an object array of index arrays or a 2-d integer array, "
            f"got dtype {ground_truth.dtype} with shape {list(ground_truth.shape)}"
        )
    rows = []
    for row in ground_truth:
        indices = np.asarray(row).reshape(-1)
        if indices.size and not np.issubdtype(indices.dtype, np.integer):
            raise UserError(f"{source}: ground truth holds non-integer values ({indices.dtype})")
        rows.append(indices.astype(np.int64))
    return rows


def read_standard_index(
    name: str, image_root: Path, db_images_file: Path, query_images_file: Path, gt_file: Path
) -> EvalSet:
    """Pittsburgh / Nordland / SPED: ``<prefix>_{dbImages,qImages,gt}.npy``."""
    db_paths = as_path_list(load_index_array(db_images_file))
    query_paths = as_path_list(load_index_array(query_images_file))
    positives = ground_truth_rows(load_index_array(gt_file), gt_file)
    if len(positives) != len(query_paths):
        raise UserError(
            f"{gt_file}: {len(positives)} ground-truth rows for {len(query_paths)} queries "
            f"in {query_images_file}"
        )
    return EvalSet(name, image_root, db_paths, query_paths, ground_truth=positives)


def read_msls_val_index(
    name: str,
    image_root: Path,
    db_images_file: Path,
    query_images_file: Path,
    query_idx_file: Path,
    positives_file: Path,
) -> EvalSet:
    """MSLS val: the queries are ``qImages[qIdx]`` and ``pIdx[j]`` the positives of query ``j``.

    Groups are the city folder of each path (``train_val/<city>/...``), keys the image stems.
    """
    db_paths = as_path_list(load_index_array(db_images_file))
    all_query_paths = as_path_list(load_index_array(query_images_file))
    query_idx = load_index_array(query_idx_file).astype(np.int64).reshape(-1)
    positives = ground_truth_rows(load_index_array(positives_file), positives_file)
    if query_idx.size and (query_idx.min() < 0 or query_idx.max() >= len(all_query_paths)):
        raise UserError(
            f"{query_idx_file}: query index {int(query_idx.max())} out of range for "
            f"{len(all_query_paths)} images in {query_images_file}"
        )
    if len(positives) != len(query_idx):
        raise UserError(
            f"{positives_file}: {len(positives)} rows for {len(query_idx)} queries "
            f"in {query_idx_file}"
        )
    query_paths = [all_query_paths[i] for i in query_idx]
    return msls_eval_set(name, image_root, db_paths, query_paths, positives, db_images_file, query_images_file)


def read_msls_test_index(
    name: str, image_root: Path, db_images_file: Path, query_images_file: Path
) -> EvalSet:
    """MSLS test (challenge): no ground truth; groups are cities, keys the image stems."""
    db_paths = as_path_list(load_index_array(db_images_file))
    query_paths = as_path_list(load_index_array(query_images_file))
    return msls_eval_set(name, image_root, db_paths, query_paths, None, db_images_file, query_images_file)


def msls_eval_set(
    name: str,
    image_root: Path,
    db_paths: list[str],
    query_paths: list[str],
    ground_truth: list[np.ndarray] | None,
    db_images_file: Path,
    query_images_file: Path,
) -> EvalSet:
    """An MSLS set: groups are the cities in the paths, keys the image stems (challenge file)."""
    return EvalSet(
        name,
        image_root,
        db_paths,
        query_paths,
        ground_truth=ground_truth,
        db_groups=msls_cities(db_paths, db_images_file),
        query_groups=msls_cities(query_paths, query_images_file),
        query_keys=path_stems(query_paths),
        db_keys=path_stems(db_paths),
    )


def msls_cities(paths: list[str], source: Path) -> list[str]:
    """City of each MSLS path ``{train_val,test}/<city>/{database,query}/images/<key>.jpg``."""
    cities = []
    for path in paths:
        parts = Path(path).parts
        if len(parts) < 3:
            raise UserError(
                f"{source}: MSLS path {path!r} is not of the form "
                "<split>/<city>/{database,query}/images/<key>.jpg"
            )
        cities.append(parts[1])
    return cities
