"""Architecture: the registry names and keyword arguments that describe a VPRNet.

One description serves everywhere a network is made: training (the LightningModule's
hyperparameters are exactly these four fields, so every checkpoint carries them), checkpoint
loading, evaluation, torch.hub, ONNX export. ``models.vpr_net.build_network`` turns it into a
network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from os import PathLike
from typing import Any

from utils.errors import UserError

ARCHITECTURE_FIELDS = ("backbone_arch", "backbone_config", "agg_arch", "agg_config")
"""The four fields, also the keys of a checkpoint's ``hyper_parameters`` that describe its network."""

WEIGHT_SOURCE_ARGUMENTS = ("pretrained", "pretrained_path")
"""Backbone arguments that fetch weights of their own (dropped when a checkpoint supplies them)."""

INPUT_WIDTH_ARGUMENT = "in_channels"
"""The aggregator argument that takes the backbone's ``out_channels``."""

LEGACY_INPUT_WIDTH_ARGUMENTS = ("num_channels", "in_dim")
"""Earlier names of :data:`INPUT_WIDTH_ARGUMENT`: the published SALAD code's ``num_channels`` and
CosPlace's ``in_dim``, found in the hyperparameters of existing checkpoints."""


@dataclass(frozen=True)
class Architecture:
    """Registry names and keyword arguments of a VPRNet's backbone and aggregator.

    Attributes:
        backbone_arch: a name of ``models.BACKBONES``, e.g. ``"dinov2_vitb14"``.
        backbone_config: its keyword arguments (empty: the backbone's defaults).
        agg_arch: a name of ``models.AGGREGATORS``, e.g. ``"SALAD"``.
        agg_config: its keyword arguments; ``in_channels`` may be left out (the builder takes the
            backbone's ``out_channels``).
    """

    backbone_arch: str
    backbone_config: dict[str, Any] = field(default_factory=dict)
    agg_arch: str = "SALAD"
    agg_config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The four fields as a JSON-ready dict (the layout of a checkpoint's ``hyper_parameters``)."""
        return {
            "backbone_arch": self.backbone_arch,
            "backbone_config": dict(self.backbone_config),
            "agg_arch": self.agg_arch,
            "agg_config": dict(self.agg_config),
        }

    def without_weight_sources(self) -> Architecture:
        """This architecture with the backbone's own weight downloads and files left out."""
        config = {k: v for k, v in self.backbone_config.items() if k not in WEIGHT_SOURCE_ARGUMENTS}
        return replace(self, backbone_config=config)

    def with_configs(self, backbone_config: Mapping[str, Any], agg_config: Mapping[str, Any]) -> Architecture:
        """This architecture with ``backbone_config`` and ``agg_config`` merged over its own."""
        return replace(
            self,
            backbone_config={**self.backbone_config, **backbone_config},
            agg_config={**self.agg_config, **agg_config},
        )


def canonical_agg_config(agg_config: Mapping[str, Any], source: str = "agg_config") -> dict[str, Any]:
    """``agg_config`` with an earlier name of the input width renamed to ``in_channels``.

    Raises:
        ValueError: two names of the input width given with different values.
    """
    config = dict(agg_config)
    for legacy in LEGACY_INPUT_WIDTH_ARGUMENTS:
        if legacy not in config:
            continue
        value = config.pop(legacy)
        if config.get(INPUT_WIDTH_ARGUMENT, value) != value:
            raise UserError(
                f"{source}: {legacy}={value} and {INPUT_WIDTH_ARGUMENT}={config[INPUT_WIDTH_ARGUMENT]} disagree; "
                f"give {INPUT_WIDTH_ARGUMENT} alone"
            )
        config[INPUT_WIDTH_ARGUMENT] = value
    return config


def architecture_from_mapping(fields: Mapping[str, Any], source: str | PathLike[str]) -> Architecture | None:
    """The architecture in ``fields`` (a checkpoint's ``hyper_parameters``), or None when it names
    none of :data:`ARCHITECTURE_FIELDS`.

    Raises:
        ValueError: some of the fields but not all, or fields of the wrong type (message names
            ``source``).
    """
    present = [name for name in ARCHITECTURE_FIELDS if name in fields]
    if not present:
        return None
    missing = [name for name in ARCHITECTURE_FIELDS if name not in fields]
    if missing:
        raise UserError(
            f"checkpoint {source}: hyper_parameters lacks {', '.join(missing)} "
            f"(expected all of {', '.join(ARCHITECTURE_FIELDS)})"
        )
    backbone_arch, agg_arch = fields["backbone_arch"], fields["agg_arch"]
    backbone_config = fields["backbone_config"] or {}
    agg_config = fields["agg_config"] or {}
    if not (isinstance(backbone_arch, str) and isinstance(agg_arch, str)):
        raise UserError(f"checkpoint {source}: backbone_arch and agg_arch must be names (strings)")
    if not (isinstance(backbone_config, Mapping) and isinstance(agg_config, Mapping)):
        raise UserError(f"checkpoint {source}: backbone_config and agg_config must be dicts")
    return Architecture(backbone_arch, dict(backbone_config), agg_arch, dict(agg_config))
