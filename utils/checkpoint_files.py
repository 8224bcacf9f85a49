"""What a file given as a checkpoint is, before anything unpickles it.

:func:`checkpoint_file_problem` tells an empty file, a file that is not a torch checkpoint
(text, an image, ...) and a torn zip archive (a write killed half-way) from a checkpoint, from
the first bytes and the zip end record alone. :func:`check_resume_checkpoint` goes further for
``main.py --ckpt_path``: it unpickles the file with ``weights_only=True`` and only
:data:`RESUME_CHECKPOINT_GLOBALS` allowed, so that a checkpoint naming anything else is refused
before Lightning opens it (Lightning loads with ``weights_only=None``, which on torch 2.4 / 2.5
runs any pickle).

A checkpoint may be given by its ``http(s)://`` or ``file://`` URL wherever one is read: every
reader is decorated with :func:`reads_checkpoint`, which hands it the local file (a download, kept
until the process ends) and makes its errors name the URL; other schemes are refused in one line.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import functools
import inspect
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import torch
from fsspec.core import split_protocol

from utils.checkpoint_digest import verify_digest
from utils.errors import UserError, UserFileError, render

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
WEIGHTS_UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error: ([^\n]*?)(?:\. Please .*)?$", re.MULTILINE)
"""torch's own reason in its refusal of a weights-only load, without its advice."""
URL_PREFIX = re.compile(r"[\w.+-]+:+/*")
"""A URL's scheme with what separates it from the rest (``s3://``, ``data:``, ``simplecache::``)."""


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


def missing_file_problem(path: str | PathLike[str]) -> str | None:
    """Why a local checkpoint path names no file (``"does not exist"``, ``"is a folder, not a
    checkpoint file"``), completing a sentence that starts with the path; None for a file."""
    path = Path(path)
    if path.is_dir():
        return "is a folder, not a checkpoint file"
    return None if path.is_file() else "does not exist"


def require_checkpoint_file(path: str | PathLike[str]) -> None:
    """Refuse a local checkpoint path that names no file (:func:`missing_file_problem`).

    Raises:
        UserFileError: one line naming ``path``.
    """
    problem = missing_file_problem(path)
    if problem is not None:
        where = ": give the path of the checkpoint file in it" if Path(path).is_dir() else ""
        raise UserFileError(f"checkpoint {path} {problem}{where}")


def refused_pickle_content(error: pickle.UnpicklingError) -> str:
    """What a weights-only load refused in a pickle, from torch's refusal ``error``: ``"a pickled
    posix.system"``, without torch's advice to load the file unchecked."""
    found = UNPICKLED_GLOBAL.search(str(error))
    if found:
        return f"a pickled {found.group(1)}"
    reason = WEIGHTS_UNPICKLER_ERROR.search(str(error))
    return f"something a weights-only load refuses ({reason.group(1) if reason else type(error).__name__})"


def checkpoint_scheme(path: str | PathLike[str]) -> str:
    """The URL scheme of a checkpoint path, lowercased (``"http"``, ``"s3"``, ``"data"``, ...); ``""`` for a local path."""
    text = str(path)
    return urlparse(text).scheme.lower() if "://" in text else (split_protocol(text)[0] or "")


def checkpoint_file(path: str | PathLike[str]) -> Path | None:
    """The local file ``path`` names: itself, or a ``file://`` URL's file; None for an ``http(s)://``
    URL (downloaded when read, :func:`local_checkpoint`). Nothing is read.

    Raises:
        UserError: another URL scheme (one line naming the path and what to do).
    """
    scheme = checkpoint_scheme(path)
    if not scheme:
        return Path(path)
    if scheme not in FETCHED_SCHEMES:
        spelled = URL_PREFIX.match(str(path))
        raise UserError(f"checkpoint {str(path)[:80]}: {spelled.group(0) if spelled else scheme} paths are not read; "
                        "copy the file here and pass its local path")
    return Path(url2pathname(urlparse(str(path)).path)) if scheme == "file" else None


def checkpoint_name(path: str | PathLike[str]) -> str:
    """The name of the file a checkpoint path or URL ends with (``last.ckpt`` of ``https://host/run/last.ckpt?x=1``)."""
    return Path(unquote(urlparse(str(path)).path) if checkpoint_scheme(path) else path).name


