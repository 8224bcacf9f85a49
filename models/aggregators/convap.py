"""Conv-AP aggregator (Ali-bey et al., "GSV-Cities", Neurocomputing 2022).

A 1x1 convolution reduces the channels, adaptive average pooling reduces the map to ``s1 x s2``
cells, and the flattened result is L2-normalised.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.contract import Aggregator, BackboneOutput
from models.registry import AGGREGATORS
from utils.errors import UserError


@AGGREGATORS.register("ConvAP")
class ConvAP(Aggregator):
    """Channel-reducing 1x1 convolution, adaptive average pooling, flatten, L2 normalisation.

    ``forward(BackboneOutput(feature_map [B, in_channels, H, W], ...)) -> descriptors
    [B, out_channels * s1 * s2]``, unit L2 norm; the descriptor is laid out channel-major
    (``[C, s1, s2]`` flattened); the token, if any, is not used.

    Args:
        in_channels: channels of the input feature map.
        out_channels: channels after the 1x1 convolution (512 as published).
        s1: rows of the pooled grid.
        s2: columns of the pooled grid.
    """

    def __init__(self, in_channels: int, out_channels: int = 512, s1: int = 2, s2: int = 2) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("s1", s1), ("s2", s2)):
            if value <= 0:
                raise UserError(f"ConvAP {name} must be positive, got {value}")
        self.channel_pool = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True)
        self.AAP = nn.AdaptiveAvgPool2d((s1, s2))  # published attribute name, kept for checkpoints
        self.in_channels = in_channels
        self.out_dim: int = out_channels * s1 * s2

    def aggregate(self, features: BackboneOutput) -> torch.Tensor:
        """``feature_map [B, in_channels, H, W]`` -> ``descriptors [B, out_channels * s1 * s2]``."""
        pooled = self.AAP(self.channel_pool(features.feature_map))  # [B, out_channels, s1, s2]
        return F.normalize(pooled.flatten(1), p=2, dim=1)
