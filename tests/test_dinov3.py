"""DINOv3 backbones: the official checkpoint layout, parity with the official DINOv3 code, the
RoPE periods a file brings, bad files, freezing, and the DINOv3 SALAD recipe end to end.

Expected values come from the fixtures (tests/fixtures/parity/README_dinov3_boq.md: outputs of
facebookresearch/dinov3 for weights regenerated from a seed), from that README's description of
the official layout, or from DINOv3's published formulas; never from the code under test.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

import eval as eval_cli
import main as train_cli
import models.loading
from models import Architecture, build_network
from models.backbones.dinov3 import DINOv3
from models.released import DINOV2_SALAD_BACKBONE, paper_architecture
from models.vpr_model import VPRModel
from tests import parity

REPO = Path(__file__).resolve().parents[1]
FIXTURES = ("dinov3_vits16", "dinov3_vitb16")
SMALL_SALAD = {"num_clusters": 2, "cluster_dim": 4, "token_dim": 4}


def official_checkpoint(name: str) -> dict[str, torch.Tensor]:
    """The fixture's weights with the 13 buffers of the official file at their official init
    values, as README_dinov3_boq.md describes them (a new dict; its tensors are shared: replace
    them, do not change them in place)."""
    return dict(_official_checkpoint(name))


@functools.cache
def _official_checkpoint(name: str) -> dict[str, torch.Tensor]:
    config = parity.load_config(name)
    state_dict = parity.synthesize_state_dict(parity.load_shapes(name), config["weight_seed"])
    for key, spec in config["checkpoint_buffers_not_synthesized"].items():
        (size,) = spec["shape"]
        if key == "rope_embed.periods":  # period_i = 100 ** (2i / 32), i = 0..15, in float32
            state_dict[key] = 100.0 ** (2 * torch.arange(size, dtype=torch.float32) / (2 * size))
        else:  # blocks.N.attn.qkv.bias_mask: 1 on the q third, 0 on the k third, 1 on the v third
            third = size // 3
            state_dict[key] = torch.cat((torch.ones(third), torch.zeros(third), torch.ones(third)))
    return state_dict


@pytest.fixture(scope="module")
def official_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dinov3_official")
    files = {name: folder / f"{name}.pth" for name in FIXTURES}
    for name, path in files.items():
        torch.save(official_checkpoint(name), path)
    return files


@pytest.fixture(scope="module")
def fixture_backbones(official_files: dict[str, Path]) -> dict[str, DINOv3]:
    """Each fixture's backbone, loaded from its official file through ``pretrained_path``."""
    return {name: DINOv3(name, pretrained_path=path).eval() for name, path in official_files.items()}


def save_checkpoint(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state_dict, path)
    return path


# ------------------------------------------------------------------------------ layout
@pytest.mark.parametrize("name", FIXTURES)
def test_state_dict_is_the_official_file_layout(name: str) -> None:
    config = parity.load_config(name)
    official = parity.load_shapes(name)
    official.update({key: spec["shape"] for key, spec in config["checkpoint_buffers_not_synthesized"].items()})
    assert len(official) == 188
    with torch.device("meta"):
        backbone = DINOv3(name)
    assert {key: list(value.shape) for key, value in backbone.model.state_dict().items()} == official


def test_swiglu_models_use_the_official_names_and_gating() -> None:
    # DINOv3's SwiGLUFFN (S+, H+): hidden = int(6 * 384 * 2 / 3) rounded up to a multiple of 8,
    # out = w3(silu(w1(x)) * w2(x)).
    with torch.device("meta"):
        backbone = DINOv3("dinov3_vits16plus", num_trainable_blocks=1)
    mlp = backbone.model.blocks[0].mlp.to_empty(device="cpu")  # only this MLP runs: random values
    torch.manual_seed(0)
    for parameter in mlp.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    state_dict = backbone.model.state_dict()
    weights = {k.removeprefix("blocks.0.mlp."): v for k, v in state_dict.items() if k.startswith("blocks.0.mlp.")}
    assert {k: list(v.shape) for k, v in weights.items()} == {
        "w1.weight": [1536, 384], "w1.bias": [1536], "w2.weight": [1536, 384], "w2.bias": [1536],
        "w3.weight": [384, 1536], "w3.bias": [384],
    }  # fmt: skip
    x = torch.randn(3, 384)
    gate, value = (F.linear(x, weights[f"{w}.weight"], weights[f"{w}.bias"]) for w in ("w1", "w2"))
    gated = F.silu(gate) * value
    expected = F.linear(gated, weights["w3.weight"], weights["w3.bias"])
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), expected)


