"""The BoQ aggregator on its own: the released layout, shapes, heads, errors, no warnings.

Its descriptors are checked against the authors' code in ``test_boq_release.py`` (parity on
seeded weights); here, what holds for any weights.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from models import AGGREGATORS, BackboneOutput
from tests import parity

torch.set_num_threads(2)

SMALL = {"in_channels": 8, "proj_channels": 16, "num_queries": 3, "num_layers": 2, "row_dim": 4}


def small_boq(**overrides: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return AGGREGATORS.build("BoQ", **{**SMALL, **overrides})


@pytest.mark.parametrize("fixture", ["boq_dinov2", "boq_resnet50"])
def test_state_dict_is_the_released_aggregator_part_key_for_key(fixture: str) -> None:
    settings = parity.load_config(fixture)["aggregator"]
    heads = settings.pop("nheads")
    with torch.device("meta"):
        boq = AGGREGATORS.build("BoQ", **settings)
    released = {
        key.removeprefix("aggregator."): shape
        for key, shape in parity.load_shapes(fixture).items()
        if key.startswith("aggregator.")
    }
    ours = {key: list(tensor.shape) for key, tensor in boq.state_dict().items()}
    assert list(ours.items()) == list(released.items())  # same keys, same shapes, same order
    assert boq.num_heads == heads
    assert boq.out_dim == settings["proj_channels"] * settings["row_dim"]


@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 5), (4, 3)])
def test_descriptors_have_the_declared_size_and_unit_norm_at_any_grid(height: int, width: int) -> None:
    boq = small_boq().eval()
    with torch.no_grad():
        descriptors = boq(torch.randn(2, SMALL["in_channels"], height, width))
    assert descriptors.shape == (2, SMALL["proj_channels"] * SMALL["row_dim"]) == (2, boq.out_dim)
    torch.testing.assert_close(descriptors.norm(dim=1), torch.ones(2))


def test_the_class_token_is_not_used_and_images_do_not_mix() -> None:
    boq = small_boq().eval()
    features = torch.randn(3, SMALL["in_channels"], 2, 3)
    with torch.no_grad():
        without_token = boq(BackboneOutput(features, None))
        with_token = boq(BackboneOutput(features, torch.randn(3, SMALL["in_channels"])))
        alone = boq(features[1:2])
    torch.testing.assert_close(with_token, without_token, rtol=0, atol=0)
    torch.testing.assert_close(alone, without_token[1:2], rtol=0, atol=1e-6)


def test_default_heads_are_one_per_64_channels_and_at_least_one() -> None:
    assert small_boq().num_heads == 1  # 16 channels
    with torch.device("meta"):
        assert AGGREGATORS.build("BoQ", in_channels=8, proj_channels=256).num_heads == 4
    assert small_boq(num_heads=4).num_heads == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_heads": 5}, "BoQ: num_heads=5 must divide proj_channels=16 (leave num_heads out for proj_channels // 64)"),
        ({"num_heads": 0}, "BoQ: num_heads=0 must divide proj_channels=16"),
        ({"num_queries": 0}, "BoQ: num_queries=0 must be at least 1"),
        ({"row_dim": 0}, "BoQ: row_dim=0 must be at least 1"),
    ],
)
def test_bad_arguments_are_one_clear_line(overrides: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError) as error:
        small_boq(**overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_building_training_and_inference_emit_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        boq = small_boq()
        boq(torch.randn(2, SMALL["in_channels"], 2, 2)).sum().backward()
        assert boq.boqs[0].queries.grad is not None and boq.proj_c.weight.grad is not None
        with torch.no_grad():  # eval: torch's fused encoder and attention paths
            boq.eval()(torch.randn(2, SMALL["in_channels"], 2, 2))
