"""Comparing two ensembles (model versions, configurations, pertlim halves).

Did the new tag freeze less than the old one, and why? For two feature tables (A, B):

- **Freeze fraction** of each with a Clopper-Pearson interval, and Fisher's exact test of
  the 2x2 table frozen/not x A/B.
- **Time to onset** with censoring at the end of each member's run: Kaplan-Meier medians and
  the log-rank test (implemented here: two groups, one degree of freedom, so no survival
  library is needed).
- **Risk distributions** under the promoted model, when the caller supplies each member's
  risk (the service scores the members; this module reads no model): medians and a
  Mann-Whitney U test.
- **What shifted**: each feature's whole-run mean per member (members are independent;
  months within a member are not), Welch's t-test A vs B, Holm over all features. Budget
  terms are the freshwater-flux integrals (mSv); processes gather their features.

Verdict: ``different`` when the freeze outcome differs (the smaller of the Fisher and
log-rank p-values, Bonferroni x2, below ``alpha``) or any feature shifted after Holm;
otherwise ``no significant difference`` - which is not evidence of sameness with few
members, and the result says how many there were.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from detectors.contracts import CI, ResultContract, Strict
from detectors.labels import LabelRule, label_freezes
from detectors.parameters.drivers import FLUX_UNITS, holm
from detectors.parameters.outcomes import Outcomes, member_outcomes

log = logging.getLogger(__name__)
Side = Literal["a", "b"]


class CompareSettings(BaseModel):
    """Settings of the comparison; echoed into the result."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    alpha: float = Field(0.05, gt=0, lt=1)
    ci_level: float = Field(0.95, gt=0.5, lt=1)
    label: LabelRule = Field(default_factory=LabelRule)


