"""The BoQ aggregator: the released layout, shapes, heads, errors, no warnings; its training
config on the toy world; ONNX export.

Its descriptors are checked against the authors' code in ``test_boq_release.py`` (parity on
seeded weights); here, what holds for any weights.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import main as train_cli
from models import AGGREGATORS, Architecture, BackboneOutput, build_network
from models.released import released_model
from tests import parity
from tools import export_onnx

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[1]

SMALL = {"in_channels": 8, "proj_channels": 16, "num_queries": 3, "num_layers": 2, "row_dim": 4}
#: Two heads of 64 channels (the attention's head split is in the graph), two blocks.
SMALL_ONNX_BOQ = {"proj_channels": 128, "num_queries": 4, "num_layers": 2, "row_dim": 2}


def small_boq(**overrides: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return AGGREGATORS.build("BoQ", **{**SMALL, **overrides})


@pytest.mark.parametrize("fixture", ["boq_dinov2", "boq_resnet50"])
def test_state_dict_is_the_released_aggregator_part_key_for_key(fixture: str) -> None:
    settings = parity.load_config(fixture)["aggregator"]
    heads = settings.pop("nheads")
    with torch.device("meta"):
        boq = AGGREGATORS.build("BoQ", **settings)
    released = {
        key.removeprefix("aggregator."): shape
        for key, shape in parity.load_shapes(fixture).items()
        if key.startswith("aggregator.")
    }
    ours = {key: list(tensor.shape) for key, tensor in boq.state_dict().items()}
    assert list(ours.items()) == list(released.items())  # same keys, same shapes, same order
    assert boq.num_heads == heads
    assert boq.out_dim == settings["proj_channels"] * settings["row_dim"]


@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 5), (4, 3)])
def test_descriptors_have_the_declared_size_and_unit_norm_at_any_grid(height: int, width: int) -> None:
    boq = small_boq().eval()
    with torch.no_grad():
        descriptors = boq(torch.randn(2, SMALL["in_channels"], height, width))
    assert descriptors.shape == (2, SMALL["proj_channels"] * SMALL["row_dim"]) == (2, boq.out_dim)
    torch.testing.assert_close(descriptors.norm(dim=1), torch.ones(2))


def test_the_class_token_is_not_used_and_images_do_not_mix() -> None:
    boq = small_boq().eval()
    features = torch.randn(3, SMALL["in_channels"], 2, 3)
    with torch.no_grad():
        without_token = boq(BackboneOutput(features, None))
        with_token = boq(BackboneOutput(features, torch.randn(3, SMALL["in_channels"])))
        alone = boq(features[1:2])
    torch.testing.assert_close(with_token, without_token, rtol=0, atol=0)
    torch.testing.assert_close(alone, without_token[1:2], rtol=0, atol=1e-6)


def test_default_heads_are_one_per_64_channels_and_at_least_one() -> None:
    assert small_boq().num_heads == 1  # 16 channels
    with torch.device("meta"):
        assert AGGREGATORS.build("BoQ", in_channels=8, proj_channels=256).num_heads == 4
    assert small_boq(num_heads=4).num_heads == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_heads": 5}, "BoQ: num_heads=5 must divide proj_channels=16 (leave num_heads out for proj_channels // 64)"),
        ({"num_heads": 0}, "BoQ: num_heads=0 must divide proj_channels=16"),
        ({"num_queries": 0}, "BoQ: num_queries=0 must be at least 1"),
        ({"row_dim": 0}, "BoQ: row_dim=0 must be at least 1"),
    ],
)
def test_bad_arguments_are_one_clear_line(overrides: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError) as error:
        small_boq(**overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_building_training_and_inference_emit_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        boq = small_boq()
        boq(torch.randn(2, SMALL["in_channels"], 2, 2)).sum().backward()
        assert boq.boqs[0].queries.grad is not None and boq.proj_c.weight.grad is not None
        with torch.no_grad():  # eval: torch's fused encoder and attention paths
            boq.eval()(torch.randn(2, SMALL["in_channels"], 2, 2))


def test_the_training_config_runs_on_the_toy_world(small_toy_world: Path, tmp_path: Path) -> None:
    """configs/dinov2_boq.yaml (the released BoQ on DINOv2, its optimizer, schedule, loss and data
    settings): one fast_dev_run step and validation on the toy world. Overridden: the data, the
    sizes (ViT-S/14 for ViT-B/14, 28 px, 2 places) and the weight source (no download)."""
    trainer = train_cli.main([
        "--config", str(REPO / "configs" / "dinov2_boq.yaml"), "--model.backbone_arch", "dinov2_vits14",
        "--model.backbone_config",
        '{"num_trainable_blocks": 2, "norm_layer": false, "return_token": false, "pretrained": false}',
        "--data.data_root", str(small_toy_world / "gsv-cities"), "--data.data_dir", str(small_toy_world),
        "--data.cities", '["Bangkok", "Boston"]', "--data.batch_size", "2", "--data.img_per_place", "4",
        "--data.image_size", "[28, 28]", "--data.val_image_size", "[28, 28]",  # 2 x 2 patches
        "--data.val_batch_size", "128",  # each toy set in one batch: fast_dev_run validates one batch per set
        "--data.num_workers", "0", "--data.persistent_workers", "false",
        "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
        "--checkpoint.dirpath", str(tmp_path / "checkpoints"), "--resume_checkpoint.dirpath", str(tmp_path / "checkpoints"),
        "--checkpoint.save_last", "false",  # nothing to keep from a dry run
    ]).trainer
    assert trainer.global_step == 1
    network = trainer.lightning_module
    released = released_model("dinov2_boq").architecture
    assert network.hparams.agg_arch == "BoQ"
    assert {k: network.hparams.agg_config[k] for k in released.agg_config} == released.agg_config
    assert network.aggregator.out_dim == 12288 and not network.backbone.norm_layer
    trainable = [any(p.requires_grad for p in block.parameters()) for block in network.backbone.model.blocks]
    assert trainable == [False] * 10 + [True] * 2
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["weight_decay"] == 0.001
    schedule = trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
    assert (schedule.warmup_steps, schedule.milestone_epochs, schedule.gamma) == (3900, [10, 20, 30], 0.1)
    backbone_group, aggregator_group = optimizer.param_groups
    assert aggregator_group["lr"] == pytest.approx(2e-4 * 2 / 3900, rel=1e-3)  # after 1 of 3900 steps
    assert backbone_group["lr"] == pytest.approx(0.1 * aggregator_group["lr"])  # the backbone at 0.1 x lr


def onnx_descriptors(path: Path, images: torch.Tensor) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(["descriptors"], {"images": images.numpy()})[0]


def test_a_boq_trained_here_exports_to_onnx_from_its_checkpoint_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    architecture = Architecture("resnet18", {"layers_to_crop": [4], "layers_to_freeze": -1}, "BoQ", SMALL_ONNX_BOQ)
    torch.manual_seed(0)
    network = build_network(architecture).eval()
    checkpoint = tmp_path / "boq.ckpt"  # as VPRModel saves it: weights and architecture
    torch.save({"state_dict": network.state_dict(), "hyper_parameters": network.architecture.as_dict()}, checkpoint)
    output = tmp_path / "boq.onnx"

    assert export_onnx.main(["--checkpoint", str(checkpoint), "--image_size", "48", "64", "--output", str(output)]) == 0
    assert "max |onnxruntime - pytorch|" in capsys.readouterr().out
    images = torch.randn(5, 3, 48, 64)  # a batch size the tool did not check
    with torch.no_grad():
        expected = network(images).numpy()
    descriptors = onnx_descriptors(output, images)
    assert descriptors.shape == (5, SMALL_ONNX_BOQ["proj_channels"] * SMALL_ONNX_BOQ["row_dim"])
    assert np.abs(descriptors - expected).max() <= 1e-4


def test_boq_on_dinov2_exports_to_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "dinov2_boq.onnx"
    status = export_onnx.main([
        "--backbone", "dinov2_vits14", "--backbone_config", '{"norm_layer": false, "return_token": false}',
        "--aggregator", "BoQ", "--agg_config", json.dumps(SMALL_ONNX_BOQ),
        "--image_size", "28", "42", "--output", str(output),
    ])
    assert status == 0
    out = capsys.readouterr().out
    difference = float(out.split("max |onnxruntime - pytorch| = ")[1].split()[0])
    assert difference <= 1e-4
    descriptors = onnx_descriptors(output, torch.randn(2, 3, 28, 42))
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)
