"""SALAD: Sinkhorn Algorithm for Locally Aggregated Descriptors (Izquierdo & Civera, CVPR 2024).

Every patch feature is scored against ``m`` learned clusters plus a dustbin; a few log-domain
Sinkhorn iterations turn the scores into a transport plan; the plan (dustbin row dropped)
weights the reduced patch features into ``m`` cluster descriptors of ``l`` dims, which are
L2-normalised per cluster, prefixed with a global scene token of ``g`` dims, flattened and
L2-normalised as a whole: a ``g + m*l`` descriptor (8448 = 256 + 64 * 128 by default).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.contract import Aggregator, BackboneOutput
from models.registry import AGGREGATORS
from utils.errors import UserError


def log_sinkhorn(scores: torch.Tensor, log_row_mass: torch.Tensor, log_col_mass: torch.Tensor, num_iters: int) -> torch.Tensor:
    """Log-domain Sinkhorn: the log transport plan between two marginals.

    Args:
        scores: ``[B, R, N]`` log-kernel (regularisation 1).
        log_row_mass: ``[R]`` log marginal of the rows.
        log_col_mass: ``[N]`` log marginal of the columns.
        num_iters: number of (row, column) scaling rounds.

    Returns:
        ``[B, R, N]`` ``scores + u + v`` after ``num_iters`` rounds, starting from ``u = v = 0``.
    """
    u = scores.new_zeros(scores.shape[0], scores.shape[1])
    v = scores.new_zeros(scores.shape[0], scores.shape[2])
    for _ in range(num_iters):
        u = log_row_mass - torch.logsumexp(scores + v.unsqueeze(1), dim=2)
        v = log_col_mass - torch.logsumexp(scores + u.unsqueeze(2), dim=1)
    return scores + u.unsqueeze(2) + v.unsqueeze(1)


def sinkhorn_assignment(scores: torch.Tensor, dustbin: torch.Tensor, num_iters: int = 3) -> torch.Tensor:
    """Soft assignment of ``n`` features to ``m`` clusters plus a dustbin, as SALAD defines it.

    Marginals (before the final rescaling by ``n + m``): each cluster row and each feature
    column carries mass ``1 / (n + m)``; the dustbin row carries ``(n - m) / (n + m)``.

    Args:
        scores: ``[B, m, n]`` cluster-to-feature scores.
        dustbin: scalar score of the dustbin row.
        num_iters: Sinkhorn iterations (3 in the paper).

    Returns:
        ``[B, m + 1, n]`` assignment probabilities, computed in float32; the last row is the dustbin.
    """
    batch, num_clusters, num_features = scores.shape
    if num_features <= num_clusters:
        raise UserError(
            f"SALAD needs more features than clusters: got {num_features} features (patches) for "
            f"{num_clusters} clusters; use a larger image or fewer clusters"
        )
    scores = scores.float()
    dustbin_row = dustbin.float().reshape(1, 1, 1).expand(batch, 1, num_features)
    augmented = torch.cat((scores, dustbin_row), dim=1)  # [B, m + 1, n]

    log_norm = -math.log(num_features + num_clusters)
    log_row_mass = torch.full((num_clusters + 1,), log_norm, device=scores.device)
    log_row_mass[-1] += math.log(num_features - num_clusters)
    log_col_mass = torch.full((num_features,), log_norm, device=scores.device)

    log_plan = log_sinkhorn(augmented, log_row_mass, log_col_mass, num_iters)
    return torch.exp(log_plan - log_norm)


def float32_region(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast turned off on ``device`` (where autocast exists: not on the meta device)."""
    if device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)


