"""Reader of two plain image folders (database, queries) with no labels."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from dataloaders.eval_sets import file_lists
from dataloaders.eval_sets.base import EvalSet
from dataloaders.image_io import decodable_image_suffixes
from utils.errors import UserError, UserFileError

log = logging.getLogger(__name__)

SHOWN_SKIPPED = 3
"""Names of skipped files quoted in the log line."""


def list_images(folder: Path, flag: str = "folder") -> list[Path]:
    """Image files under ``folder`` (recursive, symlinked folders followed once each), sorted by path.

    Images are the files whose suffix (any case) is one this Pillow build decodes (see
    :func:`dataloaders.image_io.decodable_image_suffixes`: .jpg, .png, .webp, .tif, ...).
    Hidden files, and files in hidden folders (names starting with ``.``: macOS ``._name.jpg``
    resource forks, ``.ipynb_checkpoints``), are skipped; so are files of other types. Each
    kind skipped is logged in one line with how many and the first names; links to nothing and
    links to a folder already listed (loops) are warned about.

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
        raise UserFileError(f"{flag} {folder} is not a directory")
    return file_lists.FILE_LISTS.get(folder, lambda: _walk(folder, flag))


def _walk(folder: Path, flag: str) -> list[Path]:
    """The walk of :func:`list_images` (every file under ``folder``, once)."""
    suffixes = decodable_image_suffixes()
    images: list[Path] = []
    hidden: list[str] = []
    others: list[str] = []
    dangling: list[str] = []
    loops: list[Path] = []
    for path in walk_files(folder, loops):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            if path.is_file():
                hidden.append(relative.as_posix())
        elif not path.exists():
            dangling.append(relative.as_posix())
        elif path.suffix.lower() in suffixes and path.is_file():
            images.append(path)
        elif path.is_file():
            others.append(relative.as_posix())
    for names, what, level in ((dangling, "link(s) to nothing (dangling symlinks)", logging.WARNING),
                               ([path.relative_to(folder).as_posix() for path in loops],
                                "linked folder(s) already listed (a symlink loop or a second link)", logging.WARNING)):
        _log_skipped(flag, folder, names, what, level)
    _log_skipped(flag, folder, hidden, "hidden file(s) (names starting with '.', e.g. macOS '._' files)")
    _log_skipped(flag, folder, others, "file(s) that are not images this Pillow build can read")
    if not images:
        example = f" (it holds {len(others)} other file(s): {', '.join(sorted(others)[:SHOWN_SKIPPED])})" if others else ""
        raise UserError(f"{flag} {folder} holds no image this Pillow build can read{example}")
    return sorted(images)


def walk_files(folder: Path, loops: list[Path]) -> Iterator[Path]:
    """Every file (or dangling link) under ``folder``, following symlinked folders, each real folder
    once: a link back to a folder already walked (a loop) is appended to ``loops``, not entered."""
    seen: set[tuple[int, int]] = set()
    for current, folder_names, file_names in os.walk(folder, followlinks=True):
        status = os.stat(current)
        if (status.st_dev, status.st_ino) in seen:
            loops.append(Path(current))
            folder_names.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        for name in file_names:
            yield Path(current) / name


def check_distinct_folders(database_folder: Path, queries_folder: Path) -> None:
    """Refuse the same folder (by another spelling, or through a link) as database and queries:
    every query would be found in the database (recall 100 without a word).

    Raises:
        UserError: one line naming both.
    """
    if os.path.realpath(database_folder) == os.path.realpath(queries_folder):
        raise UserError(f"database_folder={database_folder} and queries_folder={queries_folder} are the same folder: "
                        "every query would be found in the database; pass two folders")


def check_no_shared_images(db_images: list[Path], query_images: list[Path], database_folder: Path,
                           queries_folder: Path) -> None:
    """Refuse query images that are database images by their real paths: a queries folder inside the
    database folder, or links to its images (every such query would be found in the database).

    Raises:
        UserError: one line naming both folders, the count and one such image.
    """
    database = {os.path.realpath(path) for path in db_images}
    shared = [path for path in query_images if os.path.realpath(path) in database]
    if shared:
        raise UserError(f"{len(shared)} of the {len(query_images)} images of queries_folder={queries_folder} are images "
                        f"of database_folder={database_folder} (first: {shared[0]}): each would be found in the database; "
                        "pass a queries folder apart from the database")


def _log_skipped(flag: str, folder: Path, names: list[str], what: str, level: int = logging.INFO) -> None:
    if names:
        shown = ", ".join(sorted(names)[:SHOWN_SKIPPED])
        log.log(level, "%s %s: skipped %d %s: %s%s", flag, folder, len(names), what, shown,
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
    check_distinct_folders(database_folder, queries_folder)
    db_images = list_images(database_folder, "database folder")
    query_images = list_images(queries_folder, "queries folder")
    check_no_shared_images(db_images, query_images, database_folder, queries_folder)
    root = common_root(database_folder, queries_folder)
    return EvalSet(
        name=name,
        image_root=root,
        db_paths=[path.relative_to(root).as_posix() for path in db_images],
        query_paths=[path.relative_to(root).as_posix() for path in query_images],
        ground_truth=None,
    )
