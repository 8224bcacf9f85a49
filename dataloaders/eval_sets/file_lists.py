"""The image lists of folder sets, kept with a run so that a folder of millions of files (SF-XL's
2.8M database images) is listed once per run, not again when the run is resumed.

Inside :func:`remembered_file_lists`, :func:`dataloaders.eval_sets.folders.list_images` asks
the lists it yields first: a folder listed before in this process, or stored in the folder given
(an interrupted run's ``file_lists/``), is not walked again. :meth:`FileLists.save` writes each
list as a text file (the folder on the first line, then one relative path per line). Outside
the context nothing is remembered: a folder is listed afresh on each call.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from utils.atomic_write import write_atomically

log = logging.getLogger(__name__)

FILE_LISTS_FOLDER = "file_lists"


class FileLists:
    """Image lists by absolute folder, remembered while :attr:`active`."""

    def __init__(self) -> None:
        self.active = False
        self.stored: Path | None = None
        self.lists: dict[str, list[Path]] = {}

    @staticmethod
    def file_name(folder: str) -> str:
        return f"{hashlib.sha256(folder.encode('utf-8', 'surrogateescape')).hexdigest()[:24]}.txt"

    def get(self, folder: Path, list_folder: Callable[[], list[Path]]) -> list[Path]:
        """The images of ``folder``: remembered, stored, or ``list_folder()``."""
        if not self.active:
            return list_folder()
        key = str(Path(folder).expanduser().absolute())
        if key not in self.lists:
            self.lists[key] = self.read(key) or list_folder()
        return self.lists[key]

    def read(self, key: str) -> list[Path] | None:
        """The stored list of folder ``key``, or ``None``."""
        if self.stored is None or not (self.stored / self.file_name(key)).is_file():
            return None
        first, *names = (self.stored / self.file_name(key)).read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        if first != key or not names:
            return None
        log.info("%s: %d images, as listed by the run (%s)", key, len(names), self.stored)
        return [Path(key) / name for name in names]

    def save(self, folder: Path) -> None:
        """Write every list remembered to ``folder`` (created)."""
        if not self.lists:
            return
        folder.mkdir(parents=True, exist_ok=True)
        for key, images in self.lists.items():
            text = "\n".join([key, *(path.relative_to(key).as_posix() for path in images)]) + "\n"
            write_atomically(folder / self.file_name(key), lambda stream: stream.write(text.encode("utf-8", "surrogateescape")))


FILE_LISTS = FileLists()
"""The lists :func:`dataloaders.eval_sets.folders.list_images` asks (inactive outside the context)."""


@contextlib.contextmanager
def remembered_file_lists(stored: Path | None = None) -> Iterator[FileLists]:
    """Remember the folders listed inside the context (and read the lists in ``stored``, an
    earlier run's ``file_lists/``); the lists yielded stay readable (and savable) after it."""
    global FILE_LISTS
    previous, FILE_LISTS = FILE_LISTS, FileLists()
    FILE_LISTS.active, FILE_LISTS.stored = True, stored
    try:
        yield FILE_LISTS
    finally:
        FILE_LISTS.active = False
        FILE_LISTS = previous
