"""This project's folder in the user's cache (``$XDG_CACHE_HOME/dinov2-salad``, else
``~/.cache/dinov2-salad``), and notices shown once per machine."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_FOLDER = "dinov2-salad"
NOTICES_FOLDER = "notices_shown"


def user_cache_dir() -> Path:
    """The project's user cache folder (not created)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / CACHE_FOLDER


def first_time(notice: str) -> bool:
    """True the first time ``notice`` is asked about on this machine (a marker file under the user
    cache remembers it); True as well where the marker cannot be written, so a notice is never lost."""
    marker = user_cache_dir() / NOTICES_FOLDER / notice
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.open("x").close()
    except FileExistsError:
        return False
    except OSError:
        return True
    return True
