"""The training objective: a pytorch-metric-learning loss and miner, global under DDP.

Losses and miners are registries of named builders (:data:`LOSSES`, :data:`MINERS`), as the
models' backbones and aggregators are: a builder's keyword arguments are what ``loss_config`` /
``miner_config`` may set, and its defaults are the published values (GSV-Cities, MixVPR, SALAD,
BoQ: multi-similarity loss alpha 1, beta 50, base 0 on dot products; multi-similarity miner
epsilon 0.1 on cosine similarity).

Under DDP each rank sees ``P/world`` places; pytorch-metric-learning's distributed wrappers
gather the embeddings and labels of every rank so the miner and the loss see the whole
global batch (the published code mines each rank's share alone).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from pytorch_metric_learning import distances, losses, miners
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper

from utils.errors import UserError
from utils.registry import Registry

LOSSES = Registry("loss")
MINERS = Registry("miner")

DEFAULT_LOSS = "MultiSimilarityLoss"
DEFAULT_MINER = "MultiSimilarityMiner"
DEFAULT_MINER_MARGIN = 0.1
"""The miner's margin (MultiSimilarityMiner's ``epsilon``), as published."""
MARGIN_ARGUMENT = "margin"
"""The argument of a miner builder that ``miner_margin`` sets."""


@LOSSES.register("MultiSimilarityLoss")
def multi_similarity_loss(alpha: float = 1.0, beta: float = 50, base: float = 0.0) -> losses.MultiSimilarityLoss:
    """Multi-similarity loss (Wang et al., CVPR 2019) on dot-product similarity."""
    return losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base, distance=distances.DotProductSimilarity())


@LOSSES.register("ContrastiveLoss")
def contrastive_loss(pos_margin: float = 0.0, neg_margin: float = 1.0) -> losses.ContrastiveLoss:
    """Contrastive loss on Euclidean distance: positives pulled within ``pos_margin``, negatives
    pushed beyond ``neg_margin``."""
    return losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)


@LOSSES.register("TripletMarginLoss")
def triplet_margin_loss(margin: float = 0.1, swap: bool = False, smooth_loss: bool = False) -> losses.TripletMarginLoss:
    """Triplet margin loss on Euclidean distance."""
    return losses.TripletMarginLoss(margin=margin, swap=swap, smooth_loss=smooth_loss)


@MINERS.register("MultiSimilarityMiner")
def multi_similarity_miner(margin: float = DEFAULT_MINER_MARGIN) -> miners.MultiSimilarityMiner:
    """Multi-similarity miner on cosine similarity; ``margin`` is its ``epsilon``."""
    return miners.MultiSimilarityMiner(epsilon=margin, distance=distances.CosineSimilarity())


@MINERS.register("TripletMarginMiner")
def triplet_margin_miner(margin: float = DEFAULT_MINER_MARGIN, type_of_triplets: str = "semihard") -> miners.TripletMarginMiner:
    """Triplet miner on Euclidean distance (``type_of_triplets``: all, hard, semihard or easy)."""
    return miners.TripletMarginMiner(margin=margin, type_of_triplets=type_of_triplets)


@MINERS.register("PairMarginMiner")
def pair_margin_miner(pos_margin: float = 0.7, neg_margin: float = 0.3) -> miners.PairMarginMiner:
    """Pair miner on dot-product similarity: positives below ``pos_margin``, negatives above
    ``neg_margin``."""
    return miners.PairMarginMiner(pos_margin=pos_margin, neg_margin=neg_margin, distance=distances.DotProductSimilarity())


def build_loss(name: str = DEFAULT_LOSS, config: Mapping[str, Any] | None = None) -> losses.BaseMetricLossFunction:
    """The loss registered as ``name`` with the arguments ``config`` (the others: their defaults).

    Raises:
        UserError: an unknown name or argument (one line listing the valid ones).
    """
    return LOSSES.build_checked(name, config or {}, "loss_name", "loss_config")


def build_miner(
    name: str | None = DEFAULT_MINER, config: Mapping[str, Any] | None = None, margin: float = DEFAULT_MINER_MARGIN
) -> miners.BaseMiner | None:
    """The miner registered as ``name`` (``None``: no mining) with the arguments ``config``, and
    ``margin`` for a miner that has one (MultiSimilarityMiner's epsilon, TripletMarginMiner's margin).

    Raises:
        UserError: an unknown name or argument, or a margin given in ``config`` (it is ``margin``'s).
    """
    if name is None:
        if config:
            raise UserError(f"miner_config={dict(config)} without a miner: set miner_name=, one of {', '.join(MINERS.names())}")
        return None
    return MINERS.build_checked(name, config or {}, "miner_name", "miner_config", {MARGIN_ARGUMENT: ("miner_margin", margin)})


def resolved_config(
    registry: Registry, name: str | None, config: Mapping[str, Any] | None, set_apart: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``config`` completed with the defaults of the builder of ``name`` (``{}`` for ``None``),
    except the arguments ``set_apart`` (set by a parameter of their own), so a checkpoint records
    every value its objective used."""
    if name is None:
        return dict(config or {})
    defaults = {
        key: parameter.default
        for key, parameter in inspect.signature(registry.get(name)).parameters.items()
        if parameter.default is not inspect.Parameter.empty and key not in set_apart
    }
    return {**defaults, **(config or {})}


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    """the loss to backpropagate (under DDP scaled by the world size, as the wrapper does)"""
    mined_fraction: float
    """fraction of the global batch that took part in a mined pair (1.0 without a miner)"""


class MetricLearningObjective(torch.nn.Module):
    """Loss + miner over the global batch (see :func:`build_loss` and :func:`build_miner`).

    Shapes: ``descriptors [N, D]``, ``labels [N]`` (this rank's share of the batch).
    """

    def __init__(
        self,
        loss_name: str = DEFAULT_LOSS,
        miner_name: str | None = DEFAULT_MINER,
        miner_margin: float = DEFAULT_MINER_MARGIN,
        loss_config: Mapping[str, Any] | None = None,
        miner_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.loss = build_loss(loss_name, loss_config)
        self.miner = build_miner(miner_name, miner_config, miner_margin)
        #: the arguments of the loss and of the miner, defaults included (``miner_margin`` apart)
        self.loss_config = resolved_config(LOSSES, loss_name, loss_config)
        self.miner_config = resolved_config(MINERS, miner_name, miner_config, (MARGIN_ARGUMENT,))

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
