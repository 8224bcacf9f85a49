"""Arguments a builder does not take, and negative sizes, are one line naming backbone_config or
agg_config, whether they come from flags or from a checkpoint's hyperparameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models import AGGREGATORS, BACKBONES
from models.checkpoint_io import load_model
from utils.errors import UserError, render


def test_an_unknown_argument_names_the_config_and_what_the_builder_takes():
    with pytest.raises(UserError) as info:
        BACKBONES.build("resnet18", layers_to_crop=[4], layer_to_crop=[3])
    line = render(info.value, {"backbone_config": "--backbone_config"})
    assert line == ("--backbone_config {\"layers_to_crop\": [4], \"layer_to_crop\": [3]}: backbone resnet18 takes no "
                    "layer_to_crop (it takes layers_to_crop, layers_to_freeze, pretrained, pretrained_path)")


@pytest.mark.parametrize(("agg_config", "expected"), [
    ({"num_clusters": 4, "clusters": 8}, r"^agg_config=\{.*\}: aggregator SALAD takes no clusters \(it takes "),
    ({"num_clusters": -4, "cluster_dim": 8, "token_dim": 8}, r"^agg_config=\{.*\}: aggregator SALAD cannot be built with a negative size"),
])
def test_a_checkpoints_hyperparameters_are_checked_alike(tmp_path: Path, agg_config: dict, expected: str):
    checkpoint = tmp_path / "run.ckpt"
    hyper_parameters = {"backbone_arch": "resnet18", "backbone_config": {"layers_to_crop": [4]},
                        "agg_arch": "SALAD", "agg_config": agg_config}
    torch.save({"state_dict": {}, "hyper_parameters": hyper_parameters}, checkpoint)
    with pytest.raises(UserError, match=expected) as info:
        load_model(checkpoint, None)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match=expected):
        AGGREGATORS.build("SALAD", in_channels=256, **agg_config)
