"""A VPRNet from a checkpoint file: its architecture from the checkpoint or from the caller.

A Lightning checkpoint of this project (and of the published SALAD code) carries its
architecture in ``hyper_parameters``: ``backbone_arch``, ``backbone_config``, ``agg_arch`` and
``agg_config``. A bare state dict (the released ``dino_salad*.ckpt`` files) carries none, so the
caller describes it with an :class:`Architecture` (``eval.py`` builds one from its flags).

The aggregator's input width may be left out of an ``Architecture``: it is then read from the
built backbone's ``out_channels`` and written into the aggregator argument named in
:data:`CHANNEL_ARGUMENTS` that the aggregator takes.

Weights never come from the backbone's own pretrained download here: ``pretrained`` and
``pretrained_path`` are dropped from the backbone configuration, since the checkpoint (or,
with ``random_weights``, the seeded initialisation) supplies every weight.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any

from models.pretrained import read_checkpoint, state_dict_of
from models.vpr_net import VPRNet, build_aggregator, build_backbone, complete_agg_config, load_network_state

log = logging.getLogger(__name__)

HYPERPARAMETERS_KEY = "hyper_parameters"
ARCHITECTURE_FIELDS = ("backbone_arch", "backbone_config", "agg_arch", "agg_config")
WEIGHT_SOURCE_ARGUMENTS = ("pretrained", "pretrained_path")
"""Backbone arguments that fetch weights of their own; dropped when a model is rebuilt."""


@dataclass(frozen=True)
class Architecture:
    """Registry names and keyword arguments of a VPRNet's backbone and aggregator.

    Attributes:
        backbone_arch: a name of ``models.BACKBONES``, e.g. ``"dinov2_vitb14"``.
        backbone_config: its keyword arguments.
        agg_arch: a name of ``models.AGGREGATORS``, e.g. ``"SALAD"``.
        agg_config: its keyword arguments; the input width may be missing (see module docstring).
    """

    backbone_arch: str
    backbone_config: dict[str, Any] = field(default_factory=dict)
    agg_arch: str = "SALAD"
    agg_config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The four fields as a JSON-ready dict (the layout of ``hyper_parameters``)."""
        return {
            "backbone_arch": self.backbone_arch,
            "backbone_config": dict(self.backbone_config),
            "agg_arch": self.agg_arch,
            "agg_config": dict(self.agg_config),
        }


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
    present = [name for name in ARCHITECTURE_FIELDS if name in hyperparameters]
    if not present:
        return None
    missing = [name for name in ARCHITECTURE_FIELDS if name not in hyperparameters]
    if missing:
        raise ValueError(
            f"checkpoint {source}: {HYPERPARAMETERS_KEY} lacks {', '.join(missing)} "
            f"(expected all of {', '.join(ARCHITECTURE_FIELDS)})"
        )
    backbone_arch, agg_arch = hyperparameters["backbone_arch"], hyperparameters["agg_arch"]
    backbone_config = hyperparameters["backbone_config"] or {}
    agg_config = hyperparameters["agg_config"] or {}
    if not (isinstance(backbone_arch, str) and isinstance(agg_arch, str)):
        raise ValueError(f"checkpoint {source}: backbone_arch and agg_arch must be names (strings)")
    if not (isinstance(backbone_config, Mapping) and isinstance(agg_config, Mapping)):
        raise ValueError(f"checkpoint {source}: backbone_config and agg_config must be dicts")
    return Architecture(backbone_arch, dict(backbone_config), agg_arch, dict(agg_config))


def read_architecture(path: str | PathLike[str]) -> Architecture | None:
    """The architecture a checkpoint file carries (None for a bare state dict)."""
    return architecture_from_payload(read_checkpoint(path), path)


def build_network(architecture: Architecture) -> tuple[VPRNet, Architecture]:
    """Build ``architecture`` with freshly initialised weights (no pretrained download).

    The backbone is built first, then the aggregator, as ``build_vpr_net`` does, so a seed set
    just before this call gives the same weights as seeding and calling ``build_vpr_net``
    with the resolved architecture.

    Returns:
        The model (eval mode) and the resolved architecture (channel argument filled in,
        weight-source arguments dropped).
    """
    backbone_config = {
        name: value for name, value in architecture.backbone_config.items() if name not in WEIGHT_SOURCE_ARGUMENTS
    }
    backbone = build_backbone(architecture.backbone_arch, backbone_config)
    agg_config = complete_agg_config(architecture.agg_arch, architecture.agg_config, backbone)
    aggregator = build_aggregator(architecture.agg_arch, agg_config)
    resolved = replace(architecture, backbone_config=backbone_config, agg_config=agg_config)
    return VPRNet(backbone, aggregator).eval(), resolved


def load_model(
    ckpt_path: str | PathLike[str] | None,
    fallback: Architecture | None,
    random_weights: bool = False,
    seed: int = 1,
    mismatch_hint: str = "",
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
        raise ValueError("no checkpoint and no architecture: give a checkpoint, or an architecture and random weights")
    else:
        raise ValueError(f"checkpoint {ckpt_path} is a bare state dict: its architecture must be given")
    if ckpt_path is None and not random_weights:
        raise ValueError("without a checkpoint only random weights can be evaluated")

    if random_weights:
        from pytorch_lightning import seed_everything  # heavy import, only needed here

        seed_everything(seed)
    model, resolved = build_network(architecture)
    if random_weights:
        return LoadedModel(model, resolved, source, f"random (seed {seed})")
    try:
        load_network_state(model, state_dict_of(payload, ckpt_path), ckpt_path)
    except ValueError as error:
        if source == "checkpoint" or not mismatch_hint:
            raise
        raise ValueError(f"{error}; {mismatch_hint}") from None
    log.info("loaded the weights of %s", Path(ckpt_path))
    return LoadedModel(model, resolved, source, "checkpoint")
