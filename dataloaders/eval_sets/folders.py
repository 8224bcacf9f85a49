"""Reader of two plain image folders (database, queries) with no labels."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dataloaders.eval_sets import file_lists
from dataloaders.eval_sets.base import EvalSet
from dataloaders.image_io import decodable_image_suffixes

log = logging.getLogger(__name__)

SHOWN_SKIPPED = 3
"""Names of skipped files quoted in the log line."""


def list_images(folder: Path, flag: str = "folder") -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by path.

    Images are the files whose suffix (any case) is one this Pillow build decodes (see
    :func:`dataloaders.image_io.decodable_image_suffixes`: .jpg, .png, .webp, .tif, ...).
    Hidden files, and files in hidden folders (names starting with ``.``: macOS ``._name.jpg``
    resource forks, ``.ipynb_checkpoints``), are skipped; so are files of other types. Each
    kind skipped is logged in one line with how many and the first names.

    Inside ``dataloaders.eval_sets.file_lists.remembered_file_lists`` (eval.py's runs) a folder
    is walked once per run, its list kept with the run for a resumed run.

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
    return file_lists.FILE_LISTS.get(folder, lambda: _walk(folder, flag))


def _walk(folder: Path, flag: str) -> list[Path]:
    """The walk of :func:`list_images` (every file under ``folder``, once)."""
    suffixes = decodable_image_suffixes()
    images: list[Path] = []
    hidden: list[str] = []
    others: list[str] = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            if path.is_file():
                hidden.append(relative.as_posix())
        elif path.suffix.lower() in suffixes and path.is_file():
            images.append(path)
        elif path.is_file():
            others.append(relative.as_posix())
    _log_skipped(flag, folder, hidden, "hidden file(s) (names starting with '.', e.g. macOS '._' files)")
    _log_skipped(flag, folder, others, "file(s) that are not images this Pillow build can read")
    if not images:
        example = f" (it holds {len(others)} other file(s): {', '.join(sorted(others)[:SHOWN_SKIPPED])})" if others else ""
        raise ValueError(f"{flag} {folder} holds no image this Pillow build can read{example}")
    return sorted(images)


def _log_skipped(flag: str, folder: Path, names: list[str], what: str) -> None:
    if names:
        shown = ", ".join(sorted(names)[:SHOWN_SKIPPED])
        log.info("%s %s: skipped %d %s: %s%s", flag, folder, len(names), what, shown,
                 ", ..." if len(names) > SHOWN_SKIPPED else "")


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
