"""MixVPR aggregator (Ali-bey et al., "MixVPR: Feature Mixing for Visual Place Recognition",
WACV 2023).

The feature map is read as ``C`` flattened maps of ``h*w`` values. A stack of Feature-Mixer blocks
(an MLP over the ``h*w`` positions with LayerNorm and a residual) mixes each map spatially; a linear
projection then maps the ``C`` channels to ``out_channels`` and another maps the ``h*w`` positions to
``out_rows``; the flattened ``out_channels x out_rows`` result is L2-normalised.

The input size is fixed: ``in_h x in_w`` must be the backbone's feature-map size (20 x 20 for a
ResNet-50 cropped at layer3 with 320 x 320 images). Attribute names follow the published code so
its checkpoints load.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.contract import Aggregator, BackboneOutput
from models.registry import AGGREGATORS
from utils.errors import UserError

#: Standard deviation of the truncated-normal init of the mixer's linear layers (published value).
MIXER_INIT_STD = 0.02


class FeatureMixerLayer(nn.Module):
    """``x + MLP(LayerNorm(x))`` over the last dimension: ``[B, C, N] -> [B, C, N]``.

    The MLP is ``N -> N * mlp_ratio -> N`` with a ReLU in between.
    """

    def __init__(self, in_dim: int, mlp_ratio: float = 1) -> None:
        super().__init__()
        hidden_dim = int(in_dim * mlp_ratio)
        if hidden_dim <= 0:
            raise UserError(f"MixVPR mlp_ratio={mlp_ratio} leaves no hidden units for {in_dim} inputs")
        self.mix = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, in_dim),
        )
        for module in self.mix.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=MIXER_INIT_STD)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, N]`` -> ``[B, C, N]``."""
        return x + self.mix(x)


@AGGREGATORS.register("MixVPR")
class MixVPR(Aggregator):
    """Feature-Mixer blocks, channel projection, row projection, flatten, L2 normalisation.

    ``forward(BackboneOutput(feature_map [B, in_channels, in_h, in_w], ...)) -> descriptors
    [B, out_channels * out_rows]``, unit L2 norm (the token, if any, is not used).

    Args:
        in_channels: channels of the input feature map.
        in_h: height of the input feature map.
        in_w: width of the input feature map.
        out_channels: size of the channel projection.
        mix_depth: number of stacked Feature-Mixer blocks.
        mlp_ratio: hidden width of each mixer MLP relative to ``in_h * in_w``.
        out_rows: size of the row (spatial) projection.
    """

    def __init__(
        self,
        in_channels: int = 1024,
        in_h: int = 20,
        in_w: int = 20,
        out_channels: int = 512,
        mix_depth: int = 1,
        mlp_ratio: float = 1,
        out_rows: int = 4,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("in_h", in_h),
            ("in_w", in_w),
            ("out_channels", out_channels),
            ("out_rows", out_rows),
        ):
            if value <= 0:
                raise UserError(f"MixVPR {name} must be positive, got {value}")
        if mix_depth < 0:
            raise UserError(f"MixVPR mix_depth must be >= 0, got {mix_depth}")
        self.in_channels = in_channels
        self.in_h = in_h
        self.in_w = in_w
        positions = in_h * in_w
        self.mix = nn.Sequential(*(FeatureMixerLayer(positions, mlp_ratio) for _ in range(mix_depth)))
        self.channel_proj = nn.Linear(in_channels, out_channels)
        self.row_proj = nn.Linear(positions, out_rows)
        self.out_dim: int = out_channels * out_rows

    def aggregate(self, inputs: BackboneOutput) -> torch.Tensor:
        """``feature_map [B, in_channels, in_h, in_w]`` -> ``descriptors [B, out_channels * out_rows]``."""
        features = inputs.feature_map
        _, channels, height, width = features.shape
        if (channels, height, width) != (self.in_channels, self.in_h, self.in_w):
            raise UserError(
                f"MixVPR takes a {self.in_h}x{self.in_w} feature map of {self.in_channels} channels, got {height}x{width} "
                f"of {channels}: give images whose feature map is {self.in_h}x{self.in_w} (the released mixvpr: "
                f"image_size=320) or build it with in_h={height}, in_w={width}"
            )
        x = self.mix(features.flatten(2))  # [B, C, h*w]
        x = self.channel_proj(x.transpose(1, 2))  # [B, h*w, out_channels]
        x = self.row_proj(x.transpose(1, 2))  # [B, out_channels, out_rows]
        return F.normalize(x.flatten(1), p=2, dim=1)
