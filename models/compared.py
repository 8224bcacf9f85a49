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
from utils.errors import UserError, UserFileError
from utils.evaluation.comparison import ComparedModel
from utils.evaluation.pipeline import DescribedModel


@dataclass(frozen=True)
class ReleasedEntry:
    """A released model asked for by name, with a local copy of its file or none (then downloaded).

    Attributes:
        name: a key of ``models.released.RELEASED_MODELS``.
        path: the released file (or a fine-tune of the same architecture) on disk.
    """

    name: str
    path: Path | None = None


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
    return ReleasedEntry(name, Path(path) if separator else None)


def released_row(name: str, path: str | PathLike[str] | None = None, verify: bool = True) -> ComparedModel:
    """The release ``name`` as a row, from its local ``path`` or downloaded (torch.hub's cache),
    evaluated at its authors' size.

    Raises:
        UserFileError: ``path`` does not exist.
    """
    release = released_model(name)
    local = Path(path) if path is not None else None
    if local is not None and not local.is_file():
        raise UserFileError(f"{name}: the released file {local} does not exist; give the path of {release.file_name}")

    def load() -> DescribedModel:
        loaded = load_network(local, release=name, verify=verify)
        weights = "checkpoint" if local is not None else f"released {name}"
        return DescribedModel.of(loaded.network, weights, loaded.path)

    return ComparedModel(name, load, release.image_size)


def checkpoint_row(
    path: str | PathLike[str], fallback: Architecture | None = None, name: str | None = None
) -> ComparedModel:
    """A checkpoint of one's own as a row named after its file, evaluated at native resolution.

    Args:
        path: a checkpoint of this project (it carries its architecture) or a bare state dict.
        fallback: the architecture of a bare state dict.
        name: the row's name (default: the file's stem).

    Raises:
        UserFileError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"checkpoint {path} does not exist")

    def load() -> DescribedModel:
        loaded = load_network(path, architecture=fallback)
        return DescribedModel(loaded.network, loaded.architecture.as_dict(), loaded.weights, path)

    return ComparedModel(name or path.stem, load, None)
