"""Every registered backbone with every registered aggregator, through the one builder.

Two levels, both parametrized over the registries themselves (a newly registered name joins
without a change here, or fails until it is given its smallest arguments below):

- every backbone x every aggregator is built by ``build_network`` on the meta device (no
  memory, no time) and run forward at the backbone's smallest valid image size: the aggregator
  gets the backbone's width, the descriptor has the declared size;
- every aggregator trains with the cheapest family's smallest member, and the smallest member of
  every other family trains with SALAD: 2 optimizer steps on the toy world through ``main.py``'s
  LightningModule and data module, then ``eval.py`` evaluates the checkpoint it leaves,
  reproducing the trained network's descriptors. Every aggregator and every family is trained
  once; the pairs in between are covered by the meta-device level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import eval as eval_cli
from dataloaders.eval_sets import DataRoots, load_eval_set
from dataloaders.transforms import eval_transform
from dataloaders.vpr_datamodule import VPRDataModule
from models import AGGREGATORS, BACKBONES, Architecture, build_network
from models.loading import load_network
from models.vpr_model import VPRModel
from utils.evaluation.inference import compute_descriptors

#: The smallest valid arguments of every registered backbone family (by name prefix).
SMALL_BACKBONE_CONFIGS: dict[str, dict[str, Any]] = {
    "dinov2_": {"num_trainable_blocks": 1},
    "dinov3_": {"num_trainable_blocks": 1},
    "resnet": {"layers_to_crop": [3, 4], "layers_to_freeze": -1},
    "vgg": {},
}
#: The smallest member of each family (DINOv3's MLP and SwiGLU kinds apart): these train and are
#: evaluated from their checkpoint; the others differ in sizes, which the meta-device test covers.
FAMILY_REPRESENTATIVES = ("dinov2_vits14", "dinov3_vits16", "dinov3_vits16plus", "resnet18", "vgg16")
#: The family every aggregator trains with (the cheapest), and the aggregator every other family trains with.
TRAINING_BACKBONE = "resnet18"
TRAINING_AGGREGATOR = "SALAD"
#: Feature-map cells per side at the smallest valid image size (SALAD needs more cells than clusters).
GRID = 2


def small_agg_config(name: str, grid: int) -> dict[str, Any]:
    """The smallest valid arguments of aggregator ``name`` for ``grid x grid`` feature maps."""
    configs: dict[str, dict[str, Any]] = {
        "SALAD": {"num_clusters": 2, "cluster_dim": 4, "token_dim": 4, "dropout": 0.0},
        "ProjectedSALAD": {"num_clusters": 2, "cluster_dim": 4, "token_dim": 4, "out_dim": 6},
        "GeM": {},
        "ConvAP": {"out_channels": 4, "s1": 1, "s2": 1},
        "MixVPR": {"in_h": grid, "in_w": grid, "out_channels": 4, "out_rows": 2},
        "CosPlace": {"out_dim": 8},
        "BoQ": {"proj_channels": 16, "num_queries": 2, "num_layers": 1, "row_dim": 2},
    }
    return configs[name]


def small_backbone_config(name: str) -> dict[str, Any]:
    prefix = next(prefix for prefix in SMALL_BACKBONE_CONFIGS if name.startswith(prefix))
    return dict(SMALL_BACKBONE_CONFIGS[prefix])


def small_architecture(backbone: str, aggregator: str) -> Architecture:
    return Architecture(backbone, small_backbone_config(backbone), aggregator, small_agg_config(aggregator, GRID))


def test_every_registered_name_has_small_arguments() -> None:
    for name in BACKBONES.names():
        assert any(name.startswith(prefix) for prefix in SMALL_BACKBONE_CONFIGS), f"backbone {name}: no small config"
    for name in AGGREGATORS.names():
        small_agg_config(name, GRID)  # KeyError: a new aggregator needs its smallest arguments above
    assert set(FAMILY_REPRESENTATIVES) <= set(BACKBONES.names())


@pytest.mark.parametrize("aggregator", AGGREGATORS.names())
@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_pair_builds_and_runs_forward(backbone: str, aggregator: str) -> None:
    with torch.device("meta"):
        network = build_network(small_architecture(backbone, aggregator))
        side = GRID * network.patch_size
        network.backbone.check_image_size(side, side)
        output = network.backbone(torch.empty(2, 3, side, side))
        descriptors = network.aggregator(output)
    assert output.feature_map.shape == (2, network.backbone.out_channels, GRID, GRID)
    assert output.token is None or output.token.shape == (2, network.backbone.out_channels)
    assert network.aggregator.in_channels == network.backbone.out_channels
    assert network.architecture.agg_config["in_channels"] == network.backbone.out_channels
    assert descriptors.shape == (2, network.descriptor_dim)


def trained_pairs() -> list[tuple[str, str]]:
    """Each aggregator with :data:`TRAINING_BACKBONE`, each other family with :data:`TRAINING_AGGREGATOR`."""
    pairs = [(TRAINING_BACKBONE, aggregator) for aggregator in AGGREGATORS.names()]
    return pairs + [(backbone, TRAINING_AGGREGATOR) for backbone in FAMILY_REPRESENTATIVES if backbone != TRAINING_BACKBONE]


def test_every_aggregator_and_every_family_is_trained() -> None:
    pairs = trained_pairs()
    assert {aggregator for _, aggregator in pairs} == set(AGGREGATORS.names())
    assert {backbone for backbone, _ in pairs} == set(FAMILY_REPRESENTATIVES)
    assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize(("backbone", "aggregator"), trained_pairs())
def test_family_trains_on_the_toy_world_and_its_checkpoint_evaluates(
    small_toy_world: Path, tmp_path: Path, backbone: str, aggregator: str
) -> None:
    architecture = small_architecture(backbone, aggregator)
    pl.seed_everything(0, verbose=False)
    model = VPRModel(
        architecture.backbone_arch, {**architecture.backbone_config, "pretrained": False}, architecture.agg_arch,
        architecture.agg_config,
        lr=1e-3, optimizer="sgd", lr_sched="none", miner_name=None,  # every pair: a loss that always moves
    )
    side = GRID * model.backbone.patch_size
    data = VPRDataModule(
        data_root=str(small_toy_world / "gsv-cities"), cities=["Bangkok"], batch_size=2, img_per_place=2,
        image_size=(side, side), num_workers=0, train_augmentation="none", val_set_names=[],
    )
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 2
    assert any(not torch.equal(before[name], p) for name, p in model.named_parameters() if name in before)
    checkpoint = tmp_path / "trained.ckpt"
    trainer.save_checkpoint(checkpoint)

    eval_cli.main([
        "--ckpt_path", str(checkpoint), "--data_dir", str(small_toy_world), "--val_datasets", "sped",
        "--image_size", str(side), "--device", "cpu", "--num_workers", "0", "--batch_size", "4",
        "--log_dir", str(tmp_path / "eval"),
    ])
    result = json.loads(next((tmp_path / "eval").rglob("results.json")).read_text())["sped"]
    assert result["architecture"]["backbone_arch"] == backbone and result["architecture"]["agg_arch"] == aggregator
    assert set(result["recall@k"]) >= {"1", "5"}

    # eval.py's network is the trained one: the same descriptors for the set's images.
    eval_set = load_eval_set("sped", DataRoots(data_dir=str(small_toy_world)))
    images = eval_set.images(eval_transform((side, side)))
    expected = compute_descriptors(model.eval(), images, 4, 0, torch.device("cpu"))
    reloaded = load_network(checkpoint).network
    actual = compute_descriptors(reloaded, images, 4, 0, torch.device("cpu"))
    np.testing.assert_allclose(actual, expected, atol=1e-6)
