"""Resuming a training run: the checkpoint is checked before Lightning opens it."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from utils.checkpoint_files import check_resume_checkpoint


def check_resume_path(ckpt_path: str | PathLike[str] | None) -> None:
    """Check ``main.py --ckpt_path`` (see :func:`utils.checkpoint_files.check_resume_checkpoint`).

    ``None`` and Lightning's keywords (``last``, ``hpc``, ``registry``) are left to Lightning,
    as is a path that does not exist (it names it in its own error).

    Raises:
        ValueError: the file is refused (one line naming it and what to do instead).
    """
    if ckpt_path is None or not Path(ckpt_path).is_file():
        return
    check_resume_checkpoint(ckpt_path)
