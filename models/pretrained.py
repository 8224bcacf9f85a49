"""Pretrained weights: a local file when given, else a download through torch.hub's cache.

Nothing here runs at import; a download happens only when a builder is asked for
``pretrained=True`` without a local ``pretrained_path``.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch

from utils.checkpoint_digest import verify_digest
from utils.checkpoint_files import checkpoint_file_problem, reads_checkpoint, refused_pickle_content, require_checkpoint_file
from utils.errors import UserError, render
from utils.file_hash import check_sha256, digest_in_name

log = logging.getLogger(__name__)


@reads_checkpoint
def read_checkpoint(path: str | PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file safely: a bare state dict or a Lightning checkpoint dict.

    ``weights_only=True``: a file that would run code when unpickled is refused, never executed.
    An empty file, a file that is not a torch checkpoint and a torn one are told apart first (the
    same test main.py's resume makes). An ``http(s)://`` or ``file://`` URL is read as its local
    copy (:func:`utils.checkpoint_files.reads_checkpoint`).
    """
    path = Path(path)
    require_checkpoint_file(path)
    problem = checkpoint_file_problem(path)
    if problem is not None:
        raise UserError(f"checkpoint {path} {problem}: pass a .ckpt/.pth file saved by main.py or torch.save")
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, ...
        what = f"it holds {refused_pickle_content(error)}" if isinstance(error, pickle.UnpicklingError) else render(error)
        raise UserError(
            f"checkpoint {path} is not a plain tensor file loadable with weights_only=True (refused, not executed): {what}"
        ) from None
    if not isinstance(payload, dict):
        raise UserError(f"checkpoint {path} holds a {type(payload).__name__}, not a state dict")
    verify_digest(payload, path)
    return payload


def state_dict_of(payload: dict[str, Any], source: str | PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint: the payload itself, or its ``state_dict`` (Lightning)."""
    if isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise UserError(f"checkpoint {source} holds no state dict of tensors")
    return payload


def read_state_dict(path: str | PathLike[str]) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file (bare, or under a Lightning checkpoint's ``state_dict``)."""
    return state_dict_of(read_checkpoint(path), path)


StateDictFilter = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
"""Turns a released file's state dict into this project's layout (``backbone.*``, ``aggregator.*``);
refuses (``ValueError``) a state dict in a layout it does not know."""


def filter_state_dict(
    state_dict: dict[str, torch.Tensor], checkpoint_filter: StateDictFilter | None, source: str | PathLike[str]
) -> dict[str, torch.Tensor]:
    """``checkpoint_filter(state_dict)`` (``state_dict`` itself without a filter); a refusal names ``source``."""
    if checkpoint_filter is None:
        return state_dict
    try:
        return checkpoint_filter(state_dict)
    except ValueError as error:
        raise UserError(f"checkpoint {source}: {error}") from None


class DownloadError(UserError, RuntimeError):
    """Pretrained weights that could not be downloaded; says which file to fetch by hand (a
    :class:`~utils.errors.UserError`, and a ``RuntimeError`` as before).

    Attributes:
        what: a human name of the weights.
        url: where they are published.
        file_name: the file to fetch.
        reason: why the download failed.
        argument: the argument that takes a local copy.
    """

    def __init__(self, what: str, url: str, file_name: str, reason: str, argument: str) -> None:
        where = f"""(in backbone_config='{{"{argument}": "{file_name}"}}')""" if argument == "pretrained_path" else ""
        super().__init__(
            f"could not download {what} from {url} ({reason}); fetch {file_name} by hand and pass its path as "
            f"{argument}=... {where}".rstrip()
        )
        self.what, self.url, self.file_name, self.reason, self.argument = what, url, file_name, reason, argument


def check_published_file(
    path: str | PathLike[str], file_name: str, sha256: str | None, skip_hint: str = "give it another file name"
) -> bool:
    """Check a file that carries a published ``file_name`` against the SHA-256 it must have: the
    recorded ``sha256``, else the digits torch.hub's naming puts in the name. A file under another
    name (one's own fine-tune) is not checked, nor one whose digest is known nowhere.

    Returns:
        whether the file was checked.

    Raises:
        ValueError: the digest differs (one line: the file, and to download it again).
    """
    expected = sha256 or digest_in_name(file_name)
    if expected is None or Path(path).name != file_name:
        return False
    check_sha256(path, expected, f"the published {file_name}", skip_hint)
    return True


def fetch_state_dict(
    url: str,
    pretrained_path: str | PathLike[str] | None,
    what: str,
    argument: str = "pretrained_path",
    sha256: str | None = None,
    skip_hint: str = "give it another file name",
) -> dict[str, torch.Tensor]:
    """The state dict at ``pretrained_path`` if given, else downloaded from ``url`` (through
    torch.hub's cache), checked against its SHA-256 (:func:`check_published_file`); a corrupt
    download is deleted from the cache, so the next try downloads it again.

    Args:
        url: where the official file is published.
        pretrained_path: a local copy of that file, or ``None`` to download.
        what: a human name for the weights, used in messages.
        argument: the name of the argument that takes a local file, for the offline error.
        sha256: the file's recorded SHA-256, if known.
        skip_hint: how to skip the check for one's own file under the published name.
    """
    file_name = url.rsplit("/", 1)[-1]
    if pretrained_path is not None:
        log.info("loading %s from %s", what, pretrained_path)
        check_published_file(pretrained_path, file_name, sha256, skip_hint)
        return read_state_dict(pretrained_path)
    try:
        state_dict = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True, file_name=file_name)
    except (URLError, OSError) as error:
        raise DownloadError(what, url, file_name, str(error), argument) from error
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name  # where torch.hub keeps it
    try:
        if cached.is_file():
            check_published_file(cached, file_name, sha256, skip_hint)
    except ValueError:
        cached.unlink(missing_ok=True)
        raise
    return state_dict