def log_rank(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[float, float]:
    """Two-group log-rank test: ``(chi-square statistic, p-value)``; NaN without events."""
    time, event, group = (np.asarray(a) for a in (time, event, group))
    observed_minus_expected, variance = 0.0, 0.0
    for t in np.unique(time[event.astype(bool)]):
        at_risk = time >= t
        n, n1 = at_risk.sum(), (at_risk & group).sum()
        dying = (time == t) & event.astype(bool)
        d, d1 = dying.sum(), (dying & group).sum()
        observed_minus_expected += d1 - d * n1 / n
        if n > 1:
            variance += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    if variance <= 0:
        return float("nan"), float("nan")
    chi2 = observed_minus_expected**2 / variance
    return float(chi2), float(stats.chi2.sf(chi2, 1))


def km_median(time: np.ndarray, event: np.ndarray) -> float | None:
    """Kaplan-Meier median time to onset, None when fewer than half froze by the end."""
    survival = 1.0
    for t in np.unique(time[event.astype(bool)]):
        at_risk = (time >= t).sum()
        survival *= 1 - ((time == t) & event.astype(bool)).sum() / at_risk
        if survival <= 0.5:
            return float(t)
    return None


class FreezeSide(Strict):
    ensemble: str
    n_members: int
    n_frozen: int
    fraction: float
    ci: CI
    median_onset_years: float | None = Field(
        description="Kaplan-Meier median, years from the start of the run"
    )
    run_years: CI = Field(description="shortest and longest run")


class TestRow(Strict):
    test: str
    statistic: float | None
    p_value: float | None


class RiskSide(Strict):
    n_members: int
    median: float
    quartiles: CI


class RiskSection(Strict):
    model: str | None = Field(description="the model that scored the members")
    a: RiskSide
    b: RiskSide
    test: TestRow


class FeatureShift(Strict):
    feature: str
    process: str | None
    role: str | None
    units: str
    budget_term: bool
    mean_a: float
    mean_b: float
    difference: float = Field(description="B - A, whole-run means per member")
    ci: CI
    p_value: float
    p_holm: float
    shifted: bool


class ProcessShift(Strict):
    process: str
    shifted: bool
    features: list[str]
    largest: str = Field(description="feature with the smallest p-value")


class CompareResult(ResultContract):
    job: Literal["compare"] = "compare"
    a: FreezeSide
    b: FreezeSide
    fisher: TestRow
    log_rank: TestRow
    risk: RiskSection | None
    features: list[FeatureShift] = Field(description="sorted by p-value")
    budget_terms: list[str] = Field(description="budget terms (mSv) that shifted")
    processes: list[ProcessShift]
    verdict: Literal["different", "no significant difference"]
    reason: str
    label: dict
    settings: dict
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        return (
            f"compare: {self.verdict}; freeze {self.a.n_frozen}/{self.a.n_members} vs "
            f"{self.b.n_frozen}/{self.b.n_members}"
        )


def _side(name: str, outcomes: Outcomes, level: float) -> FreezeSide:
    n, k = len(outcomes.members), int(outcomes.froze.sum())
    ci = stats.binomtest(k, n).proportion_ci(level, method="exact")
    return FreezeSide(
        ensemble=name,
        n_members=n,
        n_frozen=k,
        fraction=k / n,
        ci=(float(ci.low), float(ci.high)),
        median_onset_years=km_median(outcomes.time_years, outcomes.froze),
        run_years=(float(outcomes.run_years.min()), float(outcomes.run_years.max())),
    )


def _risk(risk: dict[Side, np.ndarray], model: str | None) -> RiskSection:
    def side(values: np.ndarray) -> RiskSide:
        q1, q3 = np.percentile(values, [25, 75])
        return RiskSide(
            n_members=len(values), median=float(np.median(values)), quartiles=(float(q1), float(q3))
        )

    u = stats.mannwhitneyu(risk["a"], risk["b"])
    return RiskSection(
        model=model,
        a=side(risk["a"]),
        b=side(risk["b"]),
        test=TestRow(test="Mann-Whitney U", statistic=float(u.statistic), p_value=float(u.pvalue)),
    )


def _member_means(features: xr.Dataset, name: str) -> np.ndarray:
    values = features[name].transpose("member", "time").values
    with np.errstate(all="ignore"):
        return np.nanmean(values, axis=1)


def _shifts(a: xr.Dataset, b: xr.Dataset, settings: CompareSettings) -> list[FeatureShift]:
    names = sorted(
        n
        for n in set(a.data_vars) & set(b.data_vars)
        if a[n].attrs.get("role") or a[n].attrs.get("units") == FLUX_UNITS
    )
    rows = []
    for name in names:
        xa, xb = _member_means(a, name), _member_means(b, name)
        xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
        if min(len(xa), len(xb)) < 2 or (np.ptp(xa) == 0 and np.ptp(xb) == 0):
            continue
        test = stats.ttest_ind(xb, xa, equal_var=False)
        ci = test.confidence_interval(settings.ci_level)
        attrs = a[name].attrs
        rows.append(
            dict(
                feature=name,
                process=attrs.get("process"),
                role=attrs.get("role"),
                units=str(attrs.get("units", "")),
                budget_term=attrs.get("units") == FLUX_UNITS,
                mean_a=float(xa.mean()),
                mean_b=float(xb.mean()),
                difference=float(xb.mean() - xa.mean()),
                ci=(float(ci.low), float(ci.high)),
                p_value=float(test.pvalue),
            )
        )
    adjusted = holm(np.array([r["p_value"] for r in rows])) if rows else []
    out = [
        FeatureShift(**r, p_holm=float(p), shifted=bool(p < settings.alpha))
        for r, p in zip(rows, adjusted, strict=True)
    ]
    return sorted(out, key=lambda r: r.p_value)


def compare_ensembles(
    a: xr.Dataset,
    b: xr.Dataset,
    names: tuple[str, str] = ("A", "B"),
    settings: CompareSettings | None = None,
    risk: dict[Side, np.ndarray] | None = None,
    risk_model: str | None = None,
) -> CompareResult:
    """Freeze outcome, risk and feature shifts of ensemble B against ensemble A."""
    settings = settings or CompareSettings()
    outcomes = {
        side: member_outcomes(d, label_freezes(d, settings.label))
        for side, d in (("a", a), ("b", b))
    }
    oa, ob = outcomes["a"], outcomes["b"]
    table = [
        [int(ob.froze.sum()), int((~ob.froze).sum())],
        [int(oa.froze.sum()), int((~oa.froze).sum())],
    ]
    odds, fisher_p = stats.fisher_exact(table)
    group = np.r_[np.zeros(len(oa.members), bool), np.ones(len(ob.members), bool)]
    chi2, lr_p = log_rank(np.r_[oa.time_years, ob.time_years], np.r_[oa.froze, ob.froze], group)
    shifts = _shifts(a, b, settings)
    processes: dict[str, list[FeatureShift]] = {}
    for row in shifts:
        processes.setdefault(row.process or "unknown", []).append(row)
    process_rows = [
        ProcessShift(
            process=p,
            shifted=any(r.shifted for r in rows),
            features=[r.feature for r in rows],
            largest=rows[0].feature,
        )
        for p, rows in processes.items()
    ]
    process_rows.sort(key=lambda r: (not r.shifted, r.process))
    outcome_p = min(fisher_p, lr_p if np.isfinite(lr_p) else 1.0)
    outcome_differs = min(1.0, 2 * outcome_p) < settings.alpha
    shifted = [r.feature for r in shifts if r.shifted]
    if outcome_differs or shifted:
        verdict = "different"
        reason = "; ".join(
            filter(
                None,
                [
                    f"freeze outcome differs (min of Fisher and log-rank p = {outcome_p:.3g}, "
                    "Bonferroni x2)"
                    if outcome_differs
                    else "",
                    f"{len(shifted)} feature(s) shifted (Holm): {', '.join(shifted[:6])}"
                    if shifted
                    else "",
                ],
            )
        )
    else:
        verdict = "no significant difference"
        reason = (
            f"freeze outcome p = {outcome_p:.3g} and no feature shifted after Holm, with "
            f"{len(oa.members)} and {len(ob.members)} members"
        )
    return CompareResult(
        a=_side(names[0], oa, settings.ci_level),
        b=_side(names[1], ob, settings.ci_level),
        fisher=TestRow(
            test="Fisher exact (odds ratio B vs A)",
            statistic=float(odds) if np.isfinite(odds) else None,
            p_value=float(fisher_p),
        ),
        log_rank=TestRow(
            test="log-rank",
            statistic=chi2 if np.isfinite(chi2) else None,
            p_value=lr_p if np.isfinite(lr_p) else None,
        ),
        risk=_risk(risk, risk_model) if risk else None,
        features=shifts,
        budget_terms=[r.feature for r in shifts if r.shifted and r.budget_term],
        processes=process_rows,
        verdict=verdict,
        reason=reason,
        label=settings.label.model_dump(),
        settings=settings.model_dump(mode="json"),
    )
