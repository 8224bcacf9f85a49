"""One name per concept in every tool, the older spellings kept; one image-size rule."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

import eval as eval_cli
import models.aggregators.gem  # noqa: F401  (registers GeM)
import models.backbones.resnet  # noqa: F401  (registers the ResNets)
from models import build_vpr_net
from models.image_size import VALIDATION_SIZE_KEY, resolve_image_size, validated_image_size
from tools import build_index, export_onnx, make_toy_world
from utils.errors import UserError

torch.set_num_threads(2)


@pytest.mark.parametrize(
    ("new", "old"),
    [
        (["--ckpt_path", "a.ckpt"], ["--checkpoint", "a.ckpt"]),
        (["--backbone_arch", "resnet18"], ["--backbone", "resnet18"]),
        (["--agg_arch", "GeM"], ["--aggregator", "GeM"]),
    ],
)
def test_eval_and_export_take_both_spellings(new: list[str], old: list[str]) -> None:
    for parser in (eval_cli.build_parser(), export_onnx.build_parser()):
        extra = ["--out", "x.onnx"] if parser.prog.endswith("export_onnx") else []
        assert vars(parser.parse_args([*new, *extra])) == vars(parser.parse_args([*old, *extra]))


def test_other_older_spellings_still_parse() -> None:
    evaluation = eval_cli.build_parser()
    assert evaluation.parse_args(["--val_set_names", "sped"]).val_datasets == ["sped"]
    assert evaluation.parse_args(["--val_datasets", "sped"]).val_datasets == ["sped"]
    export = export_onnx.build_parser()
    assert export.parse_args(["--output", "a.onnx"]).out == export.parse_args(["--out", "a.onnx"]).out
    index = ["pitts", "--mat", "m.mat"]
    assert build_index.parse_args([*index, "--out_dir", "d"]).out == build_index.parse_args([*index, "--out", "d"]).out
    toy = make_toy_world.build_parser()
    dashed = toy.parse_args(["--image-size", "32", "--gsv-cities", "Osaka", "--gsv-places-per-city", "2", "--no-progress"])
    underscored = toy.parse_args(["--image_size", "32", "--gsv_cities", "Osaka", "--gsv_places_per_city", "2",
                                  "--no_progress"])
    assert vars(dashed) == vars(underscored) and dashed.image_size == 32 and dashed.no_progress


def test_hub_takes_the_config_names_and_the_older_ones() -> None:
    import hubconf

    small = {"num_clusters": 4, "cluster_dim": 8, "token_dim": 8}
    new = hubconf.dinov2_salad("dinov2_vits14", pretrained=False, backbone_config={"num_trainable_blocks": 1}, agg_config=small)
    old = hubconf.dinov2_salad(backbone="dinov2_vits14", pretrained=False, backbone_args={"num_trainable_blocks": 1},
                               agg_args=small)
    assert new.architecture == old.architecture
    assert new.backbone.num_trainable_blocks == 1 and new.aggregator.out_dim == 8 + 4 * 8
    assert new.architecture.agg_config["dropout"] == 0.3  # merged over the released configuration
    with pytest.raises(TypeError, match="give agg_config or its older name agg_args, not both"):
        hubconf.dinov2_salad(pretrained=False, agg_config=small, agg_args=small)


def test_one_image_size_rule(tmp_path: Path) -> None:
    assert resolve_image_size([100]) == (100, 100)
    assert resolve_image_size([98, 140], released="dinov2_salad") == (98, 140)
    assert resolve_image_size(None, released="dinov2_salad") == (322, 322)
    assert resolve_image_size(None) is None
    recorded = tmp_path / "recorded.ckpt"
    torch.save({"state_dict": {}, VALIDATION_SIZE_KEY: [56, 70]}, recorded)
    assert resolve_image_size(None, checkpoint=recorded) == (56, 70)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    older = run / "checkpoints" / "last.ckpt"  # a run from before checkpoints recorded the size
    torch.save({"state_dict": {}}, older)
    (run / "config.yaml").write_text("data:\n  image_size: [84, 84]\n  val_image_size: null\n")
    assert validated_image_size(older) == (84, 84)
    bare = tmp_path / "bare.ckpt"
    torch.save({"w": torch.zeros(1)}, bare)
    assert resolve_image_size(None, checkpoint=bare) is None
    with pytest.raises(UserError, match=r"checkpoint .*bare.ckpt records no validation size\): give image_size=H W"):
        resolve_image_size(None, checkpoint=bare, required=True)
    with pytest.raises(UserError, match=r"image_size=\[1, 2, 3\] must be one or two positive integers"):
        resolve_image_size([1, 2, 3])


def test_a_checkpoint_exports_alone_at_its_validation_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's form: ``--ckpt_path logs/<run>/checkpoints/last.ckpt --out last.onnx``."""
    model = build_vpr_net("resnet18", {"layers_to_crop": [4]}, "GeM", {}).eval()
    hyper_parameters = {"backbone_arch": "resnet18", "backbone_config": {"layers_to_crop": [4]}, "agg_arch": "GeM",
                        "agg_config": {}}
    checkpoint = tmp_path / "logs" / "run" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hyper_parameters, VALIDATION_SIZE_KEY: [48, 64]},
               checkpoint)
    monkeypatch.chdir(tmp_path)
    assert export_onnx.main(["--ckpt_path", "logs/run/checkpoints/last.ckpt", "--out", "last.onnx"]) == 0
    metadata = {entry.key: entry.value for entry in onnx.load(str(tmp_path / "last.onnx")).metadata_props}
    assert json.loads(metadata["image_size"]) == [48, 64]
