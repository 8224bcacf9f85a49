"""The BoQ authors' released models, loaded here from files in their layout.

Each fixture (``fixtures/parity/README_dinov3_boq.md``) gives weights regenerated from a seed in
the authors' key layout and the descriptors their code computed with them. Files written in that
layout go through the user's paths (``load_network``, torch.hub, ``eval.py --released``) and
must give those descriptors: then the published ``dinov2_12288.pth`` and ``resnet50_16384.pth``
give the authors' descriptors here.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

import eval as eval_cli
import hubconf
from dataloaders.eval_sets import DataRoots, load_eval_set
from dataloaders.transforms import eval_transform
from models.loading import load_network
from models.released import released_model
from models.vpr_net import VPRNet
from tests import parity
from utils.evaluation.retrieval import RECALL_KS, retrieve
from utils.evaluation.inference import compute_descriptors

torch.set_num_threads(2)

#: fixture -> release name, and the authors' backbone key beginnings -> this project's (written
#: out here from their code, independently of the release's filter).
RELEASES = {"boq_dinov2": "dinov2_boq", "boq_resnet50": "resnet50_boq"}
AUTHORS_TO_OURS = {
    "boq_dinov2": {"backbone.dino.": "backbone.model."},
    "boq_resnet50": {
        "backbone.net.0.": "backbone.model.conv1.",
        "backbone.net.1.": "backbone.model.bn1.",
        "backbone.net.4.": "backbone.model.layer1.",
        "backbone.net.5.": "backbone.model.layer2.",
        "backbone.net.6.": "backbone.model.layer3.",
    },
}
#: The fixture README's recommended tolerances: the tighter one on descriptors (noise 3e-8; the
#: smallest listed mistake moves them by 2.5e-5).
DESCRIPTOR_TOLERANCE = 1e-6
FEATURE_MAP_TOLERANCE = 1e-5
TINY_SIDE = 28  # 2 x 2 patches of ViT-B/14


@pytest.fixture(scope="module")
def released_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each fixture's weights saved as the authors' file (their key layout, buffers included)."""
    folder = tmp_path_factory.mktemp("boq_releases")
    files = {}
    for fixture in RELEASES:
        files[fixture] = folder / released_model(RELEASES[fixture]).file_name
        torch.save(parity.released_state_dict(fixture), files[fixture])
    return files


@pytest.fixture(scope="module")
def released_networks(released_files: dict[str, Path]) -> dict[str, VPRNet]:
    return {fixture: load_network(path, release=RELEASES[fixture]).network for fixture, path in released_files.items()}


def in_authors_layout(fixture: str, key: str) -> str:
    for ours_prefix, theirs_prefix in ((ours, theirs) for theirs, ours in AUTHORS_TO_OURS[fixture].items()):
        if key.startswith(ours_prefix):
            return theirs_prefix + key.removeprefix(ours_prefix)
    return key


@pytest.mark.parametrize("fixture", RELEASES)
def test_the_network_holds_exactly_the_released_files_tensors(
    fixture: str, released_files: dict[str, Path], released_networks: dict[str, VPRNet]
) -> None:
    released = torch.load(released_files[fixture], map_location="cpu", mmap=True, weights_only=True)
    ours = {in_authors_layout(fixture, key): tensor for key, tensor in released_networks[fixture].state_dict().items()}
    assert len(released) == parity.load_config(fixture)["n_keys"] + len(
        parity.load_config(fixture).get("checkpoint_buffers_not_synthesized", {})
    )
    assert sorted(ours) == sorted(released)  # 231 keys for DINOv2; 314 (43 num_batches_tracked) for ResNet-50
    for key, tensor in released.items():
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key
    assert released_networks[fixture].descriptor_dim == released_model(RELEASES[fixture]).descriptor_dim


@pytest.mark.parametrize(
    ("fixture", "index"), [("boq_dinov2", 0), ("boq_dinov2", 1), ("boq_resnet50", 0)]
)
def test_descriptors_match_the_authors_code(fixture: str, index: int, released_networks: dict[str, VPRNet]) -> None:
    network = released_networks[fixture]
    spec = parity.load_config(fixture)["inputs"][index]
    expected = parity.load_expected(fixture)
    images = parity.synthesize_input(spec["seed"], spec["shape"])
    with torch.no_grad():
        features = network.forward_features(images)
        descriptors = network.aggregator(features)
    # The map BoQ consumes first (DINOv2 without its final norm; ResNet-50 up to layer3), then the descriptor.
    assert list(features.feature_map.shape) == parity.load_config(fixture)["featmap_shapes"][index]
    feature_means = features.feature_map.mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(feature_means, expected[f"featmap_mean_{index}"], atol=FEATURE_MAP_TOLERANCE, rtol=0)
    assert descriptors.shape == expected[f"desc_{index}"].shape
    max_diff = np.abs(descriptors.numpy() - expected[f"desc_{index}"]).max()
    assert max_diff <= DESCRIPTOR_TOLERANCE, f"max |ours - authors'| = {max_diff:.3g}"


def test_a_file_in_neither_layout_is_refused_in_one_line(tmp_path: Path) -> None:
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, other)
    with pytest.raises(ValueError) as error:
        load_network(other, release="dinov2_boq")
    assert str(error.value) == (
        f"checkpoint {other}: holds neither the layout of dinov2_12288.pth (backbone.dino.*, aggregator.*) "
        "nor this project's (backbone.model.*, aggregator.*); its first key is 'encoder.weight'"
    )
    with pytest.raises(ValueError, match=r"key 'backbone\.net\.7\.0\.conv1\.weight' has no place in the network of resnet50_16384\.pth"):
        released_model("resnet50_boq").checkpoint_filter({"backbone.net.7.0.conv1.weight": torch.zeros(1)})


