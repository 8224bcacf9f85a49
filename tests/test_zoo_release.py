"""MegaLoc, CliqueMining, CosPlace, EigenPlaces and MixVPR, loaded here from files in their authors'
layout through the user's paths (torch.hub entries, ``eval.py --released``, ONNX export).

Each fixture (``fixtures/parity/README_zoo.md``) gives weights regenerated from a seed in the
authors' key layout and what their code computed with them: descriptors, the mean of the
backbone's feature map, MegaLoc's class token. Matching all of them at the fixture's tolerances
proves the released files load right. CliqueMining has SALAD's network, so its Lightning checkpoint
is made from the SALAD fixture's weights.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import eval as eval_cli
import hubconf
import models.released as released
from dataloaders.eval_sets import DataRoots, load_eval_set
from dataloaders.transforms import eval_transform
from models.loading import load_network
from models.vpr_model import VPRModel
from tests import parity
from utils.evaluation.inference import compute_descriptors
from utils.evaluation.pipeline import DescribedModel, EvalOptions, Evaluator
from utils.file_hash import file_sha256

torch.set_num_threads(2)

#: fixture -> (hub entry, the authors' hub arguments).
HUB_ENTRIES = {
    "megaloc": ("megaloc", {}),
    "cosplace_resnet50_2048": ("cosplace", {"backbone": "ResNet50", "fc_output_dim": 2048}),
    "eigenplaces_resnet50_2048": ("eigenplaces", {"backbone": "ResNet50", "fc_output_dim": 2048}),
    "mixvpr_resnet50_4096": ("mixvpr", {}),
}
#: This project's key beginnings -> the authors', written out from their code (independently of the
#: releases' filters).
COSPLACE_KEYS = {
    "backbone.model.conv1.": "backbone.0.", "backbone.model.bn1.": "backbone.1.",
    **{f"backbone.model.layer{stage}.": f"backbone.{stage + 3}." for stage in (1, 2, 3, 4)},
    "aggregator.gem.": "aggregation.1.", "aggregator.fc.": "aggregation.3.",
}
OURS_TO_AUTHORS = {
    "megaloc": {"backbone.model.": "backbone."},
    "cosplace_resnet50_2048": COSPLACE_KEYS,
    "eigenplaces_resnet50_2048": COSPLACE_KEYS,
    "mixvpr_resnet50_4096": {},
}
#: DINOv2's mask token: this project's network holds it, MegaLoc's current file does not (unused at inference).
MASK_TOKEN = "backbone.model.mask_token"
SALAD_FIXTURE = "vits14_default"
SALAD_TOLERANCE = 1e-5


def in_authors_layout(fixture: str, key: str) -> str:
    for ours, theirs in OURS_TO_AUTHORS[fixture].items():
        if key.startswith(ours):
            return theirs + key.removeprefix(ours)
    return key


def cliquemining_checkpoint(path: Path) -> None:
    """A Lightning checkpoint as CliqueMining's training saves it (``save_weights_only``: the weights
    under ``state_dict``, beside counters and the hyperparameters of the published VPRModel), with
    the SALAD fixture's weights (ViT-S/14)."""
    config = parity.load_config(SALAD_FIXTURE)
    agg = config["agg"]
    hyper_parameters = {
        "backbone_arch": config["backbone"],
        "backbone_config": {"num_trainable_blocks": 4, "return_token": True, "norm_layer": True},
        "agg_arch": "SALAD",
        "agg_config": {"num_channels": 384, "num_clusters": agg["clusters"], "cluster_dim": agg["cluster_dim"],
                       "token_dim": agg["token_dim"]},
        "lr": 6e-5, "optimizer": "adamw", "loss_name": "MultiSimilarityLoss",
    }
    weights = parity.synthesize_state_dict(parity.load_shapes(SALAD_FIXTURE), config["weight_seed"])
    torch.save({"epoch": 3, "global_step": 1000, "state_dict": weights, "hyper_parameters": hyper_parameters}, path)