# ------------------------------------------------------------------------------ parity
@pytest.mark.parametrize(("name", "index"), [("dinov3_vits16", 0), ("dinov3_vits16", 1), ("dinov3_vitb16", 0)])
def test_outputs_match_the_official_code(fixture_backbones: dict[str, DINOv3], name: str, index: int) -> None:
    config, expected = parity.load_config(name), parity.load_expected(name)
    tolerance = config["recommended_tolerance_maxabs"]
    spec = config["inputs"][index]
    images = parity.synthesize_input(spec["seed"], spec["shape"])
    backbone = fixture_backbones[name]
    with torch.no_grad():
        tokens = backbone.forward_tokens(images)
        output = backbone(images)
    batch, _, height, width = spec["shape"]
    assert output.feature_map.shape == (batch, backbone.out_channels, height // 16, width // 16)
    ours = {
        "cls": output.token,
        "storage": tokens[:, 1:5],
        "patch_mean": output.feature_map.mean(dim=(2, 3)),
        "patch": output.feature_map.flatten(2).transpose(1, 2),  # [B, h*w, C], row-major
    }
    compared = [output_name for output_name in ours if f"{output_name}_{index}" in expected]
    assert {"cls", "storage", "patch_mean"} <= set(compared)
    for output_name in compared:
        difference = np.abs(ours[output_name].numpy() - expected[f"{output_name}_{index}"]).max()
        assert difference <= tolerance[output_name], f"{output_name}: max |ours - official| = {difference:.3g}"


# ------------------------------------------------------------------------------ RoPE periods
def test_the_periods_of_the_file_are_used_saved_and_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = official_checkpoint("dinov3_vits16")
    formula = checkpoint["rope_embed.periods"]
    rounded = formula.to(torch.bfloat16)  # as the released files reportedly store them
    assert not torch.equal(rounded.float(), formula)
    checkpoint["rope_embed.periods"] = rounded
    path = save_checkpoint(checkpoint, tmp_path / "bf16_periods.pth")

    torch.manual_seed(0)
    architecture = Architecture("dinov3_vits16", {"pretrained_path": str(path)}, "SALAD", SMALL_SALAD)
    network = build_network(architecture).eval()
    backbone = network.backbone
    assert torch.equal(backbone.model.rope.periods, rounded.float())
    # The fixture ran with the formula's periods; the official code with the rounded ones moved
    # the class token of this input by 2.5e-3 (README_dinov3_boq.md, two significant digits).
    spec = parity.load_config("dinov3_vits16")["inputs"][1]
    images = parity.synthesize_input(spec["seed"], spec["shape"])
    with torch.no_grad():
        token = backbone(images).token.numpy()
    shift = np.abs(token - parity.load_expected("dinov3_vits16")["cls_1"]).max()
    assert shift == pytest.approx(2.5e-3, abs=0.05e-3)

    # A checkpoint of this network holds them, and rebuilds the same network on the fast path
    # (built on the meta device, no tensor left behind).
    images = torch.randn(2, 3, 32, 48)
    state_dict = network.state_dict()
    assert torch.equal(state_dict["backbone.model.rope_embed.periods"], rounded.float())
    builds: list[Architecture] = []
    real_build = models.loading.build_network
    monkeypatch.setattr(
        models.loading, "build_network", lambda arch, **kwargs: builds.append(arch) or real_build(arch, **kwargs)
    )
    torch.save(state_dict, tmp_path / "rounded.ckpt")
    rebuilt = models.loading.load_network(tmp_path / "rounded.ckpt", architecture=network.architecture).network
    assert len(builds) == 1
    assert torch.equal(rebuilt.backbone.model.rope.periods, rounded.float())
    with torch.no_grad():
        assert torch.equal(rebuilt(images), network(images))

    # Lower precision keeps them (timm would recompute the formula and leave the state dict).
    backbone.bfloat16()
    assert backbone.model.rope.periods.dtype == torch.float32
    assert torch.equal(backbone.model.state_dict()["rope_embed.periods"], rounded.float())


def test_the_files_bias_mask_is_used_as_the_official_code_uses_it(tmp_path: Path) -> None:
    checkpoint = official_checkpoint("dinov3_vits16")
    for key in [k for k in checkpoint if k.endswith("qkv.bias_mask")]:
        checkpoint[key] = torch.ones_like(checkpoint[key])  # the k bias applied too
    backbone = DINOv3("dinov3_vits16", pretrained_path=save_checkpoint(checkpoint, tmp_path / "k_bias.pth")).eval()
    spec = parity.load_config("dinov3_vits16")["inputs"][1]
    with torch.no_grad():
        token = backbone(parity.synthesize_input(spec["seed"], spec["shape"])).token.numpy()
    # README_dinov3_boq.md: in the official code, an unmasked k bias moves the class token of this
    # input by 1.8e-2 (two significant digits).
    shift = np.abs(token - parity.load_expected("dinov3_vits16")["cls_1"]).max()
    assert shift == pytest.approx(1.8e-2, abs=0.05e-2)


# ------------------------------------------------------------------------------ files
def test_sat_file_local_cls_norm_is_dropped(tmp_path: Path) -> None:
    # The SAT-493M ViT-L/16 file adds a norm used only for local crops in pretraining.
    checkpoint = official_checkpoint("dinov3_vits16")
    checkpoint["local_cls_norm.weight"], checkpoint["local_cls_norm.bias"] = torch.ones(384), torch.zeros(384)
    backbone = DINOv3("dinov3_vits16", pretrained_path=save_checkpoint(checkpoint, tmp_path / "sat.pth"))
    assert not any(key.startswith("local_cls_norm") for key in backbone.model.state_dict())
    assert torch.equal(backbone.model.norm.weight, checkpoint["norm.weight"])


def _mask_missing(checkpoint: dict[str, torch.Tensor]) -> None:
    del checkpoint["blocks.3.attn.qkv.bias_mask"]


def _timm_name(checkpoint: dict[str, torch.Tensor]) -> None:
    checkpoint["reg_token"] = checkpoint.pop("storage_tokens")


@pytest.mark.parametrize(
    ("change", "name", "message"),
    [
        (_mask_missing, "dinov3_vits16", "missing blocks.3.attn.qkv.bias_mask"),
        (_timm_name, "dinov3_vits16", "missing storage_tokens"),
        (None, "dinov3_vitb16", "not the official dinov3_vitb16 checkpoint (dinov3_vitb16_pretrain_lvd1689m-73cec8be"),
    ],
)
def test_a_file_that_is_not_the_official_one_is_refused_in_one_line(
    tmp_path: Path, change: Any, name: str, message: str
) -> None:
    checkpoint = official_checkpoint("dinov3_vits16")
    if change is not None:
        change(checkpoint)
    path = save_checkpoint(checkpoint, tmp_path / "file.pth")
    with pytest.raises(ValueError) as error:
        DINOv3(name, pretrained_path=path)
    assert message in str(error.value) and f"pretrained_path {path}" in str(error.value)
    assert "\n" not in str(error.value)


def test_weights_cannot_be_downloaded_and_the_errors_say_where_they_come_from(tmp_path: Path) -> None:
    access_page = "https://ai.meta.com/resources/models-and-libraries/dinov3-downloads/"
    with pytest.raises(ValueError) as no_file:
        DINOv3("dinov3_vitl16", pretrained=True)
    with pytest.raises(FileNotFoundError) as missing:
        DINOv3("dinov3_vitl16", pretrained_path=tmp_path / "absent.pth")
    for error in (no_file, missing):
        text = str(error.value)
        assert access_page in text and "pretrained_path" in text
        assert "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth" in text  # the file to ask Meta for
        assert "\n" not in text
    assert f"pretrained_path {tmp_path / 'absent.pth'}: no such file" in str(missing.value)


# ------------------------------------------------------------------------------ training
def test_only_the_last_blocks_get_gradients() -> None:
    torch.manual_seed(0)
    backbone = DINOv3("dinov3_vits16", num_trainable_blocks=1)
    output = backbone(torch.randn(2, 3, 32, 32))
    (output.feature_map.sum() + output.token.sum()).backward()
    frozen = [backbone.model.patch_embed, *backbone.model.blocks[:-1]]
    assert all(p.grad is None and not p.requires_grad for part in frozen for p in part.parameters())
    assert all(p.grad is None for p in (backbone.model.cls_token, backbone.model.reg_token, backbone.model.mask_token))
    trained = (backbone.model.blocks[-1], backbone.model.norm)
    assert all(p.grad is not None for part in trained for p in part.parameters())


def test_native_resolution_evaluation_rounds_sides_to_multiples_of_16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    architecture = Architecture("dinov3_vits16", {"num_trainable_blocks": 1}, "SALAD", SMALL_SALAD)
    checkpoint = tmp_path / "dinov3_salad.ckpt"
    state_dict = build_network(architecture).state_dict()
    torch.save({"state_dict": state_dict, "hyper_parameters": architecture.as_dict()}, checkpoint)
    rng = np.random.default_rng(0)
    for folder, sizes in (("db", [(70, 42), (100, 60)]), ("queries", [(70, 42)])):  # (width, height)
        for i, size in enumerate(sizes):
            (tmp_path / folder).mkdir(exist_ok=True)
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / folder / f"@{100.0 * i:.2f}@4000000.00@.png")  # UTM east, north
    seen: list[tuple[int, int]] = []
    real_forward_tokens = DINOv3.forward_tokens

    def recording_forward_tokens(self: DINOv3, images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape[-2:]))
        return real_forward_tokens(self, images)

    monkeypatch.setattr(DINOv3, "forward_tokens", recording_forward_tokens)
    with caplog.at_level(logging.INFO):
        eval_cli.main([
            "--ckpt_path", str(checkpoint), "--database_folder", str(tmp_path / "db"),
            "--queries_folder", str(tmp_path / "queries"), "--device", "cpu", "--num_workers", "0",
            "--log_dir", str(tmp_path / "eval"),
        ])
    assert "sides rounded to multiples of 16" in caplog.text
    # (height, width): 42 -> 48, 70 -> 64; 60 -> 64, 100 -> 96 (the nearest multiples of 16).
    assert set(seen) == {(48, 64), (64, 96)}


