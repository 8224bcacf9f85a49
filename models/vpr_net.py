"""VPRNet, a backbone and an aggregator from the registries, and the one builder that makes it.

Every network of the project (training, checkpoint loading, eval.py, torch.hub, ONNX export) is
made by :func:`build_network` from an :class:`~models.architecture.Architecture`; one with weights
from a file comes out of ``models.loading.load_network``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn

from models.architecture import INPUT_WIDTH_ARGUMENT, WEIGHT_SOURCE_ARGUMENTS, Architecture, canonical_agg_config
from models.contract import Aggregator, Backbone, BackboneOutput
from models.registry import AGGREGATORS, BACKBONES
from utils.errors import UserError


class VPRNet(nn.Module):
    """Backbone + aggregator. The state dict reads ``backbone.*`` and ``aggregator.*``, the
    layout of the released SALAD checkpoints.

    Shapes: ``forward(images [B, 3, H, W]) -> [B, D]``, L2-normalised; H and W as the backbone
    accepts them (``backbone.check_image_size``; multiples of ``patch_size`` for a ViT).

    Attributes:
        architecture: what :func:`build_network` built, every argument resolved (``None`` for a
            network assembled by hand).
    """

    def __init__(self, backbone: Backbone, aggregator: Aggregator, architecture: Architecture | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.aggregator = aggregator
        self.architecture = architecture

    @property
    def patch_size(self) -> int:
        """Input pixels per feature-map cell of the backbone (the multiple image sides snap to)."""
        return self.backbone.patch_size

    @property
    def descriptor_dim(self) -> int | None:
        """``D``, the aggregator's ``out_dim``."""
        return self.aggregator.out_dim

    def forward_features(self, images: torch.Tensor) -> BackboneOutput:
        """The backbone's output: ``feature_map [B, C, h, w]`` and ``token [B, C]`` (or None)."""
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images [B, 3, H, W]`` -> descriptors ``[B, D]``."""
        return self.aggregator(self.backbone(images))


def build_network(architecture: Architecture, pretrained_backbone: bool = True) -> VPRNet:
    """The network ``architecture`` describes, in training mode.

    The backbone is built first, then the aggregator with ``in_channels`` set to the backbone's
    ``out_channels`` (so one seed set before this call gives the same weights every time).

    Args:
        architecture: registry names and arguments. An earlier name of the aggregator's input
            width (``num_channels``, ``in_dim``) is read as ``in_channels``.
        pretrained_backbone: honour the backbone's ``pretrained``/``pretrained_path`` arguments;
            ``False`` drops them, for a network whose weights come from a checkpoint.

    Returns:
        The network; its ``architecture`` holds every argument it was built with: the given ones,
        ``in_channels``, and the builders' defaults for the others (so a checkpoint that stores it
        rebuilds the same network even if a default changes later).

    Raises:
        ValueError: an unknown name, an argument a builder refuses, or an ``in_channels`` that
            is not the backbone's width.
    """
    if not pretrained_backbone:
        architecture = architecture.without_weight_sources()
    backbone = BACKBONES.build(architecture.backbone_arch, **architecture.backbone_config)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"backbone {architecture.backbone_arch!r} does not follow the contract (models.contract.Backbone)")
    agg_config = canonical_agg_config(architecture.agg_config)
    width = agg_config.get(INPUT_WIDTH_ARGUMENT)
    if width is not None and width != backbone.out_channels:
        raise UserError(
            f"aggregator {architecture.agg_arch}: {INPUT_WIDTH_ARGUMENT}={width}, but backbone "
            f"{architecture.backbone_arch} gives {backbone.out_channels} channels; leave {INPUT_WIDTH_ARGUMENT} out"
        )
    agg_config[INPUT_WIDTH_ARGUMENT] = backbone.out_channels
    aggregator = AGGREGATORS.build(architecture.agg_arch, **agg_config)
    if not isinstance(aggregator, Aggregator):
        raise TypeError(f"aggregator {architecture.agg_arch!r} does not follow the contract (models.contract.Aggregator)")
    resolved = Architecture(
        architecture.backbone_arch,
        with_defaults(BACKBONES.get(architecture.backbone_arch), architecture.backbone_config),
        architecture.agg_arch,
        with_defaults(AGGREGATORS.get(architecture.agg_arch), agg_config),
    )
    return VPRNet(backbone, aggregator, resolved)


def with_defaults(builder: Callable[..., nn.Module], config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` completed with the defaults of ``builder``'s other keyword arguments, except the
    weight sources (``pretrained``, ``pretrained_path``: how weights were fetched, not what the
    network is). JSON-friendly: tuples become lists."""
    defaults = {
        name: list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
        for name, parameter in inspect.signature(builder).parameters.items()
        if parameter.default is not inspect.Parameter.empty and name not in WEIGHT_SOURCE_ARGUMENTS
    }
    return {**defaults, **config}


def build_vpr_net(
    backbone_arch: str,
    backbone_config: Mapping[str, Any] | None = None,
    agg_arch: str = "SALAD",
    agg_config: Mapping[str, Any] | None = None,
) -> VPRNet:
    """``build_network(Architecture(backbone_arch, backbone_config, agg_arch, agg_config))``."""
    return build_network(Architecture(backbone_arch, dict(backbone_config or {}), agg_arch, dict(agg_config or {})))