@pytest.fixture(scope="session")
def authors_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each fixture's weights saved once as the authors' file: MegaLoc's ``model.safetensors`` and its
    earlier ``megaloc.torch``; CosPlace's, EigenPlaces' and MixVPR's ``torch.save`` files; a
    CliqueMining Lightning checkpoint."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("zoo_releases")
    files = {}
    megaloc = parity.released_state_dict("megaloc")
    files["megaloc"] = folder / "model.safetensors"
    save_file(megaloc, files["megaloc"])
    earlier = {("backbone.model." + k.removeprefix("backbone.") if k.startswith("backbone.") else k): v for k, v in megaloc.items()}
    earlier[MASK_TOKEN] = torch.zeros(1, 768)
    files["megaloc.torch"] = folder / "megaloc.torch"
    torch.save(earlier, files["megaloc.torch"])
    for fixture in ("cosplace_resnet50_2048", "eigenplaces_resnet50_2048", "mixvpr_resnet50_4096"):
        files[fixture] = folder / released.released_model(fixture).file_name
        torch.save(parity.released_state_dict(fixture), files[fixture])
    files["cliquemining"] = folder / "cliquemining.ckpt"
    cliquemining_checkpoint(files["cliquemining"])
    return files


@pytest.fixture(scope="session")
def hub_networks(authors_files: dict[str, Path]) -> dict[str, torch.nn.Module]:
    """The hub entries given the authors' files (``ckpt_path``)."""
    return {
        fixture: getattr(hubconf, entry)(ckpt_path=str(authors_files[fixture]), **arguments)
        for fixture, (entry, arguments) in HUB_ENTRIES.items()
    }


@pytest.mark.parametrize("fixture", HUB_ENTRIES)
def test_the_network_holds_exactly_the_authors_tensors(
    fixture: str, authors_files: dict[str, Path], hub_networks: dict[str, torch.nn.Module]
) -> None:
    from models.loading import read_weights_file

    theirs = read_weights_file(authors_files[fixture])
    config = parity.load_config(fixture)
    assert len(theirs) == config["n_keys"] + len(config["not_synthesized"])
    ours = {in_authors_layout(fixture, key): tensor for key, tensor in hub_networks[fixture].state_dict().items()
            if key != MASK_TOKEN}
    assert sorted(ours) == sorted(theirs)
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.dtype and torch.equal(ours[key], tensor), key
    assert not hub_networks[fixture].training


def fixture_cases() -> Iterator[tuple[str, int]]:
    for fixture in HUB_ENTRIES:
        for index in range(len(parity.load_config(fixture)["inputs"])):
            yield fixture, index


@pytest.mark.parametrize(("fixture", "index"), list(fixture_cases()))
def test_every_output_matches_the_authors_code(fixture: str, index: int, hub_networks: dict[str, torch.nn.Module]) -> None:
    """Descriptor, feature-map mean and (MegaLoc) class token, at the fixture's tolerances."""
    config = parity.load_config(fixture)
    spec, tolerances, expected = config["inputs"][index], config["recommended_tolerance_maxabs"], parity.load_expected(fixture)
    network = hub_networks[fixture]
    images = parity.synthesize_input(spec["seed"], spec["shape"])
    with torch.no_grad():
        features = network.forward_features(images)
        outputs = {"desc": network(images), "featmap_mean": features.feature_map.mean(dim=(2, 3)), "token": features.token}
    for output, tolerance in tolerances.items():
        reference = expected[f"{output}_{index}"]
        assert outputs[output].shape == reference.shape, output
        difference = np.abs(outputs[output].numpy() - reference).max()
        assert difference <= tolerance, f"{output}: max |ours - authors'| = {difference:.3g} > {tolerance}"


def test_megaloc_earlier_file_loads_the_same_network(authors_files: dict[str, Path], hub_networks: dict[str, torch.nn.Module]) -> None:
    earlier = hubconf.megaloc(ckpt_path=str(authors_files["megaloc.torch"]))
    current = hub_networks["megaloc"].state_dict()
    assert earlier.state_dict().keys() == current.keys()
    for key, tensor in earlier.state_dict().items():
        assert torch.equal(tensor, current[key]), key


