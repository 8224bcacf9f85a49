"""A digest of a checkpoint's tensors, stored in it when written and checked when read.

:func:`with_digest` adds ``tensors_sha256`` to a checkpoint dict: the SHA-256 of every tensor it
holds (its key path, dtype, shape and bytes, in key order), so that a file whose bytes changed
after it was written (a bit flip on disk, a bad copy) but still unpickles is told apart.
:func:`verify_digest` recomputes it on load; a checkpoint without one (older, or not written by
this project) loads as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from os import PathLike
from typing import Any

import torch

from utils.errors import UserError

DIGEST_KEY = "tensors_sha256"
"""Top-level key of a checkpoint dict holding :func:`tensors_digest` of the rest."""


def _tensors(node: Any, key: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """``(key path, tensor)`` of every tensor in nested dicts, lists and tuples, in a fixed order."""
    if isinstance(node, torch.Tensor):
        yield key, node
    elif isinstance(node, Mapping):
        for name in sorted(node, key=str):
            if not (key == "" and name == DIGEST_KEY):
                yield from _tensors(node[name], f"{key}/{name}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _tensors(value, f"{key}/{index}")


def tensors_digest(checkpoint: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of every tensor in ``checkpoint`` but the digest itself."""
    digest = hashlib.sha256()
    for key, tensor in _tensors(checkpoint):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def with_digest(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` with :data:`DIGEST_KEY` set (the same dict, changed in place)."""
    checkpoint[DIGEST_KEY] = tensors_digest(checkpoint)
    return checkpoint


def verify_digest(checkpoint: Mapping[str, Any], path: str | PathLike[str]) -> None:
    """Check the digest a checkpoint read from ``path`` carries; one without passes.

    Raises:
        UserError: the tensors differ from those written (one line naming the file).
    """
    stored = checkpoint.get(DIGEST_KEY) if isinstance(checkpoint, Mapping) else None
    if isinstance(stored, str) and tensors_digest(checkpoint) != stored:
        raise UserError(
            f"checkpoint {path} is corrupt: its tensors differ from the digest written with them "
            "(the file changed on disk or in a copy); use another checkpoint or copy it again"
        )
