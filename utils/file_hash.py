"""SHA-256 of files, and checking a downloaded or given file against the digest it must have."""

from __future__ import annotations

import hashlib
import re
from os import PathLike
from pathlib import Path

from utils.errors import UserError

HASH_BLOCK_BYTES = 1 << 20
NAME_DIGEST = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
"""torch.hub's convention for published files, ``<name>-<leading hex digits of the SHA-256>.<ext>``
(torchvision's ``resnet18-f37072fd.pth``, DINOv3's ``..._lvd1689m-73cec8be.pth``)."""


def file_sha256(path: str | PathLike[str]) -> str:
    """Full SHA-256 (hex) of a file's bytes, read in blocks.

    Raises:
        FileNotFoundError: no such file.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while block := stream.read(HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def digest_in_name(file_name: str) -> str | None:
    """The leading hex digits of the SHA-256 that a published file's name carries, if any."""
    match = NAME_DIGEST.search(file_name)
    return match.group(1) if match else None


def check_sha256(path: str | PathLike[str], expected: str, what: str, skip_hint: str) -> None:
    """Raise ``ValueError`` unless the SHA-256 of ``path`` starts with ``expected`` (a full digest,
    or the leading digits a published name carries).

    Args:
        path: the file.
        expected: the digest (or its beginning), hex.
        what: the file's name in the message (``"the released dino_salad.ckpt"``).
        skip_hint: how to skip the check for a file of one's own (a flag or an argument).
    """
    actual = file_sha256(path)
    if not actual.startswith(expected.lower()):
        raise UserError(
            f"{path}: its SHA-256 {actual[:16]}... is not that of {what} ({expected[:16]}...): the file is corrupt, "
            f"truncated or another one; download it again (or, for a file of your own, {skip_hint})"
        )
