"""Which drivers a parameter moves: members' pre-onset budget terms regressed on the parameters.

A parameter that makes runs freeze should do so through the freshwater budget: lower snow
albedo -> more Greenland runoff -> freeze. For every budget term (the freshwater-flux
integrals in mSv that :func:`detectors.budget.freshwater_budget` uses) each member's mean over
the ``years`` before its onset (censored members: before the end of their run) is regressed on
all parameters at once (least squares on the unit box, so a slope is the change over the full
range, in mSv). Slopes are tested with a t-test, Holm-adjusted over every term x parameter.
Only the parameters found significant are tested (Holm over those slopes).
The term's link to the freeze is the budget's own frozen-minus-other difference; a chain is
*consistent* when the parameter's direction of risk moves the term the way frozen members
differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy import stats

from detectors.parameters.outcomes import MONTHS, Outcomes

FLUX_UNITS = "mSv"


def pre_onset_terms(
    features: xr.Dataset, outcomes: Outcomes, years: int
) -> tuple[list[str], np.ndarray]:
    """``(terms, values (members, terms))``: each member's mean flux before onset/censoring."""
    names = sorted(n for n, v in features.data_vars.items() if v.attrs.get("units") == FLUX_UNITS)
    end = np.round(outcomes.time_years * MONTHS).astype(int)
    values = np.full((len(outcomes.members), len(names)), np.nan)
    span = MONTHS * years
    for k, name in enumerate(names):
        series = features[name].transpose("member", "time").values
        for i in range(len(outcomes.members)):
            window = series[i, max(0, end[i] - span) : end[i]]
            if np.isfinite(window).any():
                values[i, k] = np.nanmean(window)
    return names, values


@dataclass(frozen=True)
class TermSlope:
    term: str
    parameter: int
    slope: float  # mSv over the parameter's full range
    p_value: float
    p_holm: float


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error over ``p``)."""
    order = np.argsort(p)
    m = len(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def regress_terms(
    x: np.ndarray, terms: list[str], values: np.ndarray, tested: list[int]
) -> list[TermSlope]:
    """OLS of every term on all parameters; slopes of ``tested`` parameters reported, Holm
    over them (the other parameters stay in the regression as covariates)."""
    n, p = x.shape
    design = np.column_stack([np.ones(n), x])
    rows = []
    for k, term in enumerate(terms):
        y = values[:, k]
        ok = np.isfinite(y)
        df = int(ok.sum()) - p - 1
        if df < 2 or np.ptp(y[ok]) == 0:
            continue
        beta, *_ = np.linalg.lstsq(design[ok], y[ok], rcond=None)
        resid = y[ok] - design[ok] @ beta
        sigma2 = float(resid @ resid) / df
        cov = sigma2 * np.linalg.pinv(design[ok].T @ design[ok])
        se = np.sqrt(np.diag(cov))[1:]
        t = beta[1:] / np.where(se > 0, se, np.inf)
        pv = 2 * stats.t.sf(np.abs(t), df)
        rows.extend(
            TermSlope(term, j, float(beta[1 + j]), float(pv[j]), float("nan")) for j in tested
        )
    if rows:
        adjusted = holm(np.array([r.p_value for r in rows]))
        rows = [
            TermSlope(r.term, r.parameter, r.slope, r.p_value, float(a))
            for r, a in zip(rows, adjusted, strict=True)
        ]
    return rows
