"""Baseline indicators a precursor model has to beat.

Each turns a window into one number: the current Lab Sea upper-ocean salinity (a fresh cap
is the obvious symptom), the model time (drift alone), and classic early-warning signals
of critical slowing down — the Kendall tau trend of rolling variance and of lag-1
autocorrelation on the detrended salinity anomalies.  The pipeline maps each number to a
probability with a one-feature logistic regression fitted on training folds, so Brier
scores compare like with like.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SALINITY_FEATURES = ("so_upper_labsea", "so_upper_labsea_interior", "sos_labsea")


def salinity_level(salinity: np.ndarray, months: int = 12) -> np.ndarray:
    """Mean standardised salinity anomaly over the last ``months`` of each window."""
    return np.nanmean(salinity[:, -months:], axis=1)


def _detrend(x: np.ndarray) -> np.ndarray:
    """Remove each row's least-squares line (rows with missing values become NaN)."""
    t = np.arange(x.shape[1], dtype=float)
    t = t - t.mean()
    centred = x - x.mean(axis=1, keepdims=True)
    slope = (centred * t).sum(axis=1, keepdims=True) / (t**2).sum()
    return centred - slope * t


def _kendall_tau_vs_time(series: np.ndarray) -> np.ndarray:
    """Kendall's tau of each row against its index (tau-a; equal to tau-b without ties)."""
    k = series.shape[1]
    i, j = np.triu_indices(k, 1)
    return np.sign(series[:, j] - series[:, i]).sum(axis=1) / (k * (k - 1) / 2)


def ews_trends(salinity: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kendall tau of rolling variance and of rolling lag-1 autocorrelation, per window.

    Follows the usual early-warning recipe (Dakos et al. 2012; ewstools): detrend, roll a
    window of half the series, compute the indicator, measure its monotonic trend.  All
    windows are computed at once; rows with missing values score 0 (no trend).
    """
    x = _detrend(np.asarray(salinity, dtype=float))
    width = width or max(4, x.shape[1] // 2)
    rolling = sliding_window_view(x, width, axis=1)  # (n, steps, width)
    variance = rolling.var(axis=2)
    a = rolling[..., :-1] - rolling[..., :-1].mean(axis=2, keepdims=True)
    b = rolling[..., 1:] - rolling[..., 1:].mean(axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ac1 = (a * b).sum(axis=2) / np.sqrt((a**2).sum(axis=2) * (b**2).sum(axis=2))
    ac1 = np.nan_to_num(ac1)
    var_tau = np.nan_to_num(_kendall_tau_vs_time(variance))
    ac_tau = np.nan_to_num(_kendall_tau_vs_time(ac1))
    return var_tau, ac_tau
