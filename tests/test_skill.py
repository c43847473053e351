"""Weighted, vectorised skill metrics agree with scikit-learn, and CIs resample groups."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from detectors.skill import (
    group_draws,
    skill,
    stratified_auc,
    weighted_average_precision,
    weighted_brier,
    weighted_roc_auc,
)


@pytest.mark.parametrize("ties", [False, True])
def test_metrics_match_scikit_learn_including_ties_and_weights(ties: bool) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = rng.random(300) + 0.3 * y
    if ties:
        p = np.round(p, 1)
    w = rng.integers(0, 3, 300).astype(float)
    assert weighted_roc_auc(y, p, w)[0] == pytest.approx(roc_auc_score(y, p, sample_weight=w))
    assert weighted_average_precision(y, p, w)[0] == pytest.approx(
        average_precision_score(y, p, sample_weight=w))
    assert weighted_brier(y, np.clip(p, 0, 1), w)[0] == pytest.approx(
        brier_score_loss(y, np.clip(p, 0, 1), sample_weight=w))


def test_group_bootstrap_draws_whole_groups() -> None:
    groups = np.repeat(np.array(["a", "b", "c", "d"]), 5)
    draws = group_draws(groups, 50, seed=1)
    assert draws.shape == (50, 20)
    for row in draws:  # every sample of a group has the same weight
        assert all(len(set(row[groups == g])) == 1 for g in "abcd")
    np.testing.assert_array_equal(draws.sum(axis=1), 20)


def test_grouped_intervals_are_wider_when_groups_share_errors() -> None:
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(10), 40)
    y = (rng.random(groups.size) < np.repeat(rng.uniform(0.1, 0.9, 10), 40)).astype(int)
    offset = np.repeat(rng.normal(0, 0.5, 10), 40)  # errors shared within a member
    p = 1 / (1 + np.exp(-(1.0 * (y - 0.5) + offset + rng.normal(0, 0.3, y.size))))
    grouped = skill(y, p, groups, n_boot=400)
    per_sample = skill(y, p, np.arange(y.size), n_boot=400)
    assert grouped.roc_auc_ci[0] <= grouped.roc_auc <= grouped.roc_auc_ci[1]
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(grouped.roc_auc_ci) > 1.5 * width(per_sample.roc_auc_ci)


def test_stratified_auc_compares_pairs_within_a_stratum_only() -> None:
    rng = np.random.default_rng(3)
    strata = rng.integers(0, 5, 400)
    y = rng.integers(0, 2, 400)
    # within every stratum the positives score higher; across strata the shift reverses it
    p = np.round(-2.0 * strata + 0.8 * y + rng.normal(0, 0.5, 400), 1)
    expected_num = expected_den = 0.0
    for k in range(5):
        m = strata == k
        n_pairs = y[m].sum() * (1 - y[m]).sum()
        expected_num += roc_auc_score(y[m], p[m]) * n_pairs
        expected_den += n_pairs
    w = rng.integers(0, 3, (2, 400)).astype(float)
    assert weighted_roc_auc(y, p, np.ones(400), strata)[0] == pytest.approx(
        expected_num / expected_den)
    assert stratified_auc(y, p, strata) == pytest.approx(expected_num / expected_den)
    assert weighted_roc_auc(y, p, w, np.zeros(400))[0] == pytest.approx(
        roc_auc_score(y, p, sample_weight=w[0]))
    assert weighted_roc_auc(y, p, np.ones(400), strata)[0] > 0.7
