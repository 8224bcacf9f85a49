"""CosPlace aggregator (Berton et al., "Rethinking Visual Geo-localization for Large-Scale
Applications", CVPR 2022), as used in the GSV-Cities/SALAD code.

Order of operations, as published: L2-normalise every feature vector along the channels, GeM-pool,
project with a linear layer, L2-normalise the descriptor.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.aggregators.gem import GeMPool
from models.contract import Aggregator, BackboneOutput
from models.registry import AGGREGATORS
from utils.errors import UserError


@AGGREGATORS.register("CosPlace")
class CosPlace(Aggregator):
    """Channel-wise L2 normalisation, GeM pooling, linear projection, L2 normalisation.

    ``forward(BackboneOutput(feature_map [B, in_channels, H, W], ...)) -> descriptors [B, out_dim]``,
    unit L2 norm (the token, if any, is not used).

    Args:
        in_channels: channels of the input feature map.
        out_dim: size of the descriptor.
    """

    def __init__(self, in_channels: int, out_dim: int) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_dim", out_dim)):
            if value <= 0:
                raise UserError(f"CosPlace {name} must be positive, got {value}")
        self.gem = GeMPool()
        self.fc = nn.Linear(in_channels, out_dim)
        self.in_channels = in_channels
        self.out_dim: int = out_dim

    def aggregate(self, features: BackboneOutput) -> torch.Tensor:
        """``feature_map [B, in_channels, H, W]`` -> ``descriptors [B, out_dim]``."""
        unit_features = F.normalize(features.feature_map, p=2, dim=1)  # every cell's C-vector has norm 1
        pooled = self.gem(unit_features)  # [B, in_channels]
        return F.normalize(self.fc(pooled), p=2, dim=1)
