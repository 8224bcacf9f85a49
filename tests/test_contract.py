"""The model contract and the one builder: widths, legacy names, defaults recorded, fast loading,
the patch size and the random-weights warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from models import AGGREGATORS, BACKBONES, Architecture, Backbone, BackboneOutput, build_network
from models.loading import load_network
from models.vpr_model import VPRModel

TINY_SALAD = {"num_clusters": 2, "cluster_dim": 4, "token_dim": 4}
RESNET = {"layers_to_crop": [3, 4], "layers_to_freeze": -1}  # 128 channels at stride 8


def test_the_aggregator_takes_the_backbones_width_and_a_wrong_one_is_refused() -> None:
    network = build_network(Architecture("resnet18", RESNET, "SALAD", TINY_SALAD))
    assert network.aggregator.in_channels == network.backbone.out_channels == 128
    with pytest.raises(ValueError, match=r"SALAD: in_channels=384, but backbone resnet18 gives 128 channels") as info:
        build_network(Architecture("resnet18", RESNET, "SALAD", {**TINY_SALAD, "in_channels": 384}))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("aggregator", "legacy", "config"), [("SALAD", "num_channels", TINY_SALAD), ("CosPlace", "in_dim", {"out_dim": 8})])
def test_checkpoints_that_name_the_width_the_published_way_still_load(tmp_path: Path, aggregator, legacy, config) -> None:
    """The published SALAD code saved ``num_channels`` in its hyperparameters; CosPlace said ``in_dim``."""
    trained = build_network(Architecture("resnet18", RESNET, aggregator, config)).eval()
    hyper_parameters = {"backbone_arch": "resnet18", "backbone_config": RESNET, "agg_arch": aggregator,
                        "agg_config": {**config, legacy: 128}}
    path = tmp_path / "published.ckpt"
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": hyper_parameters}, path)
    loaded = load_network(path)
    assert loaded.architecture.agg_config["in_channels"] == 128 and legacy not in loaded.architecture.agg_config
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(images), trained(images), rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"{legacy}=128 and in_channels=64 disagree"):
        build_network(Architecture("resnet18", RESNET, aggregator, {**config, legacy: 128, "in_channels": 64}))


def test_the_recorded_architecture_holds_every_default() -> None:
    """A checkpoint rebuilds the same network even if a default changes later."""
    recorded = build_network(Architecture("dinov2_vits14", {}, "SALAD", {})).architecture
    assert recorded.backbone_config == {
        "num_trainable_blocks": 4, "norm_layer": True, "return_token": True, "resize_to_patch_multiple": False,
    }
    assert recorded.agg_config == {
        "in_channels": 384, "num_clusters": 64, "cluster_dim": 128, "token_dim": 256, "dropout": 0.3, "sinkhorn_iters": 3,
    }


def test_a_backbone_output_is_a_named_map_and_token() -> None:
    backbone = BACKBONES.build("dinov2_vits14", num_trainable_blocks=1).eval()
    with torch.no_grad():
        output = backbone(torch.randn(1, 3, 28, 42))
    assert isinstance(output, BackboneOutput)
    assert output.feature_map.shape == (1, 384, 2, 3) and output.token.shape == (1, 384)
    feature_map, token = output  # a tuple too: tracing and compile see a plain tuple
    assert feature_map is output.feature_map and token is output.token
    gem = AGGREGATORS.build("GeM", in_channels=384)
    with torch.no_grad():  # a bare map and a (map, token) pair are read the same way
        torch.testing.assert_close(gem(output), gem(feature_map))
        torch.testing.assert_close(gem(output), gem((feature_map, token)))


@pytest.mark.parametrize(("backbone", "config", "patch"), [("dinov2_vits14", {}, 14), ("resnet18", RESNET, 8), ("resnet50", {}, 16)])
def test_backbones_declare_their_patch_size_and_the_sizes_they_take(backbone, config, patch) -> None:
    network = build_network(Architecture(backbone, config, "GeM", {}))
    assert network.patch_size == patch
    with torch.no_grad():
        assert network.backbone(torch.randn(1, 3, 2 * patch, 3 * patch)).feature_map.shape[2:] == (2, 3)
    if backbone.startswith("dinov2"):
        with pytest.raises(ValueError, match=r"image size 30x28 is not a multiple of the patch size 14 .*use 28x28"):
            network.backbone.check_image_size(30, 28)
    else:
        network.backbone.check_image_size(30, 29)  # convolutions pad: any size goes


class _BufferedBackbone(Backbone):
    """A backbone with a buffer outside its state dict (computed when built)."""

    def __init__(self) -> None:
        super().__init__()
        self.out_channels, self.patch_size = 4, 2
        self.conv = nn.Conv2d(3, 4, 2, stride=2)
        self.register_buffer("scale", torch.full((1, 4, 1, 1), 2.0), persistent=False)

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        return BackboneOutput(self.conv(images) * self.scale)


def test_loading_builds_on_the_meta_device_and_falls_back_when_a_buffer_is_computed(monkeypatch, tmp_path: Path) -> None:
    architecture = Architecture("resnet18", RESNET, "SALAD", TINY_SALAD)
    trained = build_network(architecture).eval()
    torch.save(trained.state_dict(), tmp_path / "trained.ckpt")
    loaded = load_network(tmp_path / "trained.ckpt", architecture=architecture).network
    assert not loaded.training and all(not p.is_meta for p in loaded.parameters())
    assert loaded.backbone.model.conv1.weight.requires_grad  # random ResNets are not frozen
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), trained(images), rtol=0, atol=0)

    monkeypatch.setitem(BACKBONES._builders, "buffered", _BufferedBackbone)
    buffered = Architecture("buffered", {}, "GeM", {})
    reference = build_network(buffered).eval()
    torch.save(reference.state_dict(), tmp_path / "buffered.ckpt")
    rebuilt = load_network(tmp_path / "buffered.ckpt", architecture=buffered).network
    assert not rebuilt.backbone.scale.is_meta
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images), reference(images), rtol=0, atol=0)


def test_training_from_random_weights_says_so_and_where_imagenet_weights_come_from(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="models.vpr_model"):
        VPRModel("resnet18", {**RESNET, "pretrained": False}, "GeM", {})
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "resnet18 starts from random weights" in warnings[0]
    assert "resnet18-f37072fd.pth" in warnings[0] and "checkpoints" in warnings[0] and "pretrained_path" in warnings[0]


def test_training_refuses_an_image_size_the_backbone_cannot_take(small_toy_world: Path, tmp_path: Path) -> None:
    import pytorch_lightning as pl

    from dataloaders.vpr_datamodule import VPRDataModule

    model = VPRModel("dinov2_vits14", {"num_trainable_blocks": 1, "pretrained": False}, "GeM", {})
    data = VPRDataModule(data_root=str(small_toy_world / "gsv-cities"), cities=["Bangkok"], batch_size=2,
                         img_per_place=2, image_size=(30, 30), num_workers=0, val_set_names=[])
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^image_size=\[30, 30\]: image size 30x30 is not a multiple of the patch size 14"):
        trainer.fit(model, datamodule=data)
