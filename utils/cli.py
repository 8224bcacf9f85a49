"""What the command-line tools share: argument types, and the one line an error is shown as."""

from __future__ import annotations

import argparse
import json
from typing import Any


def json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object of keyword arguments, such as ``'{"num_trainable_blocks": 4}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r} (not valid JSON: {error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none): what a one-line
    error shows of an exception raised deeper down."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