def local_checkpoint(path: str | PathLike[str]) -> str | PathLike[str]:
    """``path`` as a local file name: a ``file://`` URL read as its file, an ``http(s)://`` one
    downloaded (once per process, :func:`download`), a local path returned as given.

    The caller checks the local file as it checks any other (nothing is unpickled here).

    Raises:
        UserError: another URL scheme, or the download failed (one line naming the URL).
    """
    local = checkpoint_file(path)
    if local is None:
        return str(download(str(path)))
    return path if not checkpoint_scheme(path) else str(local)


DOWNLOADS: dict[str, Path] = {}
"""The checkpoints this process downloaded: URL -> its copy, alone in a temporary folder removed at
exit (:func:`remove_downloads`) or at once when the copy is refused (:func:`discard_download`)."""


def download(url: str) -> Path:
    """``url``'s file, downloaded into a new temporary folder (``ckpt-*``); the same URL again in
    this process: the same copy. torch.hub writes a ``.partial`` file and renames it when whole,
    so no torn copy is ever served.

    Raises:
        UserError: the download failed (one line naming the URL); nothing is left behind.
    """
    copy = DOWNLOADS.get(url)
    if copy is not None and copy.is_file():
        return copy
    discard_download(url)  # a copy deleted meanwhile: its folder
    name = checkpoint_name(url)
    folder = Path(tempfile.mkdtemp(prefix="ckpt-"))
    target = folder / (name if name not in ("", ".", "..") else "checkpoint.ckpt")
    try:
        torch.hub.download_url_to_file(url, str(target), progress=False)
    except Exception as error:  # urllib's URLError / HTTPError, OSError, ...
        raise UserError(f"checkpoint {url} could not be downloaded ({render(error)}); "
                        "download it by hand and pass its local path") from None
    finally:
        if not target.is_file():  # failed or interrupted (torch.hub removes its .partial file)
            shutil.rmtree(folder, ignore_errors=True)
    DOWNLOADS[url] = target
    return target


def discard_download(url: str) -> None:
    """Remove the copy of ``url`` this process downloaded, if any."""
    copy = DOWNLOADS.pop(url, None)
    if copy is not None:
        shutil.rmtree(copy.parent, ignore_errors=True)


def remove_downloads(owner: int | None = None) -> None:
    """Remove every checkpoint this process downloaded (at exit; not in a forked child, ``owner``
    being the process that registered it)."""
    if owner is None or owner == os.getpid():
        for url in list(DOWNLOADS):
            discard_download(url)


atexit.register(remove_downloads, os.getpid())


def shown_checkpoint(path: str | PathLike[str]) -> str:
    """What to call a checkpoint in a message or a record: the URL a downloaded copy came from, else ``path``."""
    return next((url for url, copy in DOWNLOADS.items() if str(copy) == str(path)), str(path))


Reader = TypeVar("Reader", bound=Callable[..., Any])


def reads_checkpoint(reader: Reader) -> Reader:
    """Let ``reader``, whose first argument is a checkpoint path, take every spelling of one.

    An ``http(s)://`` or ``file://`` URL reaches ``reader`` as the local file
    (:func:`local_checkpoint`), to be checked like any other; another scheme is refused before;
    ``None`` and local paths pass unchanged. A :class:`~utils.errors.UserError` raised about the
    local copy names the URL the user gave instead, and a downloaded copy is removed at once.
    """
    first = next(iter(inspect.signature(reader).parameters))

    @functools.wraps(reader)
    def reading(*args: Any, **kwargs: Any) -> Any:
        path = args[0] if args else kwargs.get(first)
        local = path if path is None else local_checkpoint(path)
        if local is path:
            return reader(*args, **kwargs)
        if args:
            args = (local, *args[1:])
        else:
            kwargs[first] = local
        try:
            return reader(*args, **kwargs)
        except UserError as error:
            discard_download(str(path))
            if error.args and isinstance(error.args[0], str):
                error.args = (error.args[0].replace(str(local), str(path)), *error.args[1:])
            raise

    return reading  # type: ignore[return-value]


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
            raise RefusedCheckpointError(
                f"checkpoint {path} holds {refused_pickle_content(error)}, which no checkpoint of this project holds: "
                "refused, not executed"
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
