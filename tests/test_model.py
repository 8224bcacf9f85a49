"""The DINOv2 backbone, the SALAD aggregator and checkpoint loading."""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from models import AGGREGATORS, BACKBONES, build_vpr_net
from models.loading import load_network
from models.aggregators.salad import SALAD, sinkhorn_assignment
from models.backbones.dinov2 import DINOv2, official_weights_url, resize_dinov2_pos_embed
from models.pretrained import read_state_dict

torch.set_num_threads(2)


def small_salad_net(num_clusters: int = 16, cluster_dim: int = 32, token_dim: int = 32) -> torch.nn.Module:
    return build_vpr_net(
        "dinov2_vits14", {"num_trainable_blocks": 2}, "SALAD",
        {"num_clusters": num_clusters, "cluster_dim": cluster_dim, "token_dim": token_dim},
    ).eval()


def repeat_aggregation(local: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """The published formulation: materialise ``[B, l, m, n]`` and sum over n."""
    _, dims, _ = local.shape
    clusters = assignment.shape[1]
    weights = assignment.unsqueeze(1).repeat(1, dims, 1, 1)
    features = local.unsqueeze(2).repeat(1, 1, clusters, 1)
    return (features * weights).sum(dim=-1)


def test_registries_list_the_dinov2_family_and_salad():
    for name in ["dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14", "dinov2_vitb14_reg"]:
        assert name in BACKBONES
    assert "SALAD" in AGGREGATORS
    with pytest.raises(ValueError, match="registered: .*dinov2_vitb14"):
        BACKBONES.build("dinov2_vitb")  # exact names only, no substring match


@pytest.mark.parametrize(("clusters", "dim", "token", "expected"), [(16, 32, 32, 544), (32, 64, 64, 2112)])
def test_small_variants_give_their_descriptor_sizes(clusters, dim, token, expected):
    net = small_salad_net(clusters, dim, token)
    with torch.no_grad():
        out = net(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, expected) == (2, net.aggregator.out_dim)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_input_side_not_multiple_of_14_is_a_clear_error():
    backbone = DINOv2("dinov2_vits14", num_trainable_blocks=1)
    with pytest.raises(ValueError, match=r"image size 100x112 is not a multiple of the patch size 14"):
        backbone(torch.randn(1, 3, 100, 112))


def test_backbone_returns_feature_map_and_token_with_published_shapes():
    backbone = DINOv2("dinov2_vits14", num_trainable_blocks=1).eval()
    with torch.no_grad():
        features, token = backbone(torch.randn(2, 3, 98, 140))
    assert features.shape == (2, 384, 7, 10) and token.shape == (2, 384)
    backbone.return_token = False
    with torch.no_grad():
        output = backbone(torch.randn(1, 3, 42, 42))
    assert output.feature_map.shape == (1, 384, 3, 3) and output.token is None


def test_only_the_last_blocks_receive_gradients():
    backbone = DINOv2("dinov2_vits14", num_trainable_blocks=2)
    features, token = backbone(torch.randn(1, 3, 56, 56))
    (features.sum() + token.sum()).backward()
    for name, param in backbone.named_parameters():
        trainable = name.startswith(("model.blocks.10.", "model.blocks.11.", "model.norm."))
        assert param.requires_grad == trainable, name
        assert (param.grad is not None) == trainable, name


def test_register_variant_keeps_registers_out_of_the_feature_map():
    backbone = DINOv2("dinov2_vits14_reg", num_trainable_blocks=1).eval()
    assert backbone.state_dict()["model.register_tokens"].shape == (1, 4, 384)
    with torch.no_grad():
        features, token = backbone(torch.randn(1, 3, 70, 56))
    assert features.shape == (1, 384, 5, 4) and token.shape == (1, 384)


def test_giant_state_dict_uses_official_swiglu_names_both_ways():
    with torch.device("meta"):
        backbone = DINOv2("dinov2_vitg14")
    keys = backbone.state_dict().keys()
    assert "model.blocks.39.mlp.w12.weight" in keys and "model.blocks.0.mlp.w3.bias" in keys
    assert not any(".mlp.fc1." in k or ".mlp.fc2." in k for k in keys)
    assert backbone.state_dict()["model.blocks.0.mlp.w12.weight"].shape == (8192, 1536)
    result = backbone.load_state_dict(backbone.state_dict(), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_pos_embed_resize_follows_dinov2_scale_factor():
    table = torch.randn(1, 1 + 37 * 37, 8)
    resized = resize_dinov2_pos_embed(table, 16, 23)
    assert resized.shape == (1, 1 + 16 * 23, 8)
    torch.testing.assert_close(resized[:, 0], table[:, 0])
    grid = table[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    exact_size = torch.nn.functional.interpolate(grid, size=(16, 23), mode="bicubic")
    offset = torch.nn.functional.interpolate(grid, scale_factor=(16.1 / 37, 23.1 / 37), mode="bicubic")
    ours = resized[:, 1:].reshape(1, 16, 23, 8).permute(0, 3, 1, 2)
    torch.testing.assert_close(ours, offset)
    assert (ours - exact_size).abs().max() > 1e-3  # the two resizings really differ
    assert resize_dinov2_pos_embed(table, 37, 37) is table


def test_batched_matmul_aggregation_equals_the_repeat_formulation():
    torch.manual_seed(0)
    local, scores = torch.randn(3, 16, 50), torch.randn(3, 8, 50)
    assignment = sinkhorn_assignment(scores, torch.tensor(1.0))[:, :-1]
    ours = torch.bmm(local, assignment.transpose(1, 2))
    torch.testing.assert_close(ours, repeat_aggregation(local, assignment), atol=1e-6, rtol=0)


def test_sinkhorn_marginals_and_dustbin_mass():
    torch.manual_seed(0)
    n, m = 40, 6
    plan = sinkhorn_assignment(torch.randn(2, m, n) * 3, torch.tensor(0.5), num_iters=3)
    assert plan.shape == (2, m + 1, n)
    # The last Sinkhorn step fixes the columns: every feature distributes exactly mass 1.
    torch.testing.assert_close(plan.sum(dim=1), torch.ones(2, n))
    # With many iterations the rows converge to 1 per cluster and n - m for the dustbin.
    converged = sinkhorn_assignment(torch.randn(2, m, n), torch.tensor(0.5), num_iters=200)
    expected_rows = torch.tensor([1.0] * m + [n - m]).expand(2, -1)
    torch.testing.assert_close(converged.sum(dim=2), expected_rows, atol=1e-3, rtol=1e-4)


def test_sinkhorn_needs_more_features_than_clusters():
    with pytest.raises(ValueError, match="4 features .* 8 clusters"):
        sinkhorn_assignment(torch.randn(1, 8, 4), torch.tensor(1.0))


def test_salad_stays_float32_under_autocast_and_agrees_with_float32():
    torch.manual_seed(0)
    salad = SALAD(in_channels=32, num_clusters=8, cluster_dim=16, token_dim=8, dropout=0.0).eval()
    inputs = (torch.randn(2, 32, 6, 6), torch.randn(2, 32))
    with torch.no_grad():
        reference = salad(inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = salad(inputs)
    assert mixed.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(mixed, reference, dim=1)
    assert cosine.min() > 0.99


def test_layout_is_token_then_l_major_clusters():
    salad = SALAD(in_channels=16, num_clusters=4, cluster_dim=3, token_dim=2, dropout=0.0).eval()
    inputs = (torch.randn(1, 16, 5, 5), torch.randn(1, 16))
    with torch.no_grad():
        out = salad(inputs)
        local = salad.cluster_features(inputs[0]).flatten(2)
        plan = sinkhorn_assignment(salad.score(inputs[0]).flatten(2), salad.dust_bin)[:, :-1]
        clusters = torch.nn.functional.normalize(repeat_aggregation(local, plan), dim=1)  # [1, l, m]
        token = torch.nn.functional.normalize(salad.token_features(inputs[1]), dim=-1)
    expected = torch.nn.functional.normalize(torch.cat([token, clusters.reshape(1, -1)], dim=1), dim=1)
    torch.testing.assert_close(out, expected)
    # element (dim=1, cluster=2) sits at token_dim + 1 * m + 2
    assert math.isclose(out[0, 2 + 1 * 4 + 2].item(), expected[0, 2 + 6].item(), rel_tol=1e-6)


def test_checkpoint_round_trip_bare_and_lightning(tmp_path: Path):
    source, target = small_salad_net(), small_salad_net()
    bare = tmp_path / "bare.ckpt"
    torch.save(source.state_dict(), bare)
    lightning = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": source.state_dict(), "epoch": 3, "hyper_parameters": {"lr": 1e-4}}, lightning)
    images = torch.randn(1, 3, 70, 70)
    for path in (bare, lightning):
        loaded = load_network(path, architecture=target.architecture).network
        with torch.no_grad():
            torch.testing.assert_close(loaded(images), source(images))


def test_checkpoint_for_another_architecture_is_a_one_line_error(tmp_path: Path):
    path = tmp_path / "other.ckpt"
    torch.save(small_salad_net(32, 64, 64).state_dict(), path)
    with pytest.raises(ValueError, match=r"other.ckpt does not fit this architecture: size mismatch") as info:
        load_network(path, architecture=small_salad_net(16, 32, 32).architecture)
    assert "\n" not in str(info.value)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_checkpoint_that_would_run_code_is_refused_not_executed(tmp_path: Path):
    marker = tmp_path / "was_executed"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(ValueError, match="evil.ckpt .*weights_only=True .*refused"):
        read_state_dict(path)
    assert not marker.exists()


def test_missing_checkpoint_names_the_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt does not exist"):
        read_state_dict(tmp_path / "nope.ckpt")


def test_local_official_dinov2_file_loads_and_offline_download_says_what_to_fetch(tmp_path: Path, monkeypatch):
    official = DINOv2("dinov2_vits14").model.state_dict()
    assert "mask_token" in official and "pos_embed" in official
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(official, path)
    loaded = DINOv2("dinov2_vits14", pretrained_path=str(path))
    torch.testing.assert_close(loaded.model.blocks[3].mlp.fc1.weight, official["blocks.3.mlp.fc1.weight"])

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"fetch dinov2_vitb14_reg4_pretrain.pth by hand and pass its path as pretrained_path="):
        DINOv2("dinov2_vitb14_reg", pretrained=True)
    assert official_weights_url("dinov2_vitl14") == "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth"


def test_building_without_pretrained_never_downloads(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", forbidden)
    DINOv2("dinov2_vits14", pretrained=False)


def test_salad_on_a_cnn_feature_map_uses_its_mean_as_the_token_input():
    salad = SALAD(in_channels=16, num_clusters=4, cluster_dim=3, token_dim=2, dropout=0.0).eval()
    features = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(salad(features), salad((features, features.mean(dim=(2, 3)))))
