"""LCE and BCE values against hand-computed examples, ragged groups included."""

from __future__ import annotations

import math

import pytest
import torch

from es_rerank.training.losses import bce_loss, group_loss, lce_loss, normaliser


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_lce_matches_hand_computed_values_with_a_ragged_last_group():
    # Query 1 has a full group of 3; query 2 (the last) has only one negative.
    scores = torch.tensor([[2.0, 1.0, 0.0], [1.0, -1.0, 123.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    expected = [-2.0 + math.log(math.exp(2) + math.exp(1) + math.exp(0)),
                -1.0 + math.log(math.exp(1) + math.exp(-1))]
    assert lce_loss(scores, mask).tolist() == pytest.approx(expected, abs=1e-6)


def test_lce_gives_no_gradient_to_missing_entries():
    scores = torch.tensor([[0.5, 0.2, 7.0]], requires_grad=True)
    lce_loss(scores, torch.tensor([[True, True, False]])).sum().backward()
    assert scores.grad[0, 2].item() == 0.0
    # d/ds_pos = softmax(pos) - 1 ; d/ds_neg = softmax(neg)
    p_pos = math.exp(0.5) / (math.exp(0.5) + math.exp(0.2))
    assert scores.grad[0, :2].tolist() == pytest.approx([p_pos - 1, 1 - p_pos], abs=1e-6)


def test_lce_of_a_batch_of_a_different_size_is_per_query():
    one = lce_loss(torch.tensor([[3.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool))
    three = lce_loss(torch.tensor([[3.0, 0.0]] * 3), torch.ones(3, 2, dtype=torch.bool))
    assert three.tolist() == pytest.approx(one.tolist() * 3)


def test_balanced_bce_weighs_the_positive_and_the_mean_negative_half_each():
    scores = torch.tensor([[1.0, 2.0, -1.0, 0.5], [0.0, 3.0, 9.9, 9.9]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    # bce(label 1, s) = softplus(-s); bce(label 0, s) = softplus(s)
    q1 = 0.5 * softplus(-1.0) + 0.5 * (softplus(2.0) + softplus(-1.0) + softplus(0.5)) / 3
    q2 = 0.5 * softplus(0.0) + 0.5 * softplus(3.0)
    assert bce_loss(scores, mask, balanced=True).tolist() == pytest.approx([q1, q2], abs=1e-6)


def test_unbalanced_bce_sums_pairs_and_normalises_by_pairs():
    scores = torch.tensor([[1.0, 2.0, -1.0], [0.0, 3.0, 5.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    q1 = softplus(-1.0) + softplus(2.0) + softplus(-1.0)
    q2 = softplus(0.0) + softplus(3.0)
    per_query = bce_loss(scores, mask, balanced=False)
    assert per_query.tolist() == pytest.approx([q1, q2], abs=1e-6)
    n_pairs = int(mask.sum())
    mean = per_query.sum().item() / normaliser("bce", False, n_queries=2, n_pairs=n_pairs)
    assert mean == pytest.approx((q1 + q2) / 5, abs=1e-6)


def test_group_loss_dispatches_and_rejects_unknown_losses():
    scores, mask = torch.tensor([[1.0, 0.0]]), torch.ones(1, 2, dtype=torch.bool)
    assert group_loss("lce", scores, mask).tolist() == lce_loss(scores, mask).tolist()
    assert group_loss("bce", scores, mask).tolist() == bce_loss(scores, mask).tolist()
    with pytest.raises(ValueError, match="'lce' or 'bce'"):
        group_loss("hinge", scores, mask)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="same shape"):
        lce_loss(torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one negative"):
        bce_loss(torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool))
