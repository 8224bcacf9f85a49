"""What a file given as a checkpoint is, before anything unpickles it.

:func:`checkpoint_file_problem` tells an empty file, a file that is not a torch checkpoint
(text, an image, ...) and a torn zip archive (a write killed half-way) from a checkpoint, from
the first bytes and the zip end record alone. :func:`check_resume_checkpoint` goes further for
``main.py --ckpt_path``: it unpickles the file with ``weights_only=True`` and only
:data:`RESUME_CHECKPOINT_GLOBALS` allowed, so that a checkpoint naming anything else is refused
before Lightning opens it (Lightning loads with ``weights_only=None``, which on torch 2.4 / 2.5
runs any pickle).
"""

from __future__ import annotations

import collections
import contextlib
import pickle
import re
import tempfile
import zipfile
from os import PathLike
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import torch
from fsspec.core import split_protocol

from utils.checkpoint_digest import verify_digest
from utils.errors import UserError, render

FETCHED_SCHEMES = ("http", "https", "file")
"""URL schemes of a checkpoint path that are fetched to (or read as) a local file and then checked
like one; any other scheme (``s3://``, ``hf://``, ...) is refused: Lightning would unpickle it unchecked."""

ZIP_MAGIC = b"PK\x03\x04"
"""First bytes of torch's zip checkpoint format (``torch.save`` since 1.6)."""

LEGACY_TORCH_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
"""torch's legacy format starts with a pickle (protocol >= 2) of this magic number (opcode
``LONG1``), right after the pickle's protocol header."""

RESUME_CHECKPOINT_GLOBALS: tuple[type, ...] = (collections.OrderedDict,)
"""Python globals a training checkpoint of this project pickles besides torch's own tensors and
storages (torch's ``weights_only`` loader allows those). Measured on toy runs (AdamW + linear,
SGD + cosine, 32-true and bf16-mixed, with validation and the resume checkpoint): the state
dicts' ``OrderedDict`` only; hyperparameters, loop progress, callback and data-order states are
plain dicts, lists, numbers and strings."""

UNPICKLED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class RefusedCheckpointError(UserError):
    """A checkpoint whose pickle names something a checkpoint of this project never holds."""


def checkpoint_file_problem(path: str | PathLike[str]) -> str | None:
    """Why ``path`` cannot be a torch checkpoint, or None when it looks like one.

    Reads the first bytes and, for a zip archive, its end record (a truncated archive has none).
    The reason completes a sentence starting with the file name: ``"is empty (0 bytes)"``.
    """
    path = Path(path)
    with path.open("rb") as stream:
        head = stream.read(32)
    if not head:
        return "is empty (0 bytes), not a checkpoint"
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path):
                return None
        except zipfile.BadZipFile:
            return "is torn: a zip archive without its end (its write was interrupted, e.g. the run was killed)"
    if head[:1] == b"\x80" and LEGACY_TORCH_MAGIC in head:  # after the protocol (and frame) header
        return None
    return f"is not a torch checkpoint (neither a torch zip archive nor a legacy torch file; it starts with {head[:8]!r})"


def local_checkpoint(path: str | PathLike[str], folder: str | PathLike[str] | None = None) -> str:
    """``path`` as a local file name: a ``file://`` URL read as its file, an ``http(s)://`` one
    downloaded to ``folder`` (a new temporary folder by default), anything else unchanged.

    The caller checks the local file as it checks any other (nothing is unpickled here).

    Raises:
        UserError: another URL scheme, or the download failed (one line naming the URL).
    """
    text = str(path)
    scheme = urlparse(text).scheme.lower() if "://" in text else (split_protocol(text)[0] or "")
    if not scheme:
        return text
    if scheme not in FETCHED_SCHEMES:
        spelled = f"{scheme}://" if "://" in text else f"{scheme}:"
        raise UserError(f"checkpoint {text[:80]}: {spelled} paths are not read; copy the file here and pass its local path")
    if scheme == "file":
        return url2pathname(urlparse(text).path)
    name = Path(unquote(urlparse(text).path)).name or "checkpoint.ckpt"
    target = Path(folder if folder is not None else tempfile.mkdtemp(prefix="ckpt-")) / name
    try:
        torch.hub.download_url_to_file(text, str(target), progress=False)
    except Exception as error:  # urllib's URLError / HTTPError, OSError, ...
        raise UserError(f"checkpoint {text} could not be downloaded ({render(error)}); "
                        "download it by hand and pass its local path") from None
    return str(target)


def other_checkpoints(path: Path, most: int = 3) -> list[str]:
    """Names of the other ``.ckpt`` files beside ``path``, ``last.ckpt`` first, then newest first."""
    others = [other for other in path.parent.glob("*.ckpt") if other.name != path.name and other.is_file()]
    others.sort(key=lambda other: (other.name != "last.ckpt", -other.stat().st_mtime))
    return [other.name for other in others[:most]]


def check_resume_checkpoint(path: str | PathLike[str]) -> None:
    """Refuse a resume checkpoint that is not a whole checkpoint of this project.

    The file is unpickled with ``weights_only=True`` (memory-mapped, so tensors are not read)
    and only :data:`RESUME_CHECKPOINT_GLOBALS` allowed besides torch's defaults.

    Raises:
        RefusedCheckpointError: its pickle names another global (nothing is called).
        ValueError: empty, not a torch checkpoint, torn or corrupt; the message names the
            other checkpoints of its folder to resume from instead.
    """
    path = Path(path)
    problem = checkpoint_file_problem(path)
    if problem is None:
        try:
            with _allowed(RESUME_CHECKPOINT_GLOBALS):
                payload = torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip(path))
        except pickle.UnpicklingError as error:
            found = UNPICKLED_GLOBAL.search(str(error))
            what = f"a pickled {found.group(1)}" if found else f"something a weights-only load refuses ({render(error)})"
            raise RefusedCheckpointError(
                f"checkpoint {path} holds {what}, which no checkpoint of this project holds: refused, not executed"
            ) from None
        except Exception as error:  # torch's zip reader raises RuntimeError, OSError, ...
            problem = f"is corrupt ({render(error)})"
        else:
            verify_digest(payload, path)
    if problem is not None:
        others = other_checkpoints(path)
        instead = f"resume from one of {', '.join(others)} in {path.parent}" if others else (
            "resume from last.ckpt or the previous checkpoint of the run")
        raise UserError(f"checkpoint {path} {problem}; {instead} instead")


def _allowed(globals_: tuple[type, ...]) -> contextlib.AbstractContextManager:
    """``torch.serialization.safe_globals`` (torch >= 2.5); torch 2.4 allows ``OrderedDict`` already."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    return safe_globals(list(globals_)) if safe_globals is not None else contextlib.nullcontext()


def _is_zip(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(len(ZIP_MAGIC)) == ZIP_MAGIC
