"""Configs that switch backbones, a short --help, and short runs that do what their flags say."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import onnx
import pytest

import main as train_cli
from models import BACKBONES
from models.vpr_model import training_backbone_config
from tools import export_onnx
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_another_familys_arguments_are_left_out_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    resnet = {"layers_to_crop": [3, 4], "layers_to_freeze": -1, "pretrained": False}
    with caplog.at_level(logging.WARNING, logger="models.vpr_model"):
        config = training_backbone_config("dinov2_vits14", {**resnet, "num_trainable_blocks": 1})
    assert config == {"pretrained": False, "num_trainable_blocks": 1}
    assert [record.getMessage() for record in caplog.records] == [
        "backbone_config: layers_to_crop, layers_to_freeze left out (another backbone family's arguments, not dinov2_vits14's)"
    ]


def test_a_backbone_config_keeps_the_pretrained_weights_unless_turned_off() -> None:
    assert training_backbone_config("resnet18", {"layers_to_crop": [4]}) == {"layers_to_crop": [4], "pretrained": True}
    assert training_backbone_config("resnet18", {"pretrained": False}) == {"pretrained": False}
    assert training_backbone_config("resnet18", {"pretrained_path": "r18.pth"}) == {"pretrained_path": "r18.pth"}
    paper = training_backbone_config("dinov2_vitb14", None)
    assert paper["pretrained"] is True and paper["num_trainable_blocks"] == 4


def test_an_argument_no_builder_takes_is_one_line_naming_the_arguments() -> None:
    with pytest.raises(UserError, match=r"backbone resnet18 takes no argument layer_to_crop; its arguments: pretrained, "
                                        r"pretrained_path, layers_to_freeze, layers_to_crop \(with defaults: python3 -m "
                                        r"tools.model_args resnet18\)$"):
        BACKBONES.build("resnet18", layer_to_crop=[4])


def test_help_shows_the_projects_options_then_points_to_lightnings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        train_cli.main(["--help"])
    short = capsys.readouterr().out
    assert len(short.splitlines()) < 200
    assert "--model.backbone_config" in short and "--data.val_set_names" in short
    assert "resnet101, resnet152, resnet18, resnet34, resnet50: pretrained=False, pretrained_path=None, " \
           "layers_to_freeze=2, layers_to_crop=(4,)" in short
    assert "--trainer.max_epochs" not in short
    assert short.rstrip().splitlines()[-1].endswith("more lines): python3 main.py fit --help")
    with pytest.raises(SystemExit):
        train_cli.main(["fit", "--help"])
    assert "--trainer.max_epochs" in capsys.readouterr().out


def test_toy_config_switched_to_a_vit_with_one_flag_trains_briefly(
    small_toy_world: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """configs/toy.yaml + --model.backbone_arch dinov2_vits14: the ResNet's options left out; a 2-step
    run validates one batch (limit_val_batches 1 is a count), writes metrics.csv, and its checkpoint
    exports alone at the size it validated at."""
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        trainer = train_cli.main([
            "--config", str(REPO / "configs/toy.yaml"), "--model.backbone_arch", "dinov2_vits14",
            "--model.agg_config", json.dumps({"num_clusters": 2, "cluster_dim": 8, "token_dim": 8}),
            "--data.data_root", str(small_toy_world / "gsv-cities"), "--data.data_dir", str(small_toy_world),
            "--data.cities", '["Bangkok"]', "--data.batch_size", "2", "--data.img_per_place", "2",
            "--data.image_size", "[28, 28]", "--data.val_image_size", "[28, 42]", "--data.num_workers", "0",
            "--data.val_batch_size", "4", "--data.val_set_names", '["pitts30k_val"]',
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.check_val_every_n_epoch", "1", "--trainer.default_root_dir", str(out),
            "--trainer.enable_progress_bar", "false",
        ]).trainer  # fmt: skip
    assert any("layers_to_crop, layers_to_freeze left out" in record.getMessage() for record in caplog.records)
    assert trainer.global_step == 2 and trainer.num_val_batches == [1]
    run_folder = Path(trainer.log_dir)
    with open(run_folder / "metrics.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert any(row.get("loss") for row in rows), rows
    assert any("no recall ranks the checkpoints" in record.getMessage() for record in caplog.records)
    assert sorted(path.name for path in (run_folder / "checkpoints").glob("epoch*")) == ["epoch00-step2.ckpt"]
    checkpoint = run_folder / "checkpoints" / "last.ckpt"
    assert export_onnx.main(["--ckpt_path", str(checkpoint), "--out", str(tmp_path / "vit.onnx")]) == 0
    metadata = {entry.key: entry.value for entry in onnx.load(str(tmp_path / "vit.onnx")).metadata_props}
    assert json.loads(metadata["image_size"]) == [28, 42] and metadata["backbone"] == "dinov2_vits14"


def test_model_args_lists_a_builders_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from tools import model_args

    assert model_args.main(["resnet18", "GeM"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "backbone_config of each backbone:",
        "  resnet18: pretrained=False, pretrained_path=None, layers_to_freeze=2, layers_to_crop=(4,)",
        "agg_config of each aggregator:",
        "  GeM: in_channels=None, p=3.0, eps=1e-06",
    ]
    with pytest.raises(SystemExit):
        model_args.main(["resnet19"])
    assert "unknown name resnet19; registered: " in capsys.readouterr().err
