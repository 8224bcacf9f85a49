"""The training objective: a pytorch-metric-learning loss and miner, global under DDP.

Under DDP each rank sees ``P/world`` places; pytorch-metric-learning's distributed wrappers
gather the embeddings and labels of every rank so the miner and the loss see the whole
global batch (the published code mines each rank's share alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from pytorch_metric_learning import distances, losses, miners
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper

from utils.errors import UserError


def build_loss(name: str) -> losses.BaseMetricLossFunction:
    """The published losses by exact name, with the published hyperparameters."""
    builders = {
        "MultiSimilarityLoss": lambda: losses.MultiSimilarityLoss(
            alpha=1.0, beta=50, base=0.0, distance=distances.DotProductSimilarity()
        ),
        "ContrastiveLoss": lambda: losses.ContrastiveLoss(pos_margin=0, neg_margin=1),
        "TripletMarginLoss": lambda: losses.TripletMarginLoss(margin=0.1, swap=False, smooth_loss=False),
    }
    if name not in builders:
        raise UserError(f"unknown loss_name {name!r}; known: {', '.join(builders)}")
    return builders[name]()


def build_miner(name: str | None, margin: float) -> miners.BaseMiner | None:
    """The published miners by exact name (``None`` for no mining)."""
    if name is None:
        return None
    builders = {
        "MultiSimilarityMiner": lambda: miners.MultiSimilarityMiner(epsilon=margin, distance=distances.CosineSimilarity()),
        "TripletMarginMiner": lambda: miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard"),
        "PairMarginMiner": lambda: miners.PairMarginMiner(pos_margin=0.7, neg_margin=0.3, distance=distances.DotProductSimilarity()),
    }
    if name not in builders:
        raise UserError(f"unknown miner_name {name!r}; known: {', '.join(builders)}")
    return builders[name]()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    """the loss to backpropagate (under DDP scaled by the world size, as the wrapper does)"""
    mined_fraction: float
    """fraction of the global batch that took part in a mined pair (1.0 without a miner)"""


class MetricLearningObjective(torch.nn.Module):
    """Loss + miner over the global batch.

    Shapes: ``descriptors [N, D]``, ``labels [N]`` (this rank's share of the batch).
    """

    def __init__(self, loss_name: str = "MultiSimilarityLoss", miner_name: str | None = "MultiSimilarityMiner", miner_margin: float = 0.1) -> None:
        super().__init__()
        self.loss = build_loss(loss_name)
        self.miner = build_miner(miner_name, miner_margin)

    def forward(self, descriptors: torch.Tensor, labels: torch.Tensor) -> ObjectiveOutput:
        descriptors = descriptors.float()
        if world_size() > 1:
            loss_fn = DistributedLossWrapper(self.loss)
            miner = DistributedMinerWrapper(self.miner) if self.miner is not None else None
            global_size = descriptors.shape[0] * world_size()
        else:
            loss_fn, miner, global_size = self.loss, self.miner, descriptors.shape[0]
        if miner is None:
            return ObjectiveOutput(loss_fn(descriptors, labels), 1.0)
        pairs = miner(descriptors, labels)
        mined = torch.unique(torch.cat([indices.flatten() for indices in pairs]))
        return ObjectiveOutput(loss_fn(descriptors, labels, pairs), mined.numel() / global_size)
