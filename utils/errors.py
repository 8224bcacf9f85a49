"""What a user can fix, told apart from a bug.

A :class:`UserError` is a problem in what the user gave (a file, a value, the data on disk): the
command-line tools print it as one line and exit 2. Any other exception is a bug and keeps its
traceback. Library code raises ``UserError`` (or a subclass) only where the user can act on the
message.

Messages name the library's parameters as ``name=value`` (``image_size=100``), never one tool's
flags: each tool renders them with its own flag names in one place (:func:`render`), so
``image_size=100`` reads ``--image_size 100`` in eval.py and ``--data.image_size 100`` in main.py.

``UserError`` is a ``ValueError``, :class:`UserFileError` a ``FileNotFoundError``,
:class:`UserFileExistsError` a ``FileExistsError`` and :class:`MissingPackageError` an
``ImportError`` too, so code that caught those before still does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


class UserError(ValueError):
    """A problem the user can fix; its message is one line that says what and what to do.

    Raised in a DataLoader worker, it reaches the main process as ``UserError("Caught UserError in
    DataLoader worker process 0.\nOriginal Traceback ...")``: of that, only the original message
    is kept, so the one line still says what is wrong.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        if isinstance(message, str) and "\nOriginal Traceback" in message:
            last_line = message.strip().splitlines()[-1]
            message = last_line.split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(message, *args)


class UserFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or whose folder they named) is missing or unreadable."""


class UserFileExistsError(UserError, FileExistsError):
    """A file a tool would write exists already: it is not overwritten."""


class MissingPackageError(UserError, ImportError):
    """An optional package that the chosen option needs is not installed."""


class UserWriteError(UserError, OSError):
    """A file could not be written (a full disk, a quota, no permission): the message names it;
    ``errno`` is the system's error number."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def render(error: BaseException, flags: Mapping[str, str] = {}) -> str:
    """``error``'s first line (its type's name when it has no message), each ``parameter=value`` of
    ``flags`` written as that tool's ``flag value`` (a bare ``parameter=`` as the flag alone). A
    key holding ``=`` stands for that whole setting: ``{"verify=False": "--no_verify"}``.

    >>> render(UserError("image_size=100 is not a multiple of 14"), {"image_size": "--image_size"})
    '--image_size 100 is not a multiple of 14'
    >>> render(UserError("leave Boston out of cities="), {"cities": "--data.cities"})
    'leave Boston out of --data.cities'
    >>> render(UserError("pass force=True to overwrite"), {"force=True": "--force"})
    'pass --force to overwrite'
    """
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    for parameter, flag in sorted(flags.items(), key=lambda item: "=" not in item[0]):  # whole settings first
        start = rf"(?<![\w.-]){re.escape(parameter)}"
        if "=" in parameter:
            line = re.sub(rf"{start}(?![\w.])", flag, line)
        else:
            line = re.sub(rf"{start}=(\S?)", lambda found: f"{flag} {found[1]}" if found[1] else flag, line)
    return line
