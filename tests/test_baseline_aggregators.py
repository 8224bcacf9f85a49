"""GeM, ConvAP, MixVPR and CosPlace aggregators: sizes, normalisation, the published formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import models.backbones.resnet  # noqa: F401  (registers the ResNets)
from models.aggregators.convap import ConvAP
from models.aggregators.cosplace import CosPlace
from models.aggregators.gem import GeM
from models.aggregators.mixvpr import MixVPR
from models.registry import AGGREGATORS, BACKBONES
from utils.errors import UserError

torch.set_num_threads(2)

BASELINE_AGGREGATORS = ["GeM", "ConvAP", "MixVPR", "CosPlace"]


def _unit_norm(descriptors: torch.Tensor) -> bool:
    return torch.allclose(descriptors.norm(dim=1), torch.ones(descriptors.shape[0]), atol=1e-5)


@pytest.mark.parametrize(
    ("name", "config", "expected_dim"),
    [
        ("GeM", {"in_channels": 32}, 32),
        ("ConvAP", {"in_channels": 32}, 512 * 2 * 2),
        ("ConvAP", {"in_channels": 32, "out_channels": 16, "s1": 3, "s2": 1}, 16 * 3),
        ("MixVPR", {"in_channels": 32, "in_h": 5, "in_w": 6}, 512 * 4),
        ("MixVPR", {"in_channels": 32, "in_h": 5, "in_w": 6, "out_channels": 8, "mix_depth": 2, "out_rows": 3}, 24),
        ("CosPlace", {"in_channels": 32, "out_dim": 64}, 64),
    ],
)
def test_out_dim_is_the_real_output_size_and_outputs_are_unit_norm(
    name: str, config: dict[str, int], expected_dim: int
) -> None:
    aggregator = AGGREGATORS.build(name, **config)
    with torch.no_grad():
        descriptors = aggregator(torch.randn(3, 32, 5, 6))
    assert aggregator.out_dim == expected_dim
    assert descriptors.shape == (3, expected_dim)
    assert _unit_norm(descriptors)


def test_gem_without_in_channels_has_unknown_out_dim() -> None:
    gem = GeM()
    assert gem.out_dim is None
    assert gem(torch.rand(2, 7, 3, 3)).shape == (2, 7)


def test_gem_is_the_normalised_generalized_mean() -> None:
    features = torch.rand(2, 4, 3, 5) + 0.1
    expected = F.normalize((features**3).mean(dim=(2, 3)) ** (1 / 3), dim=1)
    assert torch.allclose(GeM()(features), expected, atol=1e-6)
    # p = 1 is average pooling; a large p approaches max pooling.
    assert torch.allclose(GeM(p=1)(features), F.normalize(features.mean(dim=(2, 3)), dim=1), atol=1e-6)
    max_pooled = F.normalize(features.amax(dim=(2, 3)), dim=1)
    assert torch.allclose(GeM(p=200)(features), max_pooled, atol=2e-2)


def test_gem_clamps_negative_activations_to_eps() -> None:
    features = -torch.rand(1, 3, 2, 2)
    features[0, 0] = 2.0  # channel 0 is positive, the others are clamped to eps ~ 0
    descriptor = GeM()(features)
    assert torch.allclose(descriptor, torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-5)


def test_gem_exponent_is_learnable() -> None:
    gem = GeM()
    assert gem.p.item() == pytest.approx(3.0)
    gem(torch.rand(2, 4, 3, 3))[:, 0].sum().backward()
    assert gem.p.grad is not None and gem.p.grad.abs().item() > 0


def test_convap_is_a_1x1_conv_then_block_average() -> None:
    convap = ConvAP(in_channels=3, out_channels=3, s1=2, s2=2)
    with torch.no_grad():
        convap.channel_pool.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        convap.channel_pool.bias.zero_()
    features = torch.randn(2, 3, 4, 4)
    blocks = features.view(2, 3, 2, 2, 2, 2).mean(dim=(3, 5))  # [B, C, 2, 2] block means
    assert torch.allclose(convap(features), F.normalize(blocks.flatten(1), dim=1), atol=1e-6)


def test_cosplace_normalises_each_feature_before_pooling() -> None:
    """Rescaling one cell's feature vector changes nothing: cells are L2-normalised first."""
    cosplace = CosPlace(in_channels=8, out_dim=4)
    features = torch.randn(2, 8, 3, 3)
    rescaled = features.clone()
    rescaled[:, :, 1, 2] *= 50.0
    with torch.no_grad():
        assert torch.allclose(cosplace(features), cosplace(rescaled), atol=1e-6)


