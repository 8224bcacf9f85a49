"""ResNet backbones: shapes, cropping, freezing, weight loading, registry."""

from __future__ import annotations

import math
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision.models as tvm

from models.backbones.resnet import ResNetBackbone
from models.registry import BACKBONES

torch.set_num_threads(2)

# Channels after layer4 / layer3 / layer2 of the torchvision ResNets (He et al. 2016, table 1):
# basic blocks (18, 34) end at 512 / 256 / 128, bottlenecks (50+) at 2048 / 1024 / 512.
CHANNELS_BY_CROP = {
    "basic": {(): 512, (4,): 256, (3, 4): 128},
    "bottleneck": {(): 2048, (4,): 1024, (3, 4): 512},
}
STRIDE_BY_CROP = {(): 32, (4,): 16, (3, 4): 8}
BLOCK_KIND = {18: "basic", 34: "basic", 50: "bottleneck", 101: "bottleneck", 152: "bottleneck"}


@pytest.fixture(scope="module")
def resnet18_state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random torchvision ResNet-18 state dict saved as a file (a stand-in for the ImageNet one)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    return path


@pytest.mark.parametrize("depth", [18, 34])
@pytest.mark.parametrize("crop", [(), (4,), (3, 4)])
def test_small_resnets_feature_shape(depth: int, crop: tuple[int, ...]) -> None:
    backbone = BACKBONES.build(f"resnet{depth}", layers_to_crop=list(crop))
    expected_channels = CHANNELS_BY_CROP[BLOCK_KIND[depth]][crop]
    assert backbone.out_channels == expected_channels
    assert backbone.patch_size == STRIDE_BY_CROP[crop]
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, 64, 96)).feature_map
    stride = STRIDE_BY_CROP[crop]
    assert features.shape == (2, expected_channels, 64 // stride, 96 // stride)


def test_odd_input_size_rounds_up() -> None:
    backbone = BACKBONES.build("resnet18")  # stride 16
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 70, 50)).feature_map
    assert features.shape == (1, 256, math.ceil(70 / 16), math.ceil(50 / 16))


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_bottleneck_resnets_channels(depth: int) -> None:
    for crop in [(), (4,), (3, 4)]:
        backbone = BACKBONES.build(f"resnet{depth}", layers_to_crop=crop)
        assert backbone.out_channels == CHANNELS_BY_CROP["bottleneck"][crop]
        assert backbone.patch_size == STRIDE_BY_CROP[crop]


def test_resnet50_forward_matches_out_channels() -> None:
    backbone = BACKBONES.build("resnet50")
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 64)).feature_map
    assert features.shape == (1, 1024, 4, 4)


def test_head_and_cropped_stages_are_removed() -> None:
    backbone = BACKBONES.build("resnet18", layers_to_crop=[3, 4])
    keys = backbone.state_dict().keys()
    assert not any(key.startswith(("model.fc.", "model.layer3.", "model.layer4.")) for key in keys)
    assert "model.layer2.0.conv1.weight" in keys  # published key names


def test_pretrained_path_loads_weights(resnet18_state_file: Path) -> None:
    saved = torch.load(resnet18_state_file, weights_only=True)
    backbone = BACKBONES.build("resnet18", pretrained_path=str(resnet18_state_file))
    loaded = backbone.state_dict()
    compared = 0
    for key, tensor in saved.items():
        if key.startswith(("fc.", "layer4.")):
            continue  # the head is dropped, layer4 is cropped by default
        assert torch.equal(loaded[f"model.{key}"], tensor), key
        compared += 1
    assert compared > 50


def test_pretrained_path_of_another_depth_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet34.pth"
    torch.save(tvm.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="resnet34.pth is not a torchvision ResNet-18 state dict"):
        BACKBONES.build("resnet18", pretrained_path=str(path))


def test_missing_pretrained_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        BACKBONES.build("resnet18", pretrained_path=str(tmp_path / "missing.pth"))