def test_a_fine_tune_saved_here_loads_through_the_same_entry(released_networks: dict[str, VPRNet], tmp_path: Path) -> None:
    network = released_networks["boq_resnet50"]
    saved = tmp_path / "fine_tune.ckpt"
    torch.save(network.state_dict(), saved)  # this project's layout
    reloaded = hubconf.resnet50_boq(ckpt_path=str(saved))
    images = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images), network(images), rtol=0, atol=0)


@pytest.mark.parametrize(("entry", "dim", "backbone"), [("dinov2_boq", 12288, "dinov2_vitb14"), ("resnet50_boq", 16384, "resnet50")])
def test_hub_entries_without_weights_build_the_released_size(entry: str, dim: int, backbone: str) -> None:
    with torch.device("meta"):  # shapes only: nothing to initialise
        network = getattr(hubconf, entry)(pretrained=False)
    assert not network.training
    assert network.descriptor_dim == dim and network.architecture.backbone_arch == backbone
    assert released_model(entry).image_size == ((322, 322) if entry == "dinov2_boq" else (384, 384))


def test_hub_entry_loads_the_authors_file_from_ckpt_path(released_files: dict[str, Path], released_networks: dict[str, VPRNet]) -> None:
    network = hubconf.resnet50_boq(ckpt_path=str(released_files["boq_resnet50"]))
    for key, tensor in released_networks["boq_resnet50"].state_dict().items():
        assert torch.equal(network.state_dict()[key], tensor), key


@pytest.mark.parametrize(("entry", "file_name"), [("dinov2_boq", "dinov2_12288.pth"), ("resnet50_boq", "resnet50_16384.pth")])
def test_hub_entries_download_the_authors_release_and_say_what_to_fetch_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, entry: str, file_name: str
) -> None:
    asked = []

    def offline(url: str, *args: object, **kwargs: object) -> None:
        asked.append(url)
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match=f"fetch {file_name} by hand and pass its path as ckpt_path="):
        getattr(hubconf, entry)()
    assert asked == [f"https://github.com/amaralibey/Bag-of-Queries/releases/download/v1.0/{file_name}"]


def test_eval_evaluates_the_authors_file_by_name(
    small_toy_world: Path, released_files: dict[str, Path], released_networks: dict[str, VPRNet], tmp_path: Path
) -> None:
    eval_cli.main([
        "--released", "dinov2_boq", "--ckpt_path", str(released_files["boq_dinov2"]),
        "--data_dir", str(small_toy_world), "--val_datasets", "sped", "--image_size", str(TINY_SIDE),
        "--device", "cpu", "--num_workers", "0", "--batch_size", "4", "--log_dir", str(tmp_path / "eval"),
    ])
    result = json.loads(next((tmp_path / "eval").rglob("results.json")).read_text())["sped"]
    assert result["architecture"] == released_model("dinov2_boq").architecture.as_dict() | {
        "backbone_config": released_networks["boq_dinov2"].architecture.backbone_config,
        "agg_config": released_networks["boq_dinov2"].architecture.agg_config,
    }
    assert result["weights"] == "checkpoint" and result["image_size"] == [TINY_SIDE, TINY_SIDE]
    # The recalls of the network load_network loads from the same file, on the same images.
    eval_set = load_eval_set("sped", DataRoots(data_dir=str(small_toy_world)))
    images = eval_set.images(eval_transform((TINY_SIDE, TINY_SIDE)))
    descriptors = compute_descriptors(released_networks["boq_dinov2"], images, 4, 0, torch.device("cpu"))
    expected = retrieve(eval_set, descriptors, RECALL_KS).recalls
    assert {int(k): v for k, v in result["recall@k"].items()} == pytest.approx(expected, abs=1e-9)


def test_eval_refuses_a_file_of_another_layout_in_one_line(
    small_toy_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, other)
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.main([
            "--released", "resnet50_boq", "--ckpt_path", str(other), "--data_dir", str(small_toy_world),
            "--val_datasets", "sped", "--device", "cpu", "--log_dir", str(tmp_path / "eval"),
        ])
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("eval.py: error:")]
    assert len(errors) == 1  # one line (stderr also holds the progress bar of the file check)
    assert errors[0].startswith(f"eval.py: error: checkpoint {other}: holds neither the layout of resnet50_16384.pth")


def test_onnx_export_reads_the_authors_file_of_a_released_name(
    released_files: dict[str, Path], released_networks: dict[str, VPRNet]
) -> None:
    """``tools.export_onnx --released NAME --checkpoint FILE`` reads FILE in the authors' layout (the
    export itself is tested at small sizes in test_boq.py; a ViT-B/14 file is 381 MB)."""
    from tools import export_onnx

    for fixture, name in RELEASES.items():
        args = export_onnx.build_parser().parse_args(
            ["--released", name, "--checkpoint", str(released_files[fixture]), "--output", "unused.onnx"]
        )
        state = export_onnx.export_network(args, export_onnx.resolve_architecture(args)).state_dict()
        expected = released_networks[fixture].state_dict()
        assert state.keys() >= expected.keys()
        for key, tensor in expected.items():
            assert torch.equal(state[key], tensor), key