@AGGREGATORS.register("SALAD")
class SALAD(Aggregator):
    """The SALAD aggregator. The defaults are the paper's (8448-d descriptors, dropout 0.3).

    Args:
        in_channels: channels ``C`` of the backbone's features and token.
        num_clusters: clusters ``m``.
        cluster_dim: reduced feature dims ``l`` per cluster.
        token_dim: dims ``g`` of the global scene token.
        dropout: dropout in the score and cluster-feature MLPs (0 disables it).
        sinkhorn_iters: Sinkhorn iterations.

    Shapes:
        input ``BackboneOutput(feature_map [B, C, h, w], token [B, C])``; output ``[B, g + m*l]``,
        unit L2 norm, laid out as ``[token (g), clusters (l-major: index = dim * m + cluster)]``.
        A backbone without a class token (a CNN) gives ``token=None``: the token input is then
        the spatial mean of the feature map.
    """

    def __init__(
        self,
        in_channels: int = 1536,
        num_clusters: int = 64,
        cluster_dim: int = 128,
        token_dim: int = 256,
        dropout: float = 0.3,
        sinkhorn_iters: int = 3,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_clusters = num_clusters
        self.cluster_dim = cluster_dim
        self.token_dim = token_dim
        self.sinkhorn_iters = sinkhorn_iters
        self.out_dim = token_dim + num_clusters * cluster_dim
        hidden = 512

        def maybe_dropout() -> nn.Module:
            return nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        self.token_features = nn.Sequential(
            nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, token_dim)
        )
        self.cluster_features = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), maybe_dropout(), nn.ReLU(), nn.Conv2d(hidden, cluster_dim, 1)
        )
        self.score = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1), maybe_dropout(), nn.ReLU(), nn.Conv2d(hidden, num_clusters, 1)
        )
        self.dust_bin = nn.Parameter(torch.tensor(1.0))

    def aggregate(self, inputs: BackboneOutput) -> torch.Tensor:
        """``feature_map [B, C, h, w]`` and ``token [B, C]`` (or None) -> descriptors ``[B, g + m*l]``."""
        features = inputs.feature_map
        token = inputs.token if inputs.token is not None else features.mean(dim=(2, 3))
        local = self.cluster_features(features).flatten(2)  # [B, l, n]
        scores = self.score(features).flatten(2)  # [B, m, n]
        global_token = self.token_features(token)  # [B, g]

        # Transport and aggregation run in float32 even under autocast.
        with float32_region(features.device):
            assignment = sinkhorn_assignment(scores, self.dust_bin, self.sinkhorn_iters)[:, :-1]  # [B, m, n]
            # sum_n local[b, l, n] * assignment[b, m, n]: one batched matmul, never [B, l, m, n].
            clusters = torch.bmm(local.float(), assignment.transpose(1, 2))  # [B, l, m]
        clusters = F.normalize(clusters, p=2, dim=1).flatten(1)
        descriptor = torch.cat((F.normalize(global_token.float(), p=2, dim=-1), clusters), dim=-1)
        return F.normalize(descriptor, p=2, dim=-1)


@AGGREGATORS.register("ProjectedSALAD")
class ProjectedSALAD(Aggregator):
    """SALAD followed by a linear projection and L2 normalisation (MegaLoc's aggregator).

    Args:
        in_channels, num_clusters, cluster_dim, token_dim, dropout, sinkhorn_iters: the
            :class:`SALAD` inside (``agg``).
        out_dim: the size of the projected descriptor (``linear``: ``token_dim +
            num_clusters * cluster_dim`` -> ``out_dim``, with bias).

    Shapes:
        input as :class:`SALAD`'s; output ``[B, out_dim]``, unit L2 norm.
    """

    def __init__(
        self,
        in_channels: int = 768,
        num_clusters: int = 64,
        cluster_dim: int = 256,
        token_dim: int = 256,
        out_dim: int = 8448,
        dropout: float = 0.0,
        sinkhorn_iters: int = 3,
    ) -> None:
        super().__init__()
        if out_dim <= 0:
            raise ValueError(f"ProjectedSALAD out_dim must be positive, got {out_dim}")
        self.agg = SALAD(in_channels, num_clusters, cluster_dim, token_dim, dropout, sinkhorn_iters)
        self.linear = nn.Linear(self.agg.out_dim, out_dim)
        self.in_channels = in_channels
        self.out_dim: int = out_dim

    def aggregate(self, inputs: BackboneOutput) -> torch.Tensor:
        """``feature_map [B, C, h, w]`` and ``token [B, C]`` -> descriptors ``[B, out_dim]``."""
        return F.normalize(self.linear(self.agg.aggregate(inputs)), p=2, dim=-1)
