"""Writing a file so that a reader never sees half of it, with the permissions the user's umask gives.

:func:`write_atomically` writes to a temporary file beside the target and renames it over the
target (:func:`replaced_atomically` hands the temporary path to a writer that wants a file
name). ``tempfile.mkstemp`` creates that file with mode 0600 whatever the umask, so it is given
the mode an ordinary ``open()`` would have (``0o666 & ~umask``: 0644 under the usual umask 022)
before the rename: colleagues on a shared server can read results and caches.
Temporary files are named ``.<target name>.<random>.tmp``; a killed write leaves one behind
(see :func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from utils.errors import UserWriteError

TEMPORARY_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process's umask (read from ``/proc`` where it is, else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def replaced_atomically(path: Path, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name; when the block
    ends, rename the file written there to ``path`` (``exclusive``: link it there, raising
    ``FileExistsError`` if ``path`` exists by then).

    The file gets mode ``0o666 & ~umask``. On any error the temporary file is removed and
    ``path`` is left as it was; an ``OSError`` (a full disk) is raised again naming ``path``, as a
    :class:`~utils.errors.UserWriteError`.
    """
    path = Path(path)
    temporary = None
    try:
        file_descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
        os.close(file_descriptor)
        temporary = Path(name)
        yield temporary
        os.chmod(temporary, 0o666 & ~current_umask())
        if exclusive:
            os.link(temporary, path)
            os.unlink(temporary)
        else:
            os.replace(temporary, path)
    except OSError as error:  # a full disk, a quota, ...: the error names the file meant
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        if error.errno is None or isinstance(error, (FileExistsError, UserWriteError)):
            raise
        raise UserWriteError(f"could not write {path}: {error.strerror or error}", error.errno) from error
    except BaseException as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        cause = error.__cause__ or error.__context__  # torch's zip writer reports a full disk as a RuntimeError
        if isinstance(error, RuntimeError) and isinstance(cause, OSError) and cause.errno is not None:
            raise UserWriteError(f"could not write {path}: {cause.strerror or cause}", cause.errno) from error
        raise


def write_atomically(path: Path, write: Callable[[BinaryIO], object], exclusive: bool = False) -> Path:
    """Call ``write(binary_stream)`` on a temporary file beside ``path``, then rename it to ``path``;
    see :func:`replaced_atomically` (the mode, ``exclusive``, what an error leaves)."""
    path = Path(path)
    with replaced_atomically(path, exclusive) as temporary, open(temporary, "wb") as stream:
        write(stream)
    return path


def remove_stale_temporaries(folder: Path, older_than_s: float) -> list[Path]:
    """Delete the temporary files of :func:`write_atomically` in ``folder`` not modified for
    ``older_than_s`` seconds (left by killed writes; a live write keeps touching its file).

    Returns:
        the files removed.
    """
    removed = []
    limit = time.time() - older_than_s
    for candidate in Path(folder).glob(f".*{TEMPORARY_SUFFIX}"):
        try:
            if candidate.is_file() and candidate.stat().st_mtime < limit:
                candidate.unlink()
                removed.append(candidate)
        except FileNotFoundError:  # another process removed or renamed it meanwhile
            continue
    return removed