def test_cosplace_is_gem_then_linear() -> None:
    cosplace = CosPlace(in_channels=4, out_dim=2)
    features = torch.rand(2, 4, 3, 3) + 0.1
    unit = features / features.norm(dim=1, keepdim=True)
    pooled = (unit**3).mean(dim=(2, 3)) ** (1 / 3)
    expected = F.normalize(pooled @ cosplace.fc.weight.T + cosplace.fc.bias, dim=1)
    with torch.no_grad():
        assert torch.allclose(cosplace(features), expected, atol=1e-6)


def test_mixvpr_without_mixers_is_two_projections() -> None:
    mixvpr = MixVPR(in_channels=6, in_h=2, in_w=3, out_channels=4, mix_depth=0, out_rows=2)
    features = torch.randn(2, 6, 2, 3)
    flat = features.flatten(2)  # [B, C, h*w]
    channel_projected = torch.einsum("bcn,oc->bon", flat, mixvpr.channel_proj.weight)
    channel_projected = channel_projected + mixvpr.channel_proj.bias[None, :, None]
    row_projected = torch.einsum("bon,rn->bor", channel_projected, mixvpr.row_proj.weight)
    row_projected = row_projected + mixvpr.row_proj.bias
    with torch.no_grad():
        assert torch.allclose(mixvpr(features), F.normalize(row_projected.flatten(1), dim=1), atol=1e-5)


def test_mixvpr_mixer_is_residual_mlp_over_positions() -> None:
    mixvpr = MixVPR(in_channels=2, in_h=2, in_w=2, out_channels=2, mix_depth=1, mlp_ratio=2, out_rows=1)
    mixer = mixvpr.mix[0].mix
    assert isinstance(mixer[0], torch.nn.LayerNorm) and mixer[0].normalized_shape == (4,)
    assert mixer[1].weight.shape == (8, 4) and mixer[3].weight.shape == (4, 8)


def test_mixvpr_keeps_published_parameter_names() -> None:
    keys = set(MixVPR(mix_depth=2).state_dict())
    assert {"mix.0.mix.0.weight", "mix.1.mix.3.weight", "channel_proj.weight", "row_proj.weight"} <= keys


def test_mixvpr_refuses_a_feature_map_of_another_size() -> None:
    mixvpr = MixVPR(in_channels=8, in_h=4, in_w=4)
    with pytest.raises(UserError, match=r"MixVPR takes a 4x4 feature map of 8 channels, got 5x4 of 8: .* in_h=5, in_w=4$"):
        mixvpr(torch.randn(1, 8, 5, 4))


def test_mixvpr_resnet50_4096_configuration_end_to_end() -> None:
    """The MixVPR paper's ResNet-50 4096-d model at 320x320 input."""
    backbone = BACKBONES.build("resnet50", layers_to_crop=[4])
    aggregator = AGGREGATORS.build(
        "MixVPR", in_channels=1024, in_h=20, in_w=20, out_channels=1024, mix_depth=4, mlp_ratio=1, out_rows=4
    )
    with torch.no_grad():
        descriptors = aggregator(backbone(torch.randn(1, 3, 320, 320)))
    assert aggregator.out_dim == 4096
    assert descriptors.shape == (1, 4096)
    assert _unit_norm(descriptors)


@pytest.mark.parametrize(
    ("name", "config"),
    [("ConvAP", {"in_channels": 0}), ("CosPlace", {"in_channels": 8, "out_dim": -1}), ("MixVPR", {"in_h": 0})],
)
def test_bad_sizes_are_refused(name: str, config: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=f"{name} .* must be positive"):
        AGGREGATORS.build(name, **config)


def test_registry_lists_the_published_names() -> None:
    assert set(BASELINE_AGGREGATORS) <= set(AGGREGATORS.names())


def test_unknown_aggregator_lists_registered_names() -> None:
    with pytest.raises(ValueError, match=r"unknown aggregator 'gem'.*ConvAP.*CosPlace.*GeM.*MixVPR"):
        AGGREGATORS.build("gem")
