"""The one description of an evaluation set that every reader returns.

An evaluation set is a database and a list of queries (image paths under one root) and,
when labels exist, the database indices that count as correct for each query. Descriptors
are computed over the database first and then the queries, so index ``i < num_db`` is a
database image and ``num_db + j`` is query ``j``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from dataloaders.image_io import load_image
from utils.errors import UserError, UserFileError

ImageTransform = Callable[[Image.Image], torch.Tensor]

# how many missing paths a FileNotFoundError quotes before "..."
_MISSING_PATHS_SHOWN = 5
# checking fewer files than this takes under a second: no progress bar
_FILES_WORTH_A_BAR = 20_000


@dataclass
class EvalSet:
    """A database + queries evaluation set.

    Attributes:
        name: the set's name, e.g. ``"msls_val"``.
        image_root: folder the relative paths below are relative to.
        db_paths: database images, relative to ``image_root`` (or absolute).
        query_paths: query images, relative to ``image_root`` (or absolute).
        ground_truth: per query, the int64 indices into ``db_paths`` of its positives;
            ``None`` for sets without labels (MSLS challenge, unlabeled folders).
        db_groups: optional group of each database image (MSLS: its city), for searching
            each query only against the database images of its own group.
        query_groups: optional group of each query, same meaning.
        query_keys: optional name of each query in prediction files (MSLS: bare image stems).
        db_keys: optional name of each database image in prediction files.
        db_positions: optional ``[num_db, 2]`` UTM (easting, northing) of the database images,
            where the format records them (gmberton names, Pittsburgh ``.mat``).
        query_positions: optional ``[num_queries, 2]``, the same for the queries.
    """

    name: str
    image_root: Path
    db_paths: list[str]
    query_paths: list[str]
    ground_truth: list[np.ndarray] | None = None
    db_groups: list[str] | None = None
    query_groups: list[str] | None = None
    query_keys: list[str] | None = None
    db_keys: list[str] | None = None
    db_positions: np.ndarray | None = None
    query_positions: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.image_root = Path(self.image_root)
        self.db_paths = [str(path) for path in self.db_paths]
        self.query_paths = [str(path) for path in self.query_paths]
        _check_unique(self.name, "database", self.db_paths)
        _check_unique(self.name, "query", self.query_paths)
        _check_length(self.name, "db_groups", self.db_groups, self.num_db)
        _check_length(self.name, "db_keys", self.db_keys, self.num_db)
        _check_length(self.name, "query_groups", self.query_groups, self.num_queries)
        _check_length(self.name, "query_keys", self.query_keys, self.num_queries)
        _check_length(self.name, "db_positions", self.db_positions, self.num_db)
        _check_length(self.name, "query_positions", self.query_positions, self.num_queries)
        if self.ground_truth is not None:
            _check_length(self.name, "ground_truth", self.ground_truth, self.num_queries)
            self.ground_truth = [
                np.asarray(positives, dtype=np.int64).reshape(-1) for positives in self.ground_truth
            ]
            _check_indices(self.name, self.ground_truth, self.num_db)

    @property
    def num_db(self) -> int:
        """Number of database images."""
        return len(self.db_paths)

    @property
    def num_queries(self) -> int:
        """Number of query images."""
        return len(self.query_paths)

    @property
    def has_ground_truth(self) -> bool:
        """Whether per-query positives are known (Recall@K can be computed)."""
        return self.ground_truth is not None

    def image_paths(self) -> list[Path]:
        """All images as absolute paths: the database first, then the queries."""
        root = self.image_root.expanduser().absolute()
        return [root / path for path in (*self.db_paths, *self.query_paths)]

    def check_files_exist(self) -> None:
        """Verify that every listed image exists, before any of them is read.

        Raises:
            FileNotFoundError: with the number of missing files, the first few of them and
                the root they were looked for under.
        """
        paths = self.image_paths()
        missing = [
            path
            for path in tqdm(
                paths, desc=f"checking {self.name} files", unit="file", leave=False,
                disable=len(paths) < _FILES_WORTH_A_BAR,
            )
            if not path.is_file()
        ]
        if missing:
            shown = ", ".join(str(path) for path in missing[:_MISSING_PATHS_SHOWN])
            more = ", ..." if len(missing) > _MISSING_PATHS_SHOWN else ""
            raise UserFileError(
                f"{self.name}: {len(missing)} of {len(paths)} images are missing under "
                f"{self.image_root.expanduser().absolute()} (first: {shown}{more})"
            )

    def images(
        self, transform: ImageTransform, decode_size: tuple[int, int] | None = None, exif_transpose: bool = False
    ) -> EvalImages:
        """A dataset over the database then the queries, yielding ``(image, index)``.

        Args:
            transform: PIL image -> tensor ``[3, H, W]``.
            decode_size: ``(height, width)`` the transform resizes to, if fixed; lets JPEGs be
                decoded at a reduced scale (see ``dataloaders.image_io.load_image``).
            exif_transpose: turn images upright by their EXIF orientation (off as published).
        """
        return EvalImages(self.image_paths(), transform, decode_size, exif_transpose)


class EvalImages(Dataset):
    """Images of an evaluation set in descriptor order; item ``i`` is ``(tensor [3, H, W], i)``.

    A file that cannot be decoded raises ``ImageDecodeError`` naming it.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        transform: ImageTransform,
        decode_size: tuple[int, int] | None = None,
        exif_transpose: bool = False,
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.decode_size = decode_size
        self.exif_transpose = exif_transpose

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = load_image(self.paths[index], min_size=self.decode_size, exif_transpose=self.exif_transpose)
        return self.transform(image), index


def _check_unique(set_name: str, what: str, paths: Sequence[str]) -> None:
    """Refuse an image listed twice (an index that names a database image twice counts it twice)."""
    if len(set(paths)) != len(paths):
        repeated = next(path for path, count in collections.Counter(paths).items() if count > 1)
        raise UserError(f"{set_name}: the {what} lists {repeated} more than once "
                        f"({len(paths) - len(set(paths))} repeated entries): rebuild the index without repeats")


def _check_length(set_name: str, what: str, values: Sequence | None, expected: int) -> None:
    if values is not None and len(values) != expected:
        raise UserError(f"{set_name}: {what} has {len(values)} entries, expected {expected}")


def _check_indices(set_name: str, positives: list[np.ndarray], num_db: int) -> None:
    if not positives:
        return
    flat = np.concatenate(positives)
    if flat.size and (flat.min() < 0 or flat.max() >= num_db):
        raise UserError(
            f"{set_name}: ground truth holds database index {int(flat.min())}..{int(flat.max())}, "
            f"expected 0..{num_db - 1}"
        )


def as_path_list(paths: np.ndarray | Sequence[str]) -> list[str]:
    """Image paths from a numpy string/object array or a sequence, as plain ``str``."""
    return [str(path) for path in paths]


def path_stems(paths: Sequence[str]) -> list[str]:
    """Bare file names without folder and extension (MSLS image keys)."""
    return [Path(path).stem for path in paths]


__all__ = ["EvalImages", "EvalSet", "ImageTransform", "as_path_list", "path_stems"]
