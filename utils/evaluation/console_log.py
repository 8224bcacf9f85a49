"""``eval.log``: what an evaluation printed and logged, kept in its run folder.

The console output starts before the run folder exists (the model line, hints), so
:class:`ConsoleLog` holds it until :meth:`ConsoleLog.open` names the file, then appends as the run
goes. It copies ``sys.stdout`` (the recall tables, file names) and the log records of every
logger; progress bars (on ``sys.stderr``) stay on the console only. A write that fails (a full
disk) stops the copy and raises an error naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, TextIO

from utils.errors import UserWriteError

LOG_FILE = "eval.log"


class _Tee:
    """A text stream writing to ``console`` and to ``sink``."""

    def __init__(self, console: TextIO, sink: ConsoleLog) -> None:
        self._console = console
        self._sink = sink

    def write(self, text: str) -> int:
        self._sink.record(text)
        return self._console.write(text)

    def __getattr__(self, name: str) -> object:  # flush, isatty, fileno, encoding, ...
        return getattr(self._console, name)


class _RecordHandler(logging.Handler):
    def __init__(self, sink: ConsoleLog) -> None:
        super().__init__(logging.INFO)
        self._sink = sink
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self._sink.record(self.format(record) + "\n")


class ConsoleLog:
    """Context manager: while it is active, stdout and log records are also recorded; after
    :meth:`open`, into that file (what came before first)."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._handler = _RecordHandler(self)
        self._stdout: TextIO | None = None

    def record(self, text: str) -> None:
        if self._file is None:
            self._pending.append(text)
        else:
            self._write(text)

    def open(self, path: Path) -> Path:
        """Write what was recorded so far to ``path`` (a new file in the run folder) and append to it from now on."""
        self._path = path
        self._file = open(path, "x", encoding="utf-8")
        pending, self._pending = "".join(self._pending), []
        self._write(pending)
        return path

    def _write(self, text: str) -> None:
        assert self._file is not None
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as error:  # a full disk: stop copying, and say which file
            broken, self._file = self._file, None
            with contextlib.suppress(OSError):  # closing flushes the same bytes again
                broken.close()
            raise UserWriteError(f"could not write {self._path}: {error.strerror or error}", error.errno) from error

    def __enter__(self) -> ConsoleLog:
        self._stdout = sys.stdout
        sys.stdout = _Tee(sys.stdout, self)  # type: ignore[assignment]
        logging.getLogger().addHandler(self._handler)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        logging.getLogger().removeHandler(self._handler)
        if self._stdout is not None:
            sys.stdout = self._stdout
        if self._file is not None:
            if error is not None:
                self._file.write(f"stopped: {type(error).__name__}: {error}\n")
            self._file.close()
