"""Reader of two plain image folders (database, queries) with no labels."""

from __future__ import annotations

import os
from pathlib import Path

from dataloaders.eval_sets.base import EvalSet

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_images(folder: Path, flag: str = "folder") -> list[Path]:
    """Image files under ``folder`` (recursive; .jpg/.jpeg/.png, any case), sorted by path.

    Args:
        folder: directory to search.
        flag: the option that named ``folder``, quoted in errors.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
        ValueError: it holds no image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag} {folder} is not a directory")
    images = sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )
    if not images:
        raise ValueError(f"{flag} {folder} holds no {'/'.join(IMAGE_SUFFIXES)} image")
    return images


def common_root(*folders: Path) -> Path:
    """The deepest folder holding all ``folders`` (absolute)."""
    return Path(os.path.commonpath([Path(folder).expanduser().absolute() for folder in folders]))


def read_image_folders(name: str, database_folder: Path, queries_folder: Path) -> EvalSet:
    """An unlabeled set: every image under ``database_folder`` and under ``queries_folder``.

    Paths are stored relative to the folders' common parent.
    """
    database_folder = Path(database_folder).expanduser().absolute()
    queries_folder = Path(queries_folder).expanduser().absolute()
    db_images = list_images(database_folder, "database folder")
    query_images = list_images(queries_folder, "queries folder")
    root = common_root(database_folder, queries_folder)
    return EvalSet(
        name=name,
        image_root=root,
        db_paths=[path.relative_to(root).as_posix() for path in db_images],
        query_paths=[path.relative_to(root).as_posix() for path in query_images],
        ground_truth=None,
    )
