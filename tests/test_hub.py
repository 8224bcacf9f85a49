"""torch.hub entries, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from models.architecture import Architecture
from models.loading import ArchitectureMismatchError
from models.vpr_net import build_network
from tests.planted_pickles import planted_checkpoint
from utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_hub_load_local_without_pretrained_builds_the_8448d_model():
    model = torch.hub.load(str(REPO), "dinov2_salad", source="local", pretrained=False)
    assert not model.training
    assert model.aggregator.out_dim == 8448 and model.backbone.model_name == "dinov2_vitb14"
    assert model.backbone.num_trainable_blocks == 4


def test_importing_hubconf_needs_nothing_that_inference_does_not_use():
    code = (
        "import sys, hubconf; "
        "heavy = [m for m in ('faiss', 'pytorch_metric_learning', 'pytorch_lightning', 'lightning', 'pandas') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_ckpt_path_loads_a_local_file_or_its_url_in_the_small_entries(tmp_path: Path, served: tuple[str, Path]):
    import hubconf

    reference = hubconf.dinov2_salad_512_32(pretrained=False)
    base, folder = served
    path = folder / "dino_salad_512_32.ckpt"
    torch.save(reference.state_dict(), path)
    loaded = hubconf.dinov2_salad_512_32(ckpt_path=str(path))
    from_url = hubconf.dinov2_salad_512_32(ckpt_path=f"{base}/dino_salad_512_32.ckpt")
    images = torch.randn(1, 3, 70, 70)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), reference(images))
        torch.testing.assert_close(from_url(images), reference(images))
    assert loaded(images).shape == (1, 544)
    assert hubconf.dinov2_salad_2048_64(pretrained=False).aggregator.out_dim == 2112


def test_hand_downloaded_entries_ask_for_the_file():
    import hubconf

    with pytest.raises(ValueError, match="dino_salad_2048_64.ckpt only for download by hand; pass its path as ckpt_path"):
        hubconf.dinov2_salad_2048_64()


def test_default_entry_downloads_the_release_and_says_what_to_fetch_offline(monkeypatch, tmp_path: Path):
    import hubconf

    asked = []

    def offline(url, *args, **kwargs):
        asked.append(url)
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match="fetch dino_salad.ckpt by hand and pass its path as ckpt_path="):
        hubconf.dinov2_salad()
    assert asked == ["https://github.com/serizba/salad/releases/download/v1.0.0/dino_salad.ckpt"]


@pytest.mark.parametrize("url", ["http", "file", "s3"])
def test_a_planted_checkpoint_by_url_is_refused_by_its_url(served: tuple[str, Path], download_folder: Path, tmp_path: Path, url: str):
    import hubconf

    base, folder = served
    marker = tmp_path / "marker"
    planted = planted_checkpoint(folder / "evil.ckpt", marker)
    given = {"http": f"{base}/evil.ckpt", "file": planted.as_uri(), "s3": "s3://bucket/evil.ckpt"}[url]
    with pytest.raises(UserError) as info:
        hubconf.dinov2_salad_512_32(ckpt_path=given)
    expected = "s3:// paths are not read" if url == "s3" else "is not a plain tensor file loadable with weights_only=True"
    assert str(info.value).startswith(f"checkpoint {given}") and expected in str(info.value)
    assert not marker.exists() and list(download_folder.iterdir()) == []


#: A tiny stand-in for the CosPlace ResNet-18 32-d release (ResNet-18 up to layer2: 0.7 M weights).
TINY_COSPLACE = Architecture("resnet18", {"layers_to_crop": [3, 4], "layers_to_freeze": 2}, "CosPlace", {"out_dim": 32})
TINY_RELEASE = "cosplace_resnet18_32"


@pytest.fixture
def tiny_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """``cosplace(backbone="ResNet18", fc_output_dim=32)`` builds :data:`TINY_COSPLACE`."""
    from models.released import RELEASED_MODELS

    monkeypatch.setitem(RELEASED_MODELS, TINY_RELEASE, replace(RELEASED_MODELS[TINY_RELEASE], architecture=TINY_COSPLACE))


def lightning_checkpoint(path: Path, architecture: Architecture, recorded: Architecture | None = None, seed: int = 0) -> Path:
    """A checkpoint of this project: ``architecture``'s seeded weights, ``recorded`` (default: the same) in its hyperparameters."""
    torch.manual_seed(seed)
    network = build_network(architecture, pretrained_backbone=False)
    torch.save({"state_dict": network.state_dict(), "hyper_parameters": (recorded or architecture).as_dict()}, path)
    return path


