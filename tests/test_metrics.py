"""Recall@K on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from utils.evaluation.metrics import first_correct_rank, recall_at_k, recall_curve

# 5 queries, 3 predictions each; the comment gives the (1-based) rank of the first positive
PREDICTIONS = np.array(
    [
        [3, 1, 2],  # positive 1 at rank 2
        [0, 4, 5],  # positive 5 at rank 3
        [7, 8, 9],  # empty ground truth: never correct
        [1, 2, 3],  # positive 0 never retrieved
        [6, 11, 12],  # positive 6 at rank 1
    ]
)
GROUND_TRUTH = [np.array([1]), np.array([5, 99]), np.array([], dtype=np.int64), np.array([0]), np.array([10, 6])]


def test_recall_at_k_hand_made() -> None:
    recalls = recall_at_k(PREDICTIONS, GROUND_TRUTH, ks=(1, 2, 3))
    # correct at K: {q4} at 1, {q0, q4} at 2, {q0, q1, q4} at 3, out of 5 queries
    assert recalls == pytest.approx({1: 20.0, 2: 40.0, 3: 60.0})
    assert list(recalls) == [1, 2, 3]


def test_recall_keeps_order_of_ks_and_accepts_object_array_ground_truth() -> None:
    ground_truth = np.empty(len(GROUND_TRUTH), dtype=object)
    ground_truth[:] = GROUND_TRUTH
    recalls = recall_at_k(PREDICTIONS, ground_truth, ks=(3, 1))
    assert list(recalls.items()) == [(3, pytest.approx(60.0)), (1, pytest.approx(20.0))]


def test_sped_style_two_dimensional_ground_truth() -> None:
    # SPED stores gt as an int64 [M, 1] array with gt[i] = [i]
    ground_truth = np.arange(4).reshape(4, 1)
    predictions = np.array([[0, 2], [3, 1], [1, 2], [0, 1]])
    # q0 right at rank 1, q1 and q2 at rank 2, q3 never
    assert recall_at_k(predictions, ground_truth, ks=(1, 2)) == pytest.approx({1: 25.0, 2: 75.0})


def test_first_correct_rank_marks_misses_with_k() -> None:
    np.testing.assert_array_equal(first_correct_rank(PREDICTIONS, GROUND_TRUTH), [1, 2, 3, 3, 0])


def test_recall_curve_hand_made() -> None:
    np.testing.assert_allclose(recall_curve(PREDICTIONS, GROUND_TRUTH, max_n=3), [20.0, 40.0, 60.0])
    np.testing.assert_allclose(recall_curve(PREDICTIONS, GROUND_TRUTH, max_n=2), [20.0, 40.0])
    np.testing.assert_allclose(recall_curve(PREDICTIONS, GROUND_TRUTH), [20.0, 40.0, 60.0])


def test_everything_correct_is_100_percent() -> None:
    predictions = np.array([[4, 0], [5, 1]])
    assert recall_at_k(predictions, [np.array([4]), np.array([5])], ks=(1, 2)) == {1: 100.0, 2: 100.0}


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="fewer than the largest K 5"):
        recall_at_k(PREDICTIONS, GROUND_TRUTH, ks=(1, 5))
    with pytest.raises(ValueError, match="ground truth has 4 entries but predictions has 5"):
        recall_at_k(PREDICTIONS, GROUND_TRUTH[:4], ks=(1,))
    with pytest.raises(ValueError, match="positive integers"):
        recall_at_k(PREDICTIONS, GROUND_TRUTH, ks=(0, 1))
    with pytest.raises(ValueError, match="max_n must be between 1 and the 3"):
        recall_curve(PREDICTIONS, GROUND_TRUTH, max_n=4)
