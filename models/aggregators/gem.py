"""GeM: generalized-mean pooling of a feature map (Radenović et al., TPAMI 2018).

``GeMPool`` is the bare pooling of a tensor (used inside CosPlace); ``GeM`` is the aggregator
registered as "GeM": the same pooling of the backbone's feature map followed by L2
normalisation, as in the published GSV-Cities/SALAD code.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.contract import Aggregator, BackboneOutput
from models.registry import AGGREGATORS
from utils.errors import UserError


def generalized_mean(features: torch.Tensor, p: torch.Tensor, eps: float) -> torch.Tensor:
    """``(mean over H, W of clamp(x, eps) ** p) ** (1 / p)``: ``[B, C, H, W]`` -> ``[B, C]``.

    ``p`` is a one-element tensor (learnable); ``eps`` keeps the powers of non-positive
    activations defined.
    """
    if features.dim() != 4:
        raise ValueError(f"GeM expects a feature map [B, C, H, W], got shape {tuple(features.shape)}")
    return features.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


class GeMPool(nn.Module):
    """Generalized-mean pooling with a learnable exponent; no normalisation.

    ``forward(features [B, C, H, W]) -> pooled [B, C]``.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features [B, C, H, W]`` -> ``pooled [B, C]``."""
        return generalized_mean(features, self.p, self.eps)


@AGGREGATORS.register("GeM")
class GeM(Aggregator):
    """GeM aggregator: generalized-mean pooling of the feature map, then L2 normalisation (the
    token, if any, is not used).

    ``forward(BackboneOutput(feature_map [B, C, H, W], ...)) -> descriptors [B, C]``, unit L2 norm.

    Args:
        in_channels: channels of the input feature map, only to report ``out_dim``; ``None``
            leaves ``out_dim`` unknown (GeM works on any number of channels).
        p: initial value of the learnable exponent (3 as published).
        eps: lower clamp of the activations before the power.
    """

    def __init__(self, in_channels: int | None = None, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        if in_channels is not None and in_channels <= 0:
            raise UserError(f"GeM in_channels must be positive, got {in_channels}")
        self.p = nn.Parameter(torch.full((1,), float(p)))  # the published key: ``aggregator.p``
        self.eps = eps
        self.in_channels = in_channels
        self.out_dim = in_channels

    def aggregate(self, features: BackboneOutput) -> torch.Tensor:
        """``feature_map [B, C, H, W]`` -> ``descriptors [B, C]``, L2-normalised."""
        return F.normalize(generalized_mean(features.feature_map, self.p, self.eps), p=2, dim=1)
