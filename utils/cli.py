"""What the command-line tools share: argument types (an error's one line is :func:`utils.errors.render`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
"""Exit status of a listing whose reader stopped reading (``| head``), as a tool killed by SIGPIPE."""


def json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object of keyword arguments, such as ``'{"num_trainable_blocks": 4}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r} (not valid JSON: {error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value



def flag_names(parser: argparse.ArgumentParser, renamed: Mapping[str, str] = {}) -> dict[str, str]:
    """Library parameter name -> ``parser``'s flag, for :func:`utils.errors.render`: each option's
    destination names its flag (``image_size`` -> ``--image_size``; a switch, the setting it makes:
    ``force=True`` -> ``--force``), ``renamed`` adds the parameters whose flag has another name."""
    flags = {}
    for action in parser._actions:
        if action.option_strings:
            flag = action.option_strings[-1]
            flags[action.dest] = flag
            if isinstance(action.const, bool) and action.nargs == 0:  # store_true / store_false
                flags[f"{action.dest}={action.const}"] = flag
    return {**flags, **renamed}


def print_listing(text: str, prog: str) -> None:
    """Write ``text`` to standard output as a Unix tool does: when the reader stops early
    (``| head``) the command ends quietly (status :data:`EXIT_BROKEN_PIPE`); when the write fails
    (a full disk) the error is one line on standard error naming ``prog``, status 1."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as error:
        # Python flushes standard output again at exit: point it at /dev/null so that says nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        if isinstance(error, BrokenPipeError):
            sys.exit(EXIT_BROKEN_PIPE)
        sys.exit(f"{prog}: error: cannot write to standard output: {error.strerror or error}")
