"""BoQ: Bag-of-Queries (Ali-bey, Chaib-draa & Giguère, CVPR 2024).

The feature map is projected by a 3x3 convolution to ``P`` channels and read as ``n = h*w``
tokens (row-major), layer-normalised. A cascade of ``L`` BoQ blocks follows; each block refines
the tokens with a transformer encoder layer, and lets its own ``Q`` learned queries (first mixed
by self-attention) read the refined tokens through cross-attention. The ``L*Q`` query outputs,
stacked, are mixed down to ``r`` rows by one linear layer along the query axis, flattened
channel-major and L2-normalised: a ``P*r`` descriptor (12288 = 384 * 32 for the released DINOv2
model, 16384 = 512 * 32 for the ResNet-50 one).

Module and parameter names are the authors' (``proj_c``, ``norm_input``, ``boqs.<i>.encoder``,
``boqs.<i>.queries``, ``self_attn``, ``norm_q``, ``cross_attn``, ``norm_out``, ``fc``), so the
``aggregator.*`` part of their released files loads key for key.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.contract import Aggregator, BackboneOutput
from models.registry import AGGREGATORS
from utils.errors import UserError

#: Channels per attention head the authors use (``num_heads = proj_channels // 64``).
HEAD_DIM = 64
#: Width of the encoder layer's feed-forward block, in multiples of the token width.
FEEDFORWARD_RATIO = 4


def default_num_heads(channels: int) -> int:
    """The authors' head count for ``channels`` token channels: one head per 64, at least one."""
    return max(1, channels // HEAD_DIM)


class BoQBlock(nn.Module):
    """One BoQ block: tokens refined by an encoder layer, read by learned queries.

    Args:
        channels: token width ``P``.
        num_queries: learned queries ``Q``.
        num_heads: attention heads (must divide ``channels``).

    Shapes:
        ``forward(tokens [B, n, P]) -> (tokens [B, n, P], queries [B, Q, P])``: the refined tokens
        (the next block's input) and what the queries read from them.
    """

    def __init__(self, channels: int, num_queries: int, num_heads: int) -> None:
        super().__init__()
        # Post-norm, ReLU, no dropout, batch first: the encoder layer of the released models.
        self.encoder = nn.TransformerEncoderLayer(
            d_model=channels, nhead=num_heads, dim_feedforward=FEEDFORWARD_RATIO * channels, dropout=0.0,
            batch_first=True,
        )
        self.queries = nn.Parameter(torch.randn(1, num_queries, channels))
        self.self_attn = nn.MultiheadAttention(channels, num_heads, batch_first=True)
        self.norm_q = nn.LayerNorm(channels)
        self.cross_attn = nn.MultiheadAttention(channels, num_heads, batch_first=True)
        self.norm_out = nn.LayerNorm(channels)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens [B, n, P]`` -> refined tokens ``[B, n, P]`` and query outputs ``[B, Q, P]``."""
        tokens = self.encoder(tokens)
        queries = self.queries.expand(tokens.shape[0], -1, -1)  # [B, Q, P]
        # The queries' self-attention depends on no input; the authors keep it (and so does the
        # released layout) for training stability.
        queries = self.norm_q(queries + self.self_attn(queries, queries, queries, need_weights=False)[0])
        read = self.cross_attn(queries, tokens, tokens, need_weights=False)[0]
        return tokens, self.norm_out(read)


@AGGREGATORS.register("BoQ")
class BoQ(Aggregator):
    """The BoQ aggregator. The defaults are the released DINOv2 model's (12288-d).

    Args:
        in_channels: channels ``C`` of the backbone's feature map.
        proj_channels: token width ``P`` after the 3x3 input projection.
        num_queries: learned queries ``Q`` per block.
        num_layers: BoQ blocks ``L``.
        row_dim: rows ``r`` the ``L*Q`` query outputs are mixed down to.
        num_heads: attention heads of every block; ``None``: ``proj_channels // 64`` (at least 1),
            the authors' choice. Must divide ``proj_channels``.

    Shapes:
        input ``BackboneOutput(feature_map [B, C, h, w], token)`` (the token is not used); output
        ``[B, P*r]``, unit L2 norm, channel-major (index = channel * r + row).
    """

    def __init__(
        self,
        in_channels: int = 768,
        proj_channels: int = 384,
        num_queries: int = 64,
        num_layers: int = 2,
        row_dim: int = 32,
        num_heads: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("proj_channels", proj_channels), ("num_queries", num_queries),
                            ("num_layers", num_layers), ("row_dim", row_dim)):  # fmt: skip
            if value < 1:
                raise UserError(f"BoQ: {name}={value} must be at least 1")
        heads = default_num_heads(proj_channels) if num_heads is None else num_heads
        if heads < 1 or proj_channels % heads:
            raise UserError(
                f"BoQ: num_heads={heads} must divide proj_channels={proj_channels} "
                f"(leave num_heads out for proj_channels // {HEAD_DIM})"
            )
        self.in_channels = in_channels
        self.proj_channels = proj_channels
        self.num_queries = num_queries
        self.num_layers = num_layers
        self.row_dim = row_dim
        self.num_heads = heads
        self.out_dim = proj_channels * row_dim

        self.proj_c = nn.Conv2d(in_channels, proj_channels, kernel_size=3, padding=1)
        self.norm_input = nn.LayerNorm(proj_channels)
        self.boqs = nn.ModuleList(BoQBlock(proj_channels, num_queries, heads) for _ in range(num_layers))
        self.fc = nn.Linear(num_layers * num_queries, row_dim)

    def aggregate(self, inputs: BackboneOutput) -> torch.Tensor:
        """``feature_map [B, C, h, w]`` -> descriptors ``[B, P*r]``."""
        projected = self.proj_c(inputs.feature_map)  # [B, P, h, w]
        tokens = self.norm_input(projected.flatten(2).transpose(1, 2))  # [B, h*w, P], row-major
        reads = []
        for block in self.boqs:
            tokens, read = block(tokens)
            reads.append(read)
        stacked = torch.cat(reads, dim=1)  # [B, L*Q, P]
        rows = self.fc(stacked.transpose(1, 2))  # [B, P, r]
        return F.normalize(rows.flatten(1), p=2, dim=-1)
