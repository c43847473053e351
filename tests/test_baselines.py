"""Early-warning indicators rise for a series approaching a tipping point."""

from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau

from detectors.baselines import _kendall_tau_vs_time, ews_trends, salinity_level


def _ar1(phi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros(phi.size)
    for t in range(1, phi.size):
        x[t] = phi[t] * x[t - 1] + rng.normal()
    return x


def test_kendall_tau_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    series = rng.normal(size=(20, 13))
    expected = [kendalltau(np.arange(13), row).statistic for row in series]
    np.testing.assert_allclose(_kendall_tau_vs_time(series), expected)


def test_slowing_down_gives_rising_variance_and_autocorrelation() -> None:
    rng = np.random.default_rng(1)
    slowing = np.stack([_ar1(np.linspace(0.1, 0.95, 240), rng) for _ in range(30)])
    steady = np.stack([_ar1(np.full(240, 0.1), rng) for _ in range(30)])
    var_s, ac_s = ews_trends(slowing)
    var_0, ac_0 = ews_trends(steady)
    assert var_s.mean() > 0.5 > abs(var_0.mean())
    assert ac_s.mean() > 0.3 > abs(ac_0.mean())


def test_salinity_level_is_recent_mean() -> None:
    x = np.tile(np.arange(24.0), (3, 1))
    np.testing.assert_allclose(salinity_level(x, months=12), np.arange(12, 24).mean())
