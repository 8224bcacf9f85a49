"""Published weights are checked against their SHA-256: after a download, and when a local file
carries a published name; a fine-tune of one's own skips the check with a flag."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import models.released as released
from models.loading import load_network
from models.backbones.resnet import ResNetBackbone
from utils.file_hash import digest_in_name, file_sha256

RELEASE = "dinov2_salad_512_32"


def test_names_in_torch_hubs_convention_carry_the_leading_digits() -> None:
    assert digest_in_name("resnet18-f37072fd.pth") == "f37072fd"
    assert digest_in_name("dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth") == "73cec8be"
    assert digest_in_name("dino_salad.ckpt") is None and digest_in_name("dinov2_vitb14_pretrain.pth") is None


def test_a_file_under_a_published_name_must_have_its_digest(tmp_path: Path) -> None:
    """torchvision's ResNet-18 file is resnet18-f37072fd.pth: a file of that name with other bytes is refused."""
    impostor = tmp_path / "resnet18-f37072fd.pth"
    torch.save(ResNetBackbone(18).model.state_dict(), impostor)  # random weights, not torchvision's
    with pytest.raises(ValueError, match=r"resnet18-f37072fd.pth: its SHA-256 \w+\.\.\. is not that of the published") as info:
        ResNetBackbone(18, pretrained_path=impostor)
    assert "\n" not in str(info.value) and "download it again" in str(info.value)
    genuine = tmp_path / f"resnet18-{file_sha256(impostor)[:8]}.pth"  # a name whose digits match its bytes
    impostor.rename(genuine)
    with pytest.raises(ValueError, match="is not a torchvision ResNet-18 state dict"):
        ResNetBackbone(18, pretrained_path=genuine)  # checked, then read: the head was dropped on save


def test_an_official_dinov3_file_is_checked_by_the_digits_its_name_carries(tmp_path: Path) -> None:
    from models.backbones.dinov3 import DINOv3

    impostor = tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"
    torch.save({"cls_token": torch.zeros(1, 1, 384)}, impostor)
    with pytest.raises(ValueError, match=r"dinov3_vits16_pretrain_lvd1689m-08c60483.pth: its SHA-256"):
        DINOv3("dinov3_vits16", pretrained_path=impostor)


@pytest.fixture
def recorded_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The 544-d release's file with a recorded SHA-256 (the one of a file saved here)."""
    network = load_network(release=RELEASE, pretrained=False).network
    path = tmp_path / released.released_model(RELEASE).file_name
    torch.save(network.state_dict(), path)
    entry = dataclasses.replace(released.RELEASED_MODELS[RELEASE], sha256=file_sha256(path))
    monkeypatch.setitem(released.RELEASED_MODELS, RELEASE, entry)
    return path


def test_a_local_release_is_checked_unless_the_user_says_it_is_their_own(recorded_release: Path) -> None:
    assert load_network(recorded_release, release=RELEASE).network.descriptor_dim == 544
    state = torch.load(recorded_release, weights_only=True)
    state["aggregator.dust_bin"] += 1.0  # a fine-tune saved under the released name
    torch.save(state, recorded_release)
    with pytest.raises(ValueError, match=r"dino_salad_512_32.ckpt: its SHA-256 .* verify=False\)"):
        load_network(recorded_release, release=RELEASE)
    loaded = load_network(recorded_release, release=RELEASE, verify=False).network
    assert torch.equal(loaded.aggregator.dust_bin, state["aggregator.dust_bin"])
    renamed = recorded_release.rename(recorded_release.with_name("my_finetune.ckpt"))
    load_network(renamed, release=RELEASE)  # its own name: not the release, not checked


def test_a_corrupt_download_is_refused_and_leaves_the_cache(recorded_release: Path, tmp_path: Path, monkeypatch) -> None:
    entry = dataclasses.replace(released.RELEASED_MODELS[RELEASE], url=f"https://example.org/{recorded_release.name}")
    monkeypatch.setitem(released.RELEASED_MODELS, RELEASE, entry)
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    cached = tmp_path / "hub" / "checkpoints" / recorded_release.name

    def truncated_download(url: str, dst: str, **kwargs: object) -> None:
        Path(dst).write_bytes(recorded_release.read_bytes()[:-100])

    monkeypatch.setattr(torch.hub, "download_url_to_file", truncated_download)
    try:
        with pytest.raises(ValueError, match="dino_salad_512_32.ckpt: its SHA-256"):
            load_network(release=RELEASE)
        assert not cached.exists()  # the next try downloads it again
    finally:
        torch.hub.set_dir(hub_dir)


def test_eval_checks_a_released_file_and_no_verify_skips(recorded_release: Path, tmp_path: Path, capsys) -> None:
    from tests.test_eval_cli import make_sped, run_eval, run_eval_error

    data = make_sped(tmp_path / "data", [1, 3, 5])
    state = torch.load(recorded_release, weights_only=True)
    state["aggregator.dust_bin"] += 1.0
    torch.save(state, recorded_release)
    flags = ["--released", RELEASE, "--ckpt_path", str(recorded_release), "--data_dir", str(data),
             "--val_datasets", "sped", "--image_size", "70", "--num_workers", "0", "--device", "cpu",
             "--log_dir", str(tmp_path / "logs")]
    line = run_eval_error(flags, capsys)
    assert line.startswith(f"eval.py: error: {recorded_release}: its SHA-256") and "--no_verify" in line
    run_eval([*flags, "--no_verify"])
