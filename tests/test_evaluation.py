"""utils.evaluation.retrieve: the one search-and-score step shared by validation and eval.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataloaders.eval_sets import EvalSet
from utils.evaluation.retrieval import retrieve


def _set(ground_truth=True, groups=False) -> tuple[EvalSet, np.ndarray]:
    rng = np.random.default_rng(0)
    database = rng.standard_normal((30, 16)).astype(np.float32)
    database /= np.linalg.norm(database, axis=1, keepdims=True)
    # query j is a noisy copy of database image 3j: its only positive
    queries = database[::3] + 0.05 * rng.standard_normal((10, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    eval_set = EvalSet(
        "toy", Path("."), [f"d{i}" for i in range(30)], [f"q{j}" for j in range(10)],
        [np.array([3 * j]) for j in range(10)] if ground_truth else None,
        db_groups=["a"] * 15 + ["b"] * 15 if groups else None,
        query_groups=["a"] * 5 + ["b"] * 5 if groups else None,
    )
    return eval_set, np.concatenate([database, queries])


@pytest.mark.parametrize("storage", ["fp32", "fp16"])
def test_recall_of_a_set_whose_answers_are_known(storage):
    eval_set, descriptors = _set()
    result = retrieve(eval_set, descriptors, ks=(1, 5), storage=storage)
    assert result.recalls == {1: 100.0, 5: 100.0}
    assert result.indices[:, 0].tolist() == [3 * j for j in range(10)]
    assert result.curve.shape == (25,) and result.curve[0] == 100.0


def test_per_group_search_stays_in_the_query_city():
    eval_set, descriptors = _set(groups=True)
    result = retrieve(eval_set, descriptors, ks=(1,), per_group=True, num_results=5)
    assert (result.indices[:5] < 15).all() and (result.indices[5:] >= 15).all()
    with pytest.raises(ValueError, match="no groups"):
        retrieve(_set()[0], descriptors, per_group=True)


def test_sets_without_ground_truth_give_predictions_only():
    eval_set, descriptors = _set(ground_truth=False)
    result = retrieve(eval_set, descriptors)
    assert result.recalls is None and result.curve is None and result.indices.shape == (10, 25)
    with pytest.raises(ValueError, match="got 39 descriptors for 40 images"):
        retrieve(eval_set, descriptors[:-1])


def test_channels_last_gives_the_same_descriptors():
    import torch
    from torch.utils.data import TensorDataset

    from models import build_vpr_net
    from utils.evaluation.inference import compute_descriptors

    torch.manual_seed(0)
    model = build_vpr_net("resnet18", {"layers_to_crop": [3, 4], "layers_to_freeze": -1}, "GeM", {})
    images = TensorDataset(torch.randn(6, 3, 64, 64), torch.arange(6))
    plain = compute_descriptors(model, images, 4, 0, torch.device("cpu"))
    nhwc = compute_descriptors(model, images, 4, 0, torch.device("cpu"), channels_last=True)
    np.testing.assert_allclose(nhwc, plain, atol=1e-5)
    first_conv = next(p for p in model.parameters() if p.dim() == 4)
    assert first_conv.is_contiguous(memory_format=torch.channels_last)


def test_compiled_model_gives_the_same_descriptors(compile_calls):
    import torch
    from torch.utils.data import TensorDataset

    from models import build_vpr_net
    from utils.evaluation.inference import compute_descriptors

    torch.manual_seed(0)
    model = build_vpr_net(
        "resnet18", {"layers_to_crop": [3, 4], "layers_to_freeze": -1},
        "SALAD", {"num_clusters": 4, "cluster_dim": 8, "token_dim": 8},
    )
    images = TensorDataset(torch.randn(6, 3, 56, 56), torch.arange(6))  # batches of 4, then 2
    plain = compute_descriptors(model, images, 4, 0, torch.device("cpu"))
    assert compile_calls == []
    with_compile = compute_descriptors(model, images, 4, 0, torch.device("cpu"), compile_model=True)
    assert compile_calls == [model]
    np.testing.assert_allclose(with_compile, plain, atol=1e-5)