def test_cliquemining_lightning_checkpoint_loads_through_its_entry(
    authors_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub entry given a Lightning checkpoint as CliqueMining's training saves it (its architecture
    recorded in the published code's words, beside other entries, which are ignored) builds it. The
    fixture is a ViT-S/14: it is refused as the release's ViT-B/14, and loads once the release is a ViT-S/14."""
    with pytest.raises(ValueError, match=r"records dinov2_vits14 \+ SALAD, 8448-d descriptors, not the architecture "
                       r"of release cliquemining \(dinov2_vitb14 \+ SALAD, 8448-d descriptors\)"):
        hubconf.cliquemining(ckpt_path=str(authors_files["cliquemining"]))
    release = released.RELEASED_MODELS["cliquemining"]
    monkeypatch.setitem(released.RELEASED_MODELS, "cliquemining", dataclasses.replace(
        release, architecture=dataclasses.replace(release.architecture, backbone_arch="dinov2_vits14")))
    network = hubconf.cliquemining(ckpt_path=str(authors_files["cliquemining"]))
    assert network.architecture.backbone_arch == "dinov2_vits14" and network.descriptor_dim == 8448
    expected = parity.load_expected(SALAD_FIXTURE)
    for index, spec in enumerate(parity.load_config(SALAD_FIXTURE)["inputs"]):
        images = parity.synthesize_input(spec["seed"], spec["shape"])
        with torch.no_grad():
            features = network.forward_features(images)
            outputs = {"desc": network(images), "featmap_mean": features.feature_map.mean(dim=(2, 3)), "token": features.token}
        for output, value in outputs.items():
            np.testing.assert_allclose(value.numpy(), expected[f"{output}_{index}"], atol=SALAD_TOLERANCE, rtol=0)


def test_releases_record_their_evaluation_and_sources() -> None:
    megaloc = released.released_model("megaloc")
    assert megaloc.descriptor_dim == 8448 and megaloc.image_size is None and megaloc.code_license == "MIT"
    assert megaloc.url == "https://huggingface.co/gberton/MegaLoc/resolve/main/model.safetensors"
    assert released.released_model("mixvpr").image_size == (320, 320)
    assert released.released_model("cliquemining").image_size == (322, 322)
    assert released.released_model("cliquemining").url != released.released_model("dinov2_salad").url
    cosplace = released.released_model("cosplace")
    assert cosplace.url == "https://github.com/gmberton/CosPlace/releases/download/v1.0/ResNet50_2048_cosplace.pth"
    assert cosplace.image_size is None
    offered = {name for name in released.RELEASED_MODELS if name.startswith(("cosplace_", "eigenplaces_"))}
    assert len(offered) == 4 + 5 + 3 * 7 + 1 + 2 + 2 * 5
    assert "eigenplaces_resnet152_2048" not in offered and "cosplace_vgg16_64" in offered
    for name, release in released.RELEASED_MODELS.items():
        assert release.authors and release.paper and release.code_url, name


@pytest.mark.parametrize(("entry", "backbone", "dim"), [("cosplace", "VGG16", 64), ("eigenplaces", "ResNet18", 256)])
def test_cosplace_family_hub_arguments_build_their_size(entry: str, backbone: str, dim: int) -> None:
    with torch.device("meta"):
        network = getattr(hubconf, entry)(backbone=backbone, fc_output_dim=dim, pretrained=False)
    assert network.descriptor_dim == dim and network.architecture.backbone_arch == backbone.lower()
    with pytest.raises(ValueError, match=f"{entry} has no backbone='ResNet18' with fc_output_dim=2048; released"):
        getattr(hubconf, entry)(backbone="ResNet18", fc_output_dim=2048, pretrained=False)


def test_vgg16_keys_are_the_authors(tmp_path: Path) -> None:
    """CosPlace's VGG-16 file keeps torchvision's feature indices under ``backbone.``."""
    with torch.device("meta"):
        network = hubconf.cosplace(backbone="VGG16", fc_output_dim=64, pretrained=False)
    keys = {in_authors_layout("cosplace_resnet50_2048", key).replace("backbone.model.", "backbone.") for key in network.state_dict()}
    convs = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    assert keys == {f"backbone.{i}.{p}" for i in convs for p in ("weight", "bias")} | {
        "aggregation.1.p", "aggregation.3.weight", "aggregation.3.bias"}


def test_mixvpr_refuses_another_map_size_in_one_line(hub_networks: dict[str, torch.nn.Module]) -> None:
    with pytest.raises(ValueError, match=r"^MixVPR takes a 20x20 feature map of 1024 channels, got 14x14 of 1024: .*image_size=320"):
        hub_networks["mixvpr_resnet50_4096"](torch.zeros(1, 3, 224, 224))


def test_eval_released_reads_the_authors_file(
    small_toy_world: Path, authors_files: dict[str, Path], hub_networks: dict[str, torch.nn.Module], tmp_path: Path
) -> None:
    """``eval.py --method cosplace --ckpt_path FILE``: the descriptors of the hub entry's network."""
    fixture, side = "cosplace_resnet50_2048", 64
    eval_cli.main([
        "--method", "cosplace", "--ckpt_path", str(authors_files[fixture]), "--data_dir", str(small_toy_world),
        "--val_datasets", "sped", "--image_size", str(side), "--device", "cpu", "--num_workers", "0",
        "--batch_size", "8", "--log_dir", str(tmp_path / "eval"), "--save_descriptors",
    ])
    saved = np.load(next((tmp_path / "eval").rglob("descriptors_*.npz")))
    eval_set = load_eval_set("sped", DataRoots(data_dir=str(small_toy_world)))
    images = eval_set.images(eval_transform((side, side)))
    expected = compute_descriptors(hub_networks[fixture], images, 8, 0, torch.device("cpu"))
    np.testing.assert_allclose(np.concatenate([saved["database"], saved["queries"]]), expected, atol=1e-6, rtol=0)
    assert eval_cli.resolve_image_size(eval_cli.build_parser().parse_args(["--released", "mixvpr"])) == (320, 320)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A folder served over HTTP on 127.0.0.1 for the test's duration: ``(base URL, folder)``."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        server.shutdown()
        server.server_close()


def test_eval_released_without_a_file_downloads_through_the_hub_cache(
    served: tuple[str, Path], small_toy_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``eval.py --released NAME`` downloads the file into torch.hub's cache, checks its SHA-256, and a file
    that fails the check is refused in one line and deleted from the cache."""
    base, folder = served
    name = "cosplace_resnet18_32"
    small = dataclasses.replace(  # a small network in the release's place: the download path is what is tested
        released.RELEASED_MODELS[name].architecture, backbone_config={"layers_to_crop": [3, 4]}
    )
    source = load_network(None, architecture=small, random_weights=True, seed=3).network
    file_name = released.RELEASED_MODELS[name].file_name
    torch.save(source.state_dict(), folder / file_name)
    entry = dataclasses.replace(
        released.RELEASED_MODELS[name], architecture=small, url=base + file_name, sha256=file_sha256(folder / file_name)
    )
    monkeypatch.setitem(released.RELEASED_MODELS, name, entry)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    flags = ["--released", name, "--data_dir", str(small_toy_world), "--val_datasets", "sped", "--image_size", "32",
             "--device", "cpu", "--num_workers", "0", "--log_dir", str(tmp_path / "eval")]
    eval_cli.main(flags)
    cached = tmp_path / "hub" / "checkpoints" / file_name
    assert cached.read_bytes() == (folder / file_name).read_bytes()
    result = json.loads(next((tmp_path / "eval").rglob("results.json")).read_text())["sped"]
    assert result["weights"] == "checkpoint"
    loaded = hubconf.cosplace(backbone="ResNet18", fc_output_dim=32)  # the same cached file, no second download
    for key, tensor in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key

    cached.unlink()
    (folder / file_name).write_bytes((folder / file_name).read_bytes()[:-64])  # a torn file on the server
    with pytest.raises(SystemExit):
        eval_cli.main(flags)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("eval.py: error:")]
    assert len(errors) == 1 and f"{file_name}: its SHA-256" in errors[0]
    assert not cached.exists()  # the next run downloads it again


def test_onnx_export_of_a_released_file_gives_the_authors_descriptors(authors_files: dict[str, Path], tmp_path: Path) -> None:
    """``tools.export_onnx --released NAME --checkpoint FILE`` (the authors' layout); onnxruntime on the
    fixture's input gives the fixture's descriptors."""
    import onnxruntime as ort

    from tools import export_onnx

    fixture = "eigenplaces_resnet50_2048"
    config, expected = parity.load_config(fixture), parity.load_expected(fixture)
    spec = config["inputs"][0]
    output = tmp_path / "eigenplaces.onnx"
    assert export_onnx.main([
        "--released", "eigenplaces", "--checkpoint", str(authors_files[fixture]), "--image_size", *map(str, spec["shape"][2:]),
        "--output", str(output), "--check_batch_sizes", "1",
    ]) == 0
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (descriptors,) = session.run(["descriptors"], {"images": parity.synthesize_input(spec["seed"], spec["shape"]).numpy()})
    assert np.abs(descriptors - expected["desc_0"]).max() <= config["recommended_tolerance_maxabs"]["desc"]


def test_a_lightning_modules_network_evaluates_without_glue(small_toy_world: Path) -> None:
    """The network a VPRModel trains goes straight into the evaluation library (same parameters)."""
    module = VPRModel("resnet18", {"layers_to_crop": [3, 4], "pretrained": False}, "GeM", {})
    network = module.network
    assert network.backbone is module.backbone and network.aggregator is module.aggregator
    assert network.architecture == module.architecture
    evaluator = Evaluator(DescribedModel.of(network), EvalOptions(image_size=(32, 32), num_workers=0, device="cpu", batch_size=8))
    evaluation = evaluator.evaluate(load_eval_set("sped", DataRoots(data_dir=str(small_toy_world))))
    assert evaluation.descriptors.shape[1] == 128 and evaluation.retrieval.recalls