# ------------------------------------------------------------------------------ the recipe
CONFIG = REPO / "configs" / "dinov3_salad.yaml"


def test_config_is_the_paper_recipe_on_dinov3_vitb16() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    model, data = config["model"], config["data"]
    assert model["backbone_arch"] == "dinov3_vitb16"
    assert {k: v for k, v in model["backbone_config"].items() if k != "pretrained_path"} == DINOV2_SALAD_BACKBONE
    assert model["agg_arch"] == "SALAD" and model["agg_config"] == paper_architecture().agg_config
    defaults = inspect.signature(VPRModel).parameters
    for key in ("lr", "optimizer", "weight_decay", "lr_sched", "loss_name", "miner_name", "miner_margin"):
        assert model[key] == defaults[key].default, key
    assert model["lr_sched_args"] == {"start_factor": 1.0, "end_factor": 0.2, "total_iters": 4000}
    assert (data["batch_size"], data["img_per_place"], data["image_size"]) == (60, 4, [224, 224])
    assert data["val_image_size"] == [320, 320]
    with torch.device("meta"):
        backbone = DINOv3(model["backbone_arch"])
    for size in (data["image_size"], data["val_image_size"]):
        backbone.check_image_size(*size)


def test_config_trains_a_fast_dev_run_whose_checkpoint_evaluates(small_toy_world: Path, tmp_path: Path) -> None:
    """``main.py --config configs/dinov3_salad.yaml --trainer.fast_dev_run true`` on the toy world,
    at the smallest sizes (random ViT-S/16 weights, a tiny SALAD, 32 px)."""
    cli = train_cli.main([
        "--config", str(CONFIG), "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
        "--model.backbone_arch", "dinov3_vits16", "--model.backbone_config", '{"num_trainable_blocks": 1, "pretrained": false}',
        "--model.agg_config", json.dumps(SMALL_SALAD),
        "--data.data_root", str(small_toy_world / "gsv-cities"), "--data.data_dir", str(small_toy_world),
        "--data.cities", '["Bangkok"]', "--data.batch_size", "2", "--data.img_per_place", "2",
        "--data.image_size", "[32, 32]", "--data.val_image_size", "[32, 32]",
        # fast_dev_run validates one batch: one batch holds the toy pitts30k_val.
        "--data.val_batch_size", "100", "--data.val_set_names", '["pitts30k_val"]',
        "--data.num_workers", "0", "--data.persistent_workers", "false",
    ])  # fmt: skip
    assert cli.trainer.global_step == 1
    assert "pitts30k_val/R1" in cli.trainer.callback_metrics
    checkpoint = tmp_path / "fast_dev_run.ckpt"
    cli.trainer.save_checkpoint(checkpoint)

    eval_cli.main([
        "--ckpt_path", str(checkpoint), "--data_dir", str(small_toy_world), "--val_datasets", "pitts30k_val",
        "--image_size", "32", "--device", "cpu", "--num_workers", "0", "--log_dir", str(tmp_path / "eval"),
    ])
    result = json.loads(next((tmp_path / "eval").rglob("results.json")).read_text())["pitts30k_val"]
    assert result["architecture"]["backbone_arch"] == "dinov3_vits16"
    # eval.py's descriptors are validation's: the same recall.
    assert result["recall@k"]["1"] == pytest.approx(float(cli.trainer.callback_metrics["pitts30k_val/R1"]), abs=1e-3)
