"""What a user can fix, told apart from a bug.

A :class:`UserError` is a problem in what the user gave (a file, a value, the data on disk): the
command-line tools print it as one line and exit 2. Any other exception is a bug and keeps its
traceback. Library code raises ``UserError`` (or a subclass) only where the user can act on the
message.

Messages name the library's parameters as ``name=value`` (``image_size=100``), never one tool's
flags: each tool renders them with its own flag names in one place (:func:`render`), so
``image_size=100`` reads ``--image_size 100`` in eval.py and ``--data.image_size 100`` in main.py.

``UserError`` is a ``ValueError`` and :class:`UserFileError` a ``FileNotFoundError`` too, so code
that caught those before still does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


class UserError(ValueError):
    """A problem the user can fix; its message is one line that says what and what to do."""


class UserFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or whose folder they named) is missing or unreadable."""


def render(error: BaseException, flags: Mapping[str, str] = {}) -> str:
    """``error``'s first line, each ``parameter=`` of ``flags`` written as that tool's flag.

    >>> render(UserError("image_size=100 is not a multiple of 14"), {"image_size": "--image_size"})
    '--image_size 100 is not a multiple of 14'
    """
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    for parameter, flag in flags.items():
        line = re.sub(rf"(?<![\w.-]){re.escape(parameter)}=", f"{flag} ", line)
    return line
