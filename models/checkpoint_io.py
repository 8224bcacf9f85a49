"""A VPRNet from a checkpoint file: its architecture from the checkpoint or from the caller.

A Lightning checkpoint of this project (and of the published SALAD code) carries its
architecture in ``hyper_parameters``: ``backbone_arch``, ``backbone_config``, ``agg_arch`` and
``agg_config``. A bare state dict (the released ``dino_salad*.ckpt`` files) carries none, so the
caller describes it with an :class:`~models.architecture.Architecture` (``eval.py`` builds one
from its flags, or from a released model's name).

Weights never come from the backbone's own pretrained download here: ``pretrained`` and
``pretrained_path`` are dropped from the backbone configuration, since the checkpoint (or,
with ``random_weights``, the seeded initialisation) supplies every weight.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from models.architecture import Architecture, architecture_from_mapping
from models.pretrained import StateDictFilter, filter_state_dict, read_checkpoint, state_dict_of
from models.vpr_net import VPRNet, build_network, build_network_with_weights
from utils.errors import UserError

log = logging.getLogger(__name__)

HYPERPARAMETERS_KEY = "hyper_parameters"


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference and where its parts came from.

    Attributes:
        model: the network in eval mode, on the CPU.
        architecture: the architecture built, with every argument resolved.
        architecture_source: ``"checkpoint"`` (its ``hyper_parameters``) or ``"caller"``.
        weights: ``"checkpoint"`` or ``"random (seed N)"``.
    """

    model: VPRNet
    architecture: Architecture
    architecture_source: str
    weights: str


def architecture_from_payload(payload: Mapping[str, Any], source: str | PathLike[str]) -> Architecture | None:
    """The architecture stored in a loaded checkpoint, or None when it stores none.

    Args:
        payload: what ``models.pretrained.read_checkpoint`` returned.
        source: the checkpoint file, for messages.

    Raises:
        ValueError: ``hyper_parameters`` names some architecture fields but not all, or holds
            them with the wrong types.
    """
    hyperparameters = payload.get(HYPERPARAMETERS_KEY)
    if not isinstance(hyperparameters, Mapping):
        return None
    return architecture_from_mapping(hyperparameters, source)


def read_architecture(path: str | PathLike[str]) -> Architecture | None:
    """The architecture a checkpoint file carries (None for a bare state dict)."""
    return architecture_from_payload(read_checkpoint(path), path)


def load_model(
    ckpt_path: str | PathLike[str] | None,
    fallback: Architecture | None,
    random_weights: bool = False,
    seed: int = 1,
    mismatch_hint: str = "",
    checkpoint_filter: StateDictFilter | None = None,
) -> LoadedModel:
    """The model of a checkpoint, built from the architecture it carries or from ``fallback``.

    Args:
        ckpt_path: a Lightning checkpoint (architecture inside) or a bare state dict; None
            only with ``random_weights`` and a ``fallback``.
        fallback: the architecture of a bare state dict (unused when the checkpoint carries
            its own).
        random_weights: keep the initial weights: ``pytorch_lightning.seed_everything(seed)``
            then build; the checkpoint, if given, only supplies the architecture.
        seed: the seed of ``random_weights``.
        mismatch_hint: appended to the error when a state dict does not fit ``fallback``
            (e.g. which command-line flags describe the architecture).
        checkpoint_filter: turns a bare state dict in another layout (a released file of other
            authors, ``models.released.ReleasedModel.checkpoint_filter``) into this project's.

    Raises:
        FileNotFoundError: ``ckpt_path`` does not exist.
        ValueError: no architecture known, or a state dict that does not fit it.
    """
    payload = read_checkpoint(ckpt_path) if ckpt_path is not None else None  # read once: weights and architecture
    stored = architecture_from_payload(payload, ckpt_path) if payload is not None else None
    if stored is not None:
        architecture, source = stored, "checkpoint"
    elif fallback is not None:
        architecture, source = fallback, "caller"
    elif ckpt_path is None:
        raise UserError("no checkpoint and no architecture: give a checkpoint, or an architecture and random weights")
    else:
        raise UserError(f"checkpoint {ckpt_path} is a bare state dict: its architecture must be given")
    if ckpt_path is None and not random_weights:
        raise UserError("without a checkpoint only random weights can be evaluated")

    if random_weights:
        from pytorch_lightning import seed_everything  # heavy import, only needed here

        seed_everything(seed)
        model = build_network(architecture, pretrained_backbone=False).eval()
        return LoadedModel(model, model.architecture, source, f"random (seed {seed})")
    try:
        state_dict = state_dict_of(payload, ckpt_path)
        if source == "caller":
            state_dict = filter_state_dict(state_dict, checkpoint_filter, ckpt_path)
        model = build_network_with_weights(architecture, state_dict, ckpt_path)
    except UserError as error:
        if source == "checkpoint" or not mismatch_hint:
            raise
        raise UserError(f"{error}; {mismatch_hint}") from None
    log.info("loaded the weights of %s", Path(ckpt_path))
    return LoadedModel(model, model.architecture, source, "checkpoint")