def test_a_checkpoint_of_another_architecture_is_refused_by_the_release_entries(tmp_path: Path) -> None:
    import hubconf

    toy = lightning_checkpoint(tmp_path / "toy.ckpt", TINY_COSPLACE)  # resnet18 + CosPlace 32-d
    for entry, release, architecture in [("dinov2_boq", "dinov2_boq", "dinov2_vitb14 + BoQ, 12288-d"),
                                         ("cosplace", "cosplace_resnet50_2048", "resnet50 + CosPlace, 2048-d")]:
        with pytest.raises(ArchitectureMismatchError) as info:
            getattr(hubconf, entry)(ckpt_path=str(toy))
        assert str(info.value).startswith(
            f"checkpoint {toy} records resnet18 + CosPlace, 32-d descriptors, not the architecture of release {release} "
            f"({architecture} descriptors): give a file of that architecture"
        ) and "\n" not in str(info.value)
    bare = tmp_path / "Resnet50_2048_cosplace.pth"  # weights alone: they do not fit the release's
    torch.save(torch.load(toy, weights_only=True)["state_dict"], bare)
    with pytest.raises(ArchitectureMismatchError, match=r"does not fit the architecture of release cosplace_resnet50_2048 "
                       r"\(resnet50 \+ CosPlace, 2048-d descriptors\): size mismatch for backbone\.model\.layer1"):
        hubconf.cosplace(ckpt_path=str(bare))


def test_a_fine_tune_of_the_release_recording_its_architecture_in_other_words_loads(tiny_release: None, tmp_path: Path) -> None:
    import hubconf

    # Fewer frozen layers (training only) and the input width spelled out: the same network.
    fine_tune = replace(TINY_COSPLACE, backbone_config={"layers_to_crop": [3, 4], "layers_to_freeze": 0},
                        agg_config={"out_dim": 32, "in_dim": 128})
    path = lightning_checkpoint(tmp_path / "fine_tune.ckpt", TINY_COSPLACE, recorded=fine_tune)
    network = hubconf.cosplace(backbone="ResNet18", fc_output_dim=32, ckpt_path=str(path))
    assert network.descriptor_dim == 32
    # Cropped after layer3 instead: 32-d too, but other weights; the first differing one is named.
    other = replace(TINY_COSPLACE, backbone_config={"layers_to_crop": [4]})
    with pytest.raises(ArchitectureMismatchError, match=r"records resnet18 \+ CosPlace, 32-d descriptors, not the "
                       r"architecture of release cosplace_resnet18_32 \(resnet18 \+ CosPlace, 32-d descriptors\); first "
                       r"difference: aggregator\.fc\.weight \[32, 256\] vs \[32, 128\]: "):
        hubconf.cosplace(backbone="ResNet18", fc_output_dim=32, ckpt_path=str(lightning_checkpoint(tmp_path / "o.ckpt", other)))


@pytest.mark.parametrize(("key", "value"), [("aggregator.fc.bias", float("nan")), ("backbone.model.bn1.running_var", float("inf"))])
def test_weights_holding_nan_or_infinity_are_refused_naming_the_file(tiny_release: None, tmp_path: Path, key: str, value: float) -> None:
    import hubconf

    path = lightning_checkpoint(tmp_path / "diverged.ckpt", TINY_COSPLACE)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"][key][0] = value  # a parameter, or a buffer
    torch.save(payload, path)
    with pytest.raises(UserError) as info:
        hubconf.cosplace(backbone="ResNet18", fc_output_dim=32, ckpt_path=str(path))
    floating = sum(tensor.is_floating_point() for tensor in payload["state_dict"].values())  # not the BN counters
    assert str(info.value) == (
        f"checkpoint {path} holds NaN or infinite weights (1 of {floating} tensors, first: {key}): "
        "it was saved after its training diverged; use an earlier checkpoint"
    )


def test_a_folder_or_a_planted_pickle_is_refused_in_one_line_of_ours(tmp_path: Path) -> None:
    import hubconf

    with pytest.raises(UserError) as info:
        hubconf.dinov2_salad(ckpt_path=str(tmp_path))
    assert str(info.value) == f"checkpoint {tmp_path} is a folder, not a checkpoint file: give the path of the checkpoint file in it"
    marker = tmp_path / "marker"
    with pytest.raises(UserError) as info:
        hubconf.dinov2_salad(ckpt_path=str(planted_checkpoint(tmp_path / "evil_shell.ckpt", marker)))
    assert str(info.value) == (
        f"checkpoint {tmp_path / 'evil_shell.ckpt'} is not a plain tensor file loadable with weights_only=True "
        f"(refused, not executed): it holds a pickled {os.system.__module__}.system"
    )
    assert info.value.__cause__ is None and not marker.exists()  # torch's advice to load it unchecked is not relayed
