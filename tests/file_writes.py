"""Watching the files a piece of code writes in a folder, and filling the disk under it, through
Python's audit hooks (every ``open`` and rename, in every thread of this process)."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

_watchers: list[Callable[[str, tuple[Any, ...]], None]] = []


def _dispatch(event: str, args: tuple[Any, ...]) -> None:
    if _watchers and event in ("open", "os.rename", "os.link"):
        for watcher in list(_watchers):
            watcher(event, args)


sys.addaudithook(_dispatch)  # audit hooks cannot be removed: one per process, idle without watchers


@dataclass
class Writes:
    """What was written under ``folder``: each file opened for writing, each rename's (or hard
    link's) target."""

    folder: Path
    opened: list[Path] = field(default_factory=list)
    renamed_to: list[Path] = field(default_factory=list)
    disk_full: bool = False
    """Set it (or let ``fill_disk_after`` set it) and every later open for writing under ``folder``
    fails with ENOSPC, as on a full disk."""

    def inside(self, path: Any) -> Path | None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return None  # a file descriptor
        resolved = Path(os.path.realpath(os.fsdecode(path)))
        return resolved if resolved.is_relative_to(self.folder) else None


@contextmanager
def watching_writes(folder: Path, fill_disk_after: Callable[[Path], bool] | None = None) -> Iterator[Writes]:
    """Record the files opened for writing and renamed into ``folder`` while the block runs;
    ``fill_disk_after(target)``: once it is true of a rename's target, the disk is full."""
    writes = Writes(Path(os.path.realpath(folder)))

    def watch(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, _, flags = args
            inside = writes.inside(path)
            if inside is not None and flags & WRITE_FLAGS:
                if writes.disk_full:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                writes.opened.append(inside)
        else:
            inside = writes.inside(args[1])
            if inside is not None:
                writes.renamed_to.append(inside)
                if fill_disk_after is not None and fill_disk_after(inside):
                    writes.disk_full = True

    _watchers.append(watch)
    try:
        yield writes
    finally:
        _watchers.remove(watch)
