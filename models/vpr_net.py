"""VPRNet: a backbone and an aggregator from the registries, images in, global descriptors out."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
import torch.nn as nn

from models.pretrained import read_state_dict
from models.registry import AGGREGATORS, BACKBONES

Features = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class VPRNet(nn.Module):
    """Backbone + aggregator. The state dict reads ``backbone.*`` and ``aggregator.*``, the
    layout of the released SALAD checkpoints.

    Shapes: ``forward(images [B, 3, H, W]) -> [B, D]``, L2-normalised.
    """

    def __init__(self, backbone: nn.Module, aggregator: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.aggregator = aggregator

    def forward_features(self, images: torch.Tensor) -> Features:
        """The backbone's output: ``[B, C, h, w]`` or ``([B, C, h, w], token [B, C])``."""
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.aggregator(self.forward_features(images))


def build_backbone(arch: str, config: Mapping[str, Any] | None = None) -> nn.Module:
    return BACKBONES.build(arch, **dict(config or {}))


def build_aggregator(arch: str, config: Mapping[str, Any] | None = None) -> nn.Module:
    return AGGREGATORS.build(arch, **dict(config or {}))


# The names aggregators give the width of their input, in order of preference.
CHANNEL_ARGUMENTS = ("num_channels", "in_channels", "in_dim")


def aggregator_channel_argument(agg_arch: str) -> str | None:
    """The argument of :data:`CHANNEL_ARGUMENTS` that aggregator ``agg_arch`` takes, if any."""
    parameters = inspect.signature(AGGREGATORS.get(agg_arch)).parameters
    return next((name for name in CHANNEL_ARGUMENTS if name in parameters), None)


def complete_agg_config(agg_arch: str, agg_config: Mapping[str, Any] | None, backbone: nn.Module) -> dict[str, Any]:
    """``agg_config`` with the aggregator's input width taken from ``backbone.out_channels`` when absent."""
    config = dict(agg_config or {})
    argument = aggregator_channel_argument(agg_arch)
    if argument is not None and config.get(argument) is None:
        out_channels = getattr(backbone, "out_channels", None)
        if out_channels is None:
            raise ValueError(f"the backbone does not report out_channels; give the aggregator's {argument} in its configuration")
        config[argument] = int(out_channels)
    return config


def build_vpr_net(
    backbone_arch: str,
    backbone_config: Mapping[str, Any] | None = None,
    agg_arch: str = "SALAD",
    agg_config: Mapping[str, Any] | None = None,
) -> VPRNet:
    """Build a VPRNet from registered names and their keyword arguments (the backbone first,
    then the aggregator, whose input width defaults to the backbone's ``out_channels``)."""
    backbone = build_backbone(backbone_arch, backbone_config)
    return VPRNet(backbone, build_aggregator(agg_arch, complete_agg_config(agg_arch, agg_config, backbone)))


def load_weights(model: nn.Module, path: str | PathLike[str]) -> nn.Module:
    """Load a checkpoint file (a bare state dict or a Lightning checkpoint) strictly into ``model``."""
    return load_network_state(model, read_state_dict(path), path)


def load_network_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | PathLike[str]) -> nn.Module:
    """Load the network part of ``state_dict`` strictly into ``model``.

    Keys that a Lightning checkpoint of this project keeps beside the network (the loss, ...)
    are not part of the network and are ignored; a missing or unexpected *network* key is an
    error naming ``source``.
    """
    state_dict = {k: v for k, v in state_dict.items() if k.startswith(("backbone.", "aggregator."))}
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # size mismatches
        mismatch = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise ValueError(f"checkpoint {source} does not fit this architecture: {mismatch}") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} keys (first: {result.missing_keys[0]})")
    if result.unexpected_keys:
        problems.append(f"unexpected {len(result.unexpected_keys)} keys (first: {result.unexpected_keys[0]})")
    if problems:
        raise ValueError(f"checkpoint {source} does not fit this architecture: {'; '.join(problems)}")
    return model
