"""tools/export_onnx.py: ONNX export with a dynamic batch, checked against PyTorch."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import models.aggregators.gem  # noqa: F401  (registers GeM)
import models.backbones.resnet  # noqa: F401  (registers the ResNets)
from models import build_vpr_net, loading
from tools import export_onnx

torch.set_num_threads(2)
REPO_ROOT = Path(__file__).resolve().parents[1]

GEM_32_FLAGS = ["--backbone", "resnet18", "--aggregator", "GeM", "--image_size", "32"]
SMALL_SALAD = {"num_clusters": 4, "cluster_dim": 8, "token_dim": 8}


def _reported_difference(stdout: str) -> float:
    match = re.search(r"max \|onnxruntime - pytorch\| = (\S+)", stdout)
    assert match is not None, stdout
    return float(match.group(1))


def _no_download(url: str, **kwargs: object) -> dict[str, torch.Tensor]:
    raise AssertionError(f"unexpected download of {url}")


def _onnx_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


RESNET18_GEM_FLAGS = ["--backbone", "resnet18", "--backbone_config", '{"layers_to_crop": [4]}', "--aggregator", "GeM"]


@pytest.mark.parametrize("checkpoint_kind", ["bare state dict + flags", "lightning checkpoint alone"])
def test_resnet18_gem_checkpoint_exports_with_dynamic_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, checkpoint_kind: str
) -> None:
    torch.manual_seed(0)
    model = build_vpr_net("resnet18", {"layers_to_crop": [4]}, "GeM", {}).eval()
    with torch.no_grad():
        model.aggregator.p.fill_(2.5)  # a trained-looking value, different from the init
    checkpoint = tmp_path / "resnet18_gem.ckpt"
    if checkpoint_kind == "bare state dict + flags":
        torch.save(model.state_dict(), checkpoint)
        architecture_flags = RESNET18_GEM_FLAGS
    else:
        # As VPRModel saves it; the checkpoint's weights replace ImageNet ones, so none is downloaded.
        hyper_parameters = {
            "backbone_arch": "resnet18",
            "backbone_config": {"layers_to_crop": [4], "pretrained": True},
            "agg_arch": "GeM",
            "agg_config": {},
        }
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": hyper_parameters}, checkpoint)
        architecture_flags = []
        monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    output = tmp_path / "exported" / "model.onnx"

    status = export_onnx.main(
        [*architecture_flags, "--checkpoint", str(checkpoint), "--image_size", "64", "80", "--output", str(output)]
    )

    assert status == 0
    assert _reported_difference(capsys.readouterr().out) <= 1e-4
    metadata = {entry.key: entry.value for entry in onnx.load(str(output)).metadata_props}
    assert json.loads(metadata["image_size"]) == [64, 80]
    assert metadata["descriptor_dim"] == "256"
    # Independently of the tool: a batch size it did not check, against the checkpointed model.
    images = torch.randn(5, 3, 64, 80)
    session = _onnx_session(output)
    assert session.get_inputs()[0].shape == ["batch", 3, 64, 80]
    (descriptors,) = session.run(["descriptors"], {"images": images.numpy()})
    with torch.no_grad():
        expected = model(images).numpy()
    assert descriptors.shape == (5, 256)
    assert np.abs(descriptors - expected).max() <= 1e-4


def test_a_checkpoint_url_exports_at_its_validation_size_downloaded_once(
    served: tuple[str, Path], download_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, folder = served
    torch.manual_seed(0)
    model = build_vpr_net("resnet18", {"layers_to_crop": [4]}, "GeM", {}).eval()
    hyper_parameters = {"backbone_arch": "resnet18", "backbone_config": {"layers_to_crop": [4]}, "agg_arch": "GeM", "agg_config": {}}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hyper_parameters, "val_image_size": [32, 48]},
               folder / "run.ckpt")
    downloads: list[str] = []
    real_download = torch.hub.download_url_to_file
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, *args, **kwargs: (
        downloads.append(url), real_download(url, *args, **kwargs))[1])
    output = tmp_path / "run.onnx"
    assert export_onnx.main(["--ckpt_path", f"{base}/run.ckpt", "--out", str(output)]) == 0
    assert _reported_difference(capsys.readouterr().out) <= 1e-4
    metadata = {entry.key: entry.value for entry in onnx.load(str(output)).metadata_props}
    assert json.loads(metadata["image_size"]) == [32, 48]  # read from the URL's checkpoint, as from a file
    assert downloads == [f"{base}/run.ckpt"]  # the size and the weights read from one download
    with pytest.raises(SystemExit) as info:
        export_onnx.main(["--ckpt_path", "data:application/octet-stream;base64,gASVAAAAAA==", "--out", str(tmp_path / "x.onnx")])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(": data: paths are not read; copy the file here and "
                                                                     "pass its local path")


def test_checkpoint_without_architecture_needs_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "bare.ckpt"
    torch.save(build_vpr_net("resnet18", {}, "GeM", {}).state_dict(), checkpoint)
    with pytest.raises(SystemExit):
        export_onnx.main(["--checkpoint", str(checkpoint), "--image_size", "32", "--output", str(tmp_path / "m.onnx")])
    assert "does not record its architecture" in capsys.readouterr().err


@pytest.mark.parametrize(("backbone", "side"), [("dinov2_vits14", 56), ("dinov3_vits16", 64)])  # 4 x 4 patches
def test_vit_salad_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str], backbone: str, side: int) -> None:
    import models.aggregators.salad  # noqa: F401  (registers SALAD)
    import models.backbones.dinov2  # noqa: F401  (registers DINOv2)
    import models.backbones.dinov3  # noqa: F401  (registers DINOv3)

    output = tmp_path / "salad.onnx"
    status = export_onnx.main(
        [
            "--backbone", backbone, "--backbone_config", '{"num_trainable_blocks": 2}',
            "--aggregator", "SALAD", "--agg_config", json.dumps(SMALL_SALAD),
            "--image_size", str(side), "--output", str(output),
        ]
    )  # fmt: skip

    assert status == 0
    assert _reported_difference(capsys.readouterr().out) <= 1e-4
    session = _onnx_session(output)
    images = np.random.default_rng(0).standard_normal((4, 3, side, side), dtype=np.float32)
    (descriptors,) = session.run(["descriptors"], {"images": images})
    assert descriptors.shape == (4, 8 + 4 * 8)
    assert np.allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)


def test_a_difference_over_tolerance_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(export_onnx, "max_onnx_difference", lambda *args, **kwargs: 3e-4)
    assert export_onnx.main([*GEM_32_FLAGS, "--output", str(tmp_path / "m.onnx")]) == 1
    assert "FAILED" in capsys.readouterr().err


def test_existing_output_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "mine.onnx"
    output.write_bytes(b"user data")
    with pytest.raises(SystemExit) as exit_info:
        export_onnx.main([*GEM_32_FLAGS, "--output", str(output)])
    assert exit_info.value.code == 2
    assert output.read_bytes() == b"user data"
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([*GEM_32_FLAGS, "--agg_config", "{p: 3}"], "--agg_config: expected a JSON object"),
        (["--backbone", "resnet18", "--aggregator", "GeM"], "no image size known (no checkpoint): give --image_size H W"),
        (["--backbone", "resnet18", "--image_size", "32"], "give both --backbone_arch and --agg_arch"),
        ([], "give --backbone_arch and --agg_arch, --released NAME, or a --ckpt_path"),
        (["--backbone", "resnet18", "--aggregator", "gem", "--image_size", "32"], "unknown aggregator 'gem'"),
        ([*GEM_32_FLAGS, "--image_size", "0"], "--image_size: expected a positive integer"),
        ([*GEM_32_FLAGS, "--tolerance", "-1"], "--tolerance: expected a number >= 0"),
    ],
)
def test_bad_flags_give_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    output = tmp_path / "m.onnx"
    with pytest.raises(SystemExit) as exit_info:
        export_onnx.main([*flags, "--output", str(output)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_runs_as_a_script_with_help() -> None:
    result = subprocess.run(
        [sys.executable, "tools/export_onnx.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "--image_size" in result.stdout and "--checkpoint" in result.stdout


def test_nan_weights_fail_the_check_and_a_full_disk_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = build_vpr_net("resnet18", {}, "GeM", {}).eval()
    with torch.no_grad():
        model.aggregator.p.fill_(float("nan"))  # a diverged run
    checkpoint = tmp_path / "nan.ckpt"
    torch.save(model.state_dict(), checkpoint)
    flags = [*GEM_32_FLAGS, "--checkpoint", str(checkpoint), "--output", str(tmp_path / "nan.onnx")]
    with pytest.raises(SystemExit) as info:  # refused as it is loaded
        export_onnx.main(flags)
    assert info.value.code == 2
    assert f"error: checkpoint {checkpoint} holds NaN or infinite weights (1 of " in capsys.readouterr().err.strip().splitlines()[-1]
    monkeypatch.setattr(loading, "check_finite", lambda network, source: None)  # loaded anyway: the export's own check
    assert export_onnx.main(flags) == 1
    assert "FAILED: the descriptors hold NaN or infinite values" in capsys.readouterr().err
    assert list(tmp_path.glob("*.onnx*")) == []  # a failed export is not left at --out (nor half of it beside)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full_disk)
    output = tmp_path / "full.onnx"
    with pytest.raises(SystemExit) as info:
        export_onnx.main([*GEM_32_FLAGS, "--output", str(output)])
    assert info.value.code == 2 and not output.exists()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(f"could not write --out {output}: No space left on device") and "Traceback" not in last
