"""Arguments a builder does not take, and negative sizes, are one line naming backbone_config or
agg_config, whether they come from flags or from a checkpoint's hyperparameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import AGGREGATORS, BACKBONES
from models.loading import load_network
from utils.errors import UserError, render


def test_an_unknown_argument_names_the_config_and_what_the_builder_takes():
    with pytest.raises(UserError) as info:
        BACKBONES.build("resnet18", layers_to_crop=[4], layer_to_crop=[3])
    line = render(info.value, {"backbone_config": "--backbone_config"})
    assert line.startswith("--backbone_config {\"layers_to_crop\": [4], \"layer_to_crop\": [3]}: backbone resnet18 takes no "
                           "argument layer_to_crop; its arguments: ")
    assert "layers_to_crop" in line.split("its arguments: ")[1] and "python3 -m tools.model_args resnet18" in line


@pytest.mark.parametrize(("agg_config", "expected"), [
    ({"num_clusters": 4, "clusters": 8}, r"^agg_config=\{.*\}: aggregator SALAD takes no argument clusters; its arguments: "),
    ({"num_clusters": -4, "cluster_dim": 8, "token_dim": 8}, r"^agg_config=\{.*\}: aggregator SALAD cannot be built with a negative size"),
])
def test_a_checkpoints_hyperparameters_are_checked_alike(tmp_path: Path, agg_config: dict, expected: str):
    checkpoint = tmp_path / "run.ckpt"
    hyper_parameters = {"backbone_arch": "resnet18", "backbone_config": {"layers_to_crop": [4]},
                        "agg_arch": "SALAD", "agg_config": agg_config}
    torch.save({"state_dict": {}, "hyper_parameters": hyper_parameters}, checkpoint)
    with pytest.raises(UserError, match=expected) as info:
        load_network(checkpoint)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match=expected):
        AGGREGATORS.build("SALAD", in_channels=256, **agg_config)
