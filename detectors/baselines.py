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
from scipy.stats import kendalltau

SALINITY_FEATURES = ("so_upper_labsea", "so_upper_labsea_interior", "sos_labsea")


def salinity_level(salinity: np.ndarray, months: int = 12) -> np.ndarray:
    """Mean standardised salinity anomaly over the last ``months`` of each window."""
    return np.nanmean(salinity[:, -months:], axis=1)


def _detrend(x: np.ndarray) -> np.ndarray:
    t = np.arange(x.size, dtype=float)
    ok = np.isfinite(x)
    if ok.sum() < 3:
        return np.full_like(x, np.nan)
    slope, intercept = np.polyfit(t[ok], x[ok], 1)
    return x - (slope * t + intercept)


def _rolling(x: np.ndarray, width: int, statistic) -> np.ndarray:
    return np.array([statistic(x[i : i + width]) for i in range(x.size - width + 1)])


def _ac1(x: np.ndarray) -> float:
    a, b = x[:-1], x[1:]
    if np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def ews_trends(salinity: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kendall tau of rolling variance and of rolling lag-1 autocorrelation, per window.

    Follows the usual early-warning recipe (Dakos et al. 2012; ewstools): detrend, roll a
    window of half the series, compute the indicator, measure its monotonic trend.
    """
    width = width or max(4, salinity.shape[1] // 2)
    var_tau, ac_tau = [], []
    for row in salinity:
        x = _detrend(np.asarray(row, dtype=float))
        if not np.isfinite(x).all():
            var_tau.append(0.0)
            ac_tau.append(0.0)
            continue
        time = np.arange(x.size - width + 1)
        for out, stat in ((var_tau, np.var), (ac_tau, _ac1)):
            tau = kendalltau(time, _rolling(x, width, stat)).statistic
            out.append(0.0 if np.isnan(tau) else float(tau))
    return np.array(var_tau), np.array(ac_tau)
