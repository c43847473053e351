"""Skill of probabilistic predictions, with bootstrap confidence intervals over groups.

Samples of one member are strongly correlated (overlapping windows), so intervals come from
resampling whole members (and configurations), never single windows, and never refit the
model: the bootstrap runs on the out-of-fold predictions.  A resample is a vector of sample
weights (how often each sample's group was drawn), so every metric is computed for all
resamples at once with weighted, tie-aware formulas (identical to scikit-learn's
``roc_auc_score``, ``average_precision_score`` and ``brier_score_loss`` at unit weights).

ROC AUC can be *stratified*: only positive-negative pairs in the same stratum are compared
(the pipeline's strata are cross-validation fold x window end).  Pooling out-of-fold scores
of different fold models, or windows from different model times, compares numbers that
were never meant to be compared: a fold whose training set had fewer positives scores its
test windows lower, and a signal shared by all members at the times of the training
positives scores the *test negatives* at those times higher; both push the pooled AUC of a
model without skill below 0.5.  Within a stratum neither can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


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


def group_counts(n_groups: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each group is drawn in each of ``n_boot`` resamples, (n_boot, n_groups)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_groups, (n_boot, n_groups))
    counts = np.zeros((n_boot, n_groups))
    np.add.at(counts, (np.arange(n_boot)[:, None], picks), 1.0)
    return counts


def group_draws(groups: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Sample weights (n_boot, n) of a bootstrap over whole groups."""
    unique, index = np.unique(groups, return_inverse=True)
    return group_counts(unique.size, n_boot, seed)[:, index]


def _by_score(y: np.ndarray, p: np.ndarray, w: np.ndarray, strata: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive and negative weight per distinct (stratum, score), ascending: (B, G) each,
    and the stratum of each of the G cells."""
    strata = np.zeros(p.size, dtype=int) if strata is None else np.unique(
        strata, return_inverse=True)[1]
    cells, index = np.unique(np.stack([strata, np.unique(p, return_inverse=True)[1]]), axis=1,
                             return_inverse=True)
    index = np.ravel(index)
    one_hot = np.zeros((p.size, cells.shape[1]))
    one_hot[np.arange(p.size), index] = 1.0
    return (w * (y == 1)) @ one_hot, (w * (y == 0)) @ one_hot, cells[0]


def weighted_roc_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray,
                     strata: np.ndarray | None = None) -> np.ndarray:
    """ROC AUC for each row of weights ``w`` (B, n); ties count one half.

    With ``strata`` only pairs within a stratum count (a matched, stratified AUC).
    """
    pos, neg, stratum = _by_score(y, p, np.atleast_2d(w), strata)
    starts = np.r_[0, np.flatnonzero(np.diff(stratum)) + 1]
    cumulative = np.cumsum(neg, axis=1)
    offset = np.repeat(np.c_[np.zeros((len(neg), 1)), cumulative[:, starts[1:] - 1]],
                       np.diff(np.r_[starts, stratum.size]), axis=1)
    below = cumulative - offset - neg
    pairs = (np.add.reduceat(pos, starts, axis=1) * np.add.reduceat(neg, starts, axis=1)).sum(
        axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / pairs


def stratified_auc(y: np.ndarray, p: np.ndarray, strata: np.ndarray) -> float:
    """Unweighted stratified ROC AUC by ranks (fast: for permutation refits).

    Equal to :func:`weighted_roc_auc` at unit weights: Mann-Whitney U summed over strata.
    """
    ok = np.isfinite(p)
    y, p, strata = y[ok], p[ok], np.unique(strata[ok], return_inverse=True)[1].ravel()
    within = rankdata(strata * (p.size + 1.0) + rankdata(p))  # ranks, strata kept apart
    counts = np.bincount(strata)
    within -= np.r_[0, np.cumsum(counts)[:-1]][strata]
    pos = np.bincount(strata, weights=y, minlength=counts.size)
    neg = counts - pos
    u = np.bincount(strata, weights=within * y, minlength=counts.size) - pos * (pos + 1) / 2
    pairs = (pos * neg).sum()
    return float(u.sum() / pairs) if pairs > 0 else float("nan")


def weighted_average_precision(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average precision (PR AUC, step-wise as scikit-learn) for each row of weights."""
    pos, neg, _ = _by_score(y, p, np.atleast_2d(w))
    tp = np.cumsum(pos[:, ::-1], axis=1)  # thresholds from the highest score down
    fp = np.cumsum(neg[:, ::-1], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall_step = pos[:, ::-1] / tp[:, -1:]
        return np.nansum(recall_step * precision, axis=1) / (recall_step.sum(axis=1) > 0)


def weighted_brier(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = np.atleast_2d(w)
    return (w * (p - y) ** 2).sum(axis=1) / w.sum(axis=1)


def interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap replicates."""
    alpha = (1 - level) / 2
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    return float(lo), float(hi)


def skill(y: np.ndarray, p: np.ndarray, groups: np.ndarray, *, n_boot: int = 500,
          seed: int = 0, level: float = 0.9, strata: np.ndarray | None = None) -> Skill:
    """ROC AUC (stratified when ``strata`` are given), PR AUC and Brier score with
    percentile CIs from a grouped bootstrap."""
    y = np.asarray(y, dtype=int)
    ones = np.ones((1, y.size))
    draws = group_draws(groups, n_boot, seed)
    both = y.min() != y.max()
    nan = np.full(n_boot, np.nan)
    auc = weighted_roc_auc(y, p, draws, strata) if both else nan
    ap = weighted_average_precision(y, p, draws) if both else nan
    brier = weighted_brier(y, p, draws)
    return Skill(
        roc_auc=float(weighted_roc_auc(y, p, ones, strata)[0]) if both else float("nan"),
        roc_auc_ci=interval(auc, level),
        pr_auc=float(weighted_average_precision(y, p, ones)[0]) if both else float("nan"),
        pr_auc_ci=interval(ap, level),
        brier=float(weighted_brier(y, p, ones)[0]),
        brier_ci=interval(brier, level),
        n=int(y.size),
        n_positive=int(y.sum()),
    )
