"""Parity with the published DINOv2 SALAD code on weights regenerated from a seed.

This is the proof that the released checkpoints (dino_salad.ckpt and the smaller variants)
give the paper's descriptors here. Keep it green.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import parity


@pytest.fixture(scope="module")
def parity_model():
    return parity.build_parity_model()


def test_state_dict_has_exactly_the_official_keys_and_shapes(parity_model):
    ours = {k: list(v.shape) for k, v in parity_model.state_dict().items()}
    assert ours == parity.load_shapes()


@pytest.mark.parametrize("index", [0, 1])
def test_descriptors_match_published_code(parity_model, index):
    spec = parity.load_config()["inputs"][index]
    expected = parity.load_expected()
    images = parity.synthesize_input(spec["seed"], spec["shape"])
    with torch.no_grad():
        features, token = parity_model.backbone(images)
        descriptors = parity_model.aggregator((features, token))
    # Locate a mismatch before the aggregator first, then the descriptors themselves.
    np.testing.assert_allclose(token.numpy(), expected[f"token_{index}"], atol=parity.TOLERANCE, rtol=0)
    np.testing.assert_allclose(features.mean(dim=(2, 3)).numpy(), expected[f"featmap_mean_{index}"], atol=parity.TOLERANCE, rtol=0)
    max_diff = np.abs(descriptors.numpy() - expected[f"desc_{index}"]).max()
    assert descriptors.shape == (spec["shape"][0], 8448)
    assert max_diff <= parity.TOLERANCE, f"max |ours - published| = {max_diff:.3g}"
