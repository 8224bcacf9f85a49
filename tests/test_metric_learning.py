"""The losses and miners registries: every entry builds with its defaults and trains on a tiny
batch; the arguments a checkpoint records rebuild the same objective, old checkpoints' included."""

from __future__ import annotations

import inspect

import pytest
import torch

from models.vpr_model import VPRModel
from utils.errors import UserError
from utils.training.metric_learning import LOSSES, MINERS, MetricLearningObjective

#: The objective's hyperparameters of a checkpoint written before losses and miners took arguments.
OLD_HYPERPARAMETERS = {"loss_name": "MultiSimilarityLoss", "miner_name": "MultiSimilarityMiner", "miner_margin": 0.1}


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """4 places x 2 images, 8-d L2-normalised descriptors ``[8, 8]`` and labels ``[8]``."""
    generator = torch.Generator().manual_seed(0)
    descriptors = torch.nn.functional.normalize(torch.randn(8, 8, generator=generator), dim=1)
    return descriptors.requires_grad_(), torch.arange(4).repeat_interleave(2)


@pytest.mark.parametrize("miner", [*MINERS.names(), None])
@pytest.mark.parametrize("loss", LOSSES.names())
def test_every_loss_and_miner_gives_a_finite_loss_with_gradients(loss: str, miner: str | None) -> None:
    descriptors, labels = tiny_batch()
    output = MetricLearningObjective(loss, miner)(descriptors, labels)
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert descriptors.grad is not None and 0.0 <= output.mined_fraction <= 1.0


def test_old_checkpoint_hyperparameters_build_the_published_objective() -> None:
    assert set(OLD_HYPERPARAMETERS) <= set(inspect.signature(VPRModel).parameters)
    objective = MetricLearningObjective(**OLD_HYPERPARAMETERS)
    assert (objective.loss.alpha, objective.loss.beta, objective.loss.base) == (1.0, 50, 0.0)
    assert objective.miner.epsilon == 0.1
    assert type(objective.loss.distance).__name__ == "DotProductSimilarity"
    assert type(objective.miner.distance).__name__ == "CosineSimilarity"
    # What a new checkpoint records rebuilds the same objective.
    recorded = {**OLD_HYPERPARAMETERS, "loss_config": objective.loss_config, "miner_config": objective.miner_config}
    assert recorded["loss_config"] == {"alpha": 1.0, "beta": 50, "base": 0.0} and recorded["miner_config"] == {}
    again = MetricLearningObjective(**recorded)
    descriptors, labels = tiny_batch()
    assert torch.equal(again(descriptors, labels).loss, objective(descriptors, labels).loss)


def test_a_miner_config_without_a_miner_is_refused() -> None:
    with pytest.raises(UserError, match=r"^miner_config=\{'epsilon': 0.2\} without a miner: set miner_name=, one of "):
        MetricLearningObjective(miner_name=None, miner_config={"epsilon": 0.2})