def test_pretrained_downloads_the_torchvision_imagenet1k_v1_file(monkeypatch: pytest.MonkeyPatch) -> None:
    requested: list[str] = []
    weights = tvm.resnet18(weights=None).state_dict()

    def fake_download(url: str, **kwargs: object) -> dict[str, torch.Tensor]:
        requested.append(url)
        return weights

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    backbone = BACKBONES.build("resnet18", pretrained=True)
    assert requested == [tvm.ResNet18_Weights.IMAGENET1K_V1.url]
    assert torch.equal(backbone.model.conv1.weight, weights["conv1.weight"])


def test_pretrained_offline_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, **kwargs: object) -> dict[str, torch.Tensor]:
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"resnet50-0676ba61\.pth.*pretrained_path="):
        BACKBONES.build("resnet50", pretrained=True)


def _stage_parameters(backbone: ResNetBackbone) -> dict[str, list[torch.nn.Parameter]]:
    """Parameters of each of the five stages of an uncropped backbone."""
    model = backbone.model
    return {
        "stem": [*model.conv1.parameters(), *model.bn1.parameters()],
        "layer1": list(model.layer1.parameters()),
        "layer2": list(model.layer2.parameters()),
        "layer3": list(model.layer3.parameters()),
        "layer4": list(model.layer4.parameters()),
    }


def _backward(backbone: ResNetBackbone) -> None:
    backbone.train()
    backbone(torch.randn(2, 3, 32, 32)).feature_map.square().mean().backward()


@pytest.mark.parametrize(
    ("layers_to_freeze", "frozen"),
    [(-1, set()), (0, {"stem"}), (2, {"stem", "layer1", "layer2"}), (3, {"stem", "layer1", "layer2", "layer3"})],
)
def test_frozen_layers_get_no_gradient(resnet18_state_file: Path, layers_to_freeze: int, frozen: set[str]) -> None:
    backbone = BACKBONES.build(
        "resnet18", pretrained_path=str(resnet18_state_file), layers_to_freeze=layers_to_freeze, layers_to_crop=[]
    )
    _backward(backbone)
    for stage, parameters in _stage_parameters(backbone).items():
        if stage in frozen:
            assert all(not p.requires_grad and p.grad is None for p in parameters), stage
        else:
            assert all(p.requires_grad and p.grad is not None for p in parameters), stage


def test_random_weights_are_never_frozen() -> None:
    """Published semantics: layers_to_freeze applies only to loaded (pretrained) weights."""
    backbone = BACKBONES.build("resnet18", layers_to_freeze=2)
    _backward(backbone)
    assert all(p.grad is not None for p in backbone.parameters())


def test_frozen_batchnorm_follows_train_mode(resnet18_state_file: Path) -> None:
    """Published semantics: frozen BN still updates its running statistics in train mode."""
    backbone = BACKBONES.build("resnet18", pretrained_path=str(resnet18_state_file), layers_to_freeze=2)
    before = backbone.model.bn1.running_mean.clone()
    backbone.train()
    with torch.no_grad():
        backbone(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert not torch.equal(backbone.model.bn1.running_mean, before)


@pytest.mark.parametrize("crop", [[5], [2, 3, 4], [3]])
def test_invalid_crop_is_refused(crop: list[int]) -> None:
    with pytest.raises(ValueError, match="layers_to_crop"):
        BACKBONES.build("resnet18", layers_to_crop=crop)


@pytest.mark.parametrize("layers_to_freeze", [-2, 4])
def test_invalid_freeze_is_refused(layers_to_freeze: int) -> None:
    with pytest.raises(ValueError, match="layers_to_freeze"):
        BACKBONES.build("resnet18", layers_to_freeze=layers_to_freeze)


def test_registry_lists_every_depth() -> None:
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"} <= set(BACKBONES.names())


def test_unknown_backbone_lists_registered_names() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'resnet19'.*resnet18.*resnet50"):
        BACKBONES.build("resnet19")
