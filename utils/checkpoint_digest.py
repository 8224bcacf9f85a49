"""A digest of a checkpoint's content, stored in it when written and checked when read.

:func:`with_digest` adds two keys to a checkpoint dict: ``tensors_sha256``, the SHA-256 of every
tensor it holds (its key path, dtype, shape and bytes, in key order), and ``content_sha256``, the
SHA-256 of that digest and of every plain value besides (numbers, strings, booleans, ``None``:
the optimizer's learning rate, the hyperparameters, the loops' counters). A file whose bytes
changed after it was written (a bit flip on disk, a bad copy) but still unpickles is told apart.
:func:`verify_digest` recomputes them on load; a checkpoint without them (older, or not written by
this project) loads as before, and one with the tensors' digest only (written before
``content_sha256`` existed) has its tensors checked.
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
CONTENT_KEY = "content_sha256"
"""Top-level key of a checkpoint dict holding :func:`content_digest` of the rest."""
DIGEST_KEYS = (DIGEST_KEY, CONTENT_KEY)
PLAIN_TYPES = (bool, int, float, str, bytes, type(None))
"""Values hashed by :func:`content_digest` besides tensors (others, such as numpy scalars, are
left out: their form after a round trip through the file is not guaranteed)."""


def _leaves(node: Any, kinds: tuple[type, ...], key: str = "") -> Iterator[tuple[str, Any]]:
    """``(key path, value)`` of every value of ``kinds`` in nested dicts, lists and tuples (lists
    and tuples alike), in a fixed order; the digests themselves left out."""
    if isinstance(node, kinds):
        yield key, node
    elif isinstance(node, Mapping):
        for name in sorted(node, key=str):
            if not (key == "" and name in DIGEST_KEYS):
                yield from _leaves(node[name], kinds, f"{key}/{name}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _leaves(value, kinds, f"{key}/{index}")


def tensors_digest(checkpoint: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of every tensor in ``checkpoint`` but the digest itself."""
    digest = hashlib.sha256()
    for key, tensor in _leaves(checkpoint, (torch.Tensor,)):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def content_digest(checkpoint: Mapping[str, Any], tensors: str) -> str:
    """SHA-256 (hex) of ``tensors`` (:func:`tensors_digest` of ``checkpoint``) and of every plain
    value of ``checkpoint`` but the digests, each with its key path and type."""
    digest = hashlib.sha256(tensors.encode())
    for key, value in _leaves(checkpoint, PLAIN_TYPES):
        digest.update(f"{key}|{type(value).__name__}|{value!r}\n".encode())
    return digest.hexdigest()


def with_digest(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` with :data:`DIGEST_KEY` and :data:`CONTENT_KEY` set (the same dict, changed in place)."""
    tensors = tensors_digest(checkpoint)
    checkpoint[DIGEST_KEY] = tensors
    checkpoint[CONTENT_KEY] = content_digest(checkpoint, tensors)
    return checkpoint


def verify_digest(checkpoint: Mapping[str, Any], path: str | PathLike[str]) -> None:
    """Check the digests a checkpoint read from ``path`` carries; one without passes.

    Raises:
        UserError: its tensors or its other values differ from those written (one line naming the file).
    """
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get(DIGEST_KEY), str):
        return
    tensors = tensors_digest(checkpoint)
    if tensors != checkpoint[DIGEST_KEY]:
        what = "its tensors differ"
    elif isinstance(checkpoint.get(CONTENT_KEY), str) and content_digest(checkpoint, tensors) != checkpoint[CONTENT_KEY]:
        what = "its values (learning rate, settings, counters) differ"
    else:
        return
    raise UserError(f"checkpoint {path} is corrupt: {what} from the digest written with them (the file changed on "
                    "disk or in a copy); use another checkpoint or copy it again")
