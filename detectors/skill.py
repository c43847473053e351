"""Skill of probabilistic predictions, with bootstrap confidence intervals over groups.

Samples of one member are strongly correlated (overlapping windows), so intervals come from
resampling whole members (and configurations), never single windows, and never refit the
model: the bootstrap runs on the out-of-fold predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score


@dataclass(frozen=True)
class Skill:
    roc_auc: float
    roc_auc_ci: tuple[float, float]
    pr_auc: float
    pr_auc_ci: tuple[float, float]
    brier: float
    brier_ci: tuple[float, float]
    n: int
    n_positive: int


def _metrics(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    if y.min() == y.max():
        return np.nan, np.nan, float(brier_score_loss(y, p, labels=[0, 1]))
    return (
        float(roc_auc_score(y, p)),
        float(average_precision_score(y, p)),
        float(brier_score_loss(y, p)),
    )


def skill(
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray,
    *,
    n_boot: int = 500,
    seed: int = 0,
    level: float = 0.9,
) -> Skill:
    """ROC AUC, PR AUC and Brier score with percentile CIs from a grouped bootstrap."""
    point = _metrics(y, p)
    draws = np.array(
        [_metrics(y[i], p[i]) for i in grouped_bootstrap_indices(groups, n_boot, seed)]
    )
    alpha = (1 - level) / 2
    with np.errstate(all="ignore"):
        lo = np.nanquantile(draws, alpha, axis=0)
        hi = np.nanquantile(draws, 1 - alpha, axis=0)
    return Skill(
        roc_auc=point[0],
        roc_auc_ci=(float(lo[0]), float(hi[0])),
        pr_auc=point[1],
        pr_auc_ci=(float(lo[1]), float(hi[1])),
        brier=point[2],
        brier_ci=(float(lo[2]), float(hi[2])),
        n=int(y.size),
        n_positive=int(y.sum()),
    )


def grouped_bootstrap_indices(groups: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """Sample indices for ``n_boot`` resamples of whole groups (used for importance CIs)."""
    rng = np.random.default_rng(seed)
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(unique.size)]
    return [
        np.concatenate([members[g] for g in rng.integers(0, unique.size, unique.size)])
        for _ in range(n_boot)
    ]
