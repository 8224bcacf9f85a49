"""The image size a model runs at: given, a released model's, or the one its checkpoint was validated at.

One rule for every tool (``eval.py``, ``tools.export_onnx``): an explicit ``image_size`` wins, then
a released model's evaluation size, then, where the caller asks for it, the validation size a
training checkpoint records (``VPRModel`` writes it as :data:`VALIDATION_SIZE_KEY`; a checkpoint
of an older run is looked up in the ``config.yaml`` Lightning saved beside its ``checkpoints/``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from utils.errors import UserError

VALIDATION_SIZE_KEY = "val_image_size"
"""The checkpoint key holding the ``[height, width]`` a training run validated at."""
RUN_CONFIG_FILE = "config.yaml"
"""The resolved configuration Lightning's CLI writes into a run folder."""


def image_size_pair(values: Sequence[int], source: str = "image_size") -> tuple[int, int]:
    """``(height, width)`` from one value (a square) or two.

    Raises:
        UserError: not one or two positive integers.
    """
    values = [int(value) for value in values]
    if not 1 <= len(values) <= 2 or min(values) < 1:
        raise UserError(f"{source}={values} must be one or two positive integers (N, or H W)")
    return values[0], values[-1]


def _size_in_run_config(checkpoint: Path) -> tuple[int, int] | None:
    """The validation size in the ``config.yaml`` of the run folder holding ``checkpoint``
    (``<run>/checkpoints/<name>.ckpt``), if there is one."""
    config_file = checkpoint.resolve().parent.parent / RUN_CONFIG_FILE
    if checkpoint.resolve().parent.name != "checkpoints" or not config_file.is_file():
        return None
    import yaml  # a dependency of Lightning's CLI

    try:
        config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    data = config.get("data") if isinstance(config, Mapping) else None
    if not isinstance(data, Mapping):
        return None
    size = data.get("val_image_size") or data.get("image_size")
    return image_size_pair(size, f"{config_file}: image_size") if isinstance(size, Sequence) else None


def validated_image_size(checkpoint: str | PathLike[str], payload: Mapping[str, Any] | None = None) -> tuple[int, int] | None:
    """``(height, width)`` the training run of ``checkpoint`` validated at, or None (a bare state dict,
    or a checkpoint whose run left no record of it).

    Args:
        checkpoint: the checkpoint file, or its ``http(s)://`` or ``file://`` URL (an ``http(s)://``
            one has no run folder to look in).
        payload: its loaded contents, when the caller has read it already.
    """
    from utils.checkpoint_files import checkpoint_file

    if payload is None:
        from models.pretrained import read_checkpoint

        payload = read_checkpoint(checkpoint)
    size = payload.get(VALIDATION_SIZE_KEY)
    if isinstance(size, Sequence) and size:
        return image_size_pair(size, f"checkpoint {checkpoint}: {VALIDATION_SIZE_KEY}")
    local = checkpoint_file(checkpoint)
    return _size_in_run_config(local) if local is not None else None


def resolve_image_size(
    image_size: Sequence[int] | None,
    released: str | None = None,
    checkpoint: str | PathLike[str] | None = None,
    required: bool = False,
) -> tuple[int, int] | None:
    """``(height, width)``: ``image_size`` (one value: a square), else ``released``'s evaluation size,
    else the size ``checkpoint``'s run validated at; None (native resolution) when none applies.

    Args:
        image_size: the size asked for, or None.
        released: a name of ``models.released.RELEASED_MODELS``, or None.
        checkpoint: a checkpoint whose validation size is the default; None: not looked up.
        required: raise instead of returning None.

    Raises:
        UserError: a malformed ``image_size``, or none found when ``required``.
    """
    if image_size is not None:
        return image_size_pair(image_size)
    if released is not None:
        from models.released import released_model

        return released_model(released).image_size
    if checkpoint is not None:
        size = validated_image_size(checkpoint)
        if size is not None:
            return size
    if required:
        where = f"checkpoint {checkpoint} records no validation size" if checkpoint is not None else "no checkpoint"
        raise UserError(f"no image size known ({where}): give image_size=H W, e.g. image_size=322 322, or released=NAME")
    return None
