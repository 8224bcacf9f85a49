"""Rows of a comparison table (``utils.evaluation.comparison``): a released model, from its local
file or downloaded, at its authors' evaluation size; a checkpoint of one's own at native resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from models.architecture import Architecture
from models.loading import load_network
from models.released import RELEASE_NAMES, canonical_release_name, released_model
from utils.checkpoint_files import checkpoint_file, checkpoint_name, missing_file_problem
from utils.errors import UserError, UserFileError
from utils.evaluation.comparison import ComparedModel
from utils.evaluation.pipeline import DescribedModel


@dataclass(frozen=True)
class ReleasedEntry:
    """A released model asked for by name, with a local copy of its file or none (then downloaded).

    Attributes:
        name: a key of ``models.released.RELEASED_MODELS``.
        path: the released file (or a fine-tune of the same architecture) on disk, or its
            ``http(s)://`` or ``file://`` URL, as given.
    """

    name: str
    path: str | None = None


def parse_released_entry(text: str) -> ReleasedEntry:
    """``NAME`` or ``NAME=FILE`` as a :class:`ReleasedEntry`.

    Raises:
        UserError: ``NAME`` is not a release (the message lists them), or ``FILE`` is empty.
    """
    name, separator, path = text.partition("=")
    if name not in RELEASE_NAMES:
        raise UserError(f"unknown released model {name!r}; released: {', '.join(RELEASE_NAMES)}")
    name = canonical_release_name(name)
    if separator and not path:
        raise UserError(f"{text!r}: give the file after '=' (NAME=FILE), or the name alone to download it")
    return ReleasedEntry(name, path if separator else None)


def released_row(name: str, path: str | PathLike[str] | None = None, verify: bool = True) -> ComparedModel:
    """The release ``name`` as a row, from its ``path`` (a local file or its URL) or downloaded
    (torch.hub's cache), evaluated at its authors' size.

    Raises:
        UserFileError: the local ``path`` does not exist or is a folder.
        UserError: a URL scheme other than http, https and file.
    """
    release = released_model(name)
    local = checkpoint_file(path) if path is not None else None
    problem = missing_file_problem(local) if local is not None else None
    if problem is not None:
        raise UserFileError(f"{name}: the released file {path} {problem}; give the path of {release.file_name}")

    def load() -> DescribedModel:
        loaded = load_network(path, release=name, verify=verify)
        weights = "checkpoint" if path is not None else f"released {name}"
        return DescribedModel.of(loaded.network, weights, loaded.path)

    return ComparedModel(name, load, release.image_size)


def checkpoint_row(
    path: str | PathLike[str], fallback: Architecture | None = None, name: str | None = None
) -> ComparedModel:
    """A checkpoint of one's own as a row named after its file, evaluated at native resolution.

    Args:
        path: a checkpoint of this project (it carries its architecture) or a bare state dict, or
            its ``http(s)://`` or ``file://`` URL.
        fallback: the architecture of a bare state dict.
        name: the row's name (default: the file's stem).

    Raises:
        UserFileError: the local ``path`` does not exist or is a folder.
        UserError: a URL scheme other than http, https and file.
    """
    local = checkpoint_file(path)
    problem = missing_file_problem(local) if local is not None else None
    if problem is not None:
        raise UserFileError(f"checkpoint {path} {problem}")

    def load() -> DescribedModel:
        loaded = load_network(path, architecture=fallback)
        return DescribedModel(loaded.network, loaded.architecture.as_dict(), loaded.weights, loaded.path)

    return ComparedModel(name or Path(checkpoint_name(path)).stem, load, None)
