"""The precursor analysis as the CLI and the job runner both run it: labels once, the
analysis, the calibrated risk model beside it, then report.html and its figures.

``result.json`` is not written here: the caller writes the result contract once (the CLI as
it is, a job with its provenance stamped in), see :mod:`service.result_files`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from detectors.budget.results import Anomaly
from detectors.labels import Labels, label_freezes
from detectors.precursors.analysis import analyse_precursors
from detectors.precursors.results import PrecursorResult, RiskModelSummary
from detectors.precursors.settings import PrecursorSettings
from detectors.risk import RiskSettings, before_onset, train_risk
from ensembles.errors import ConfigurationError
from service.analyses import precursor_figures as figs
from service.analyses.inputs import Progress
from service.report import Section, Table, format_ci, write_report

log = logging.getLogger(__name__)


def run_precursors(features: xr.Dataset, outdir: Path, settings: PrecursorSettings,
                   problems: Sequence[str] = (), progress: Progress | None = None
                   ) -> PrecursorResult:
    """Analyse, train the risk model, write report.html and figures into ``outdir``."""
    step = progress or (lambda fraction, message: None)
    outdir.mkdir(parents=True, exist_ok=True)
    labels = label_freezes(features, settings.label)
    result = analyse_precursors(features, settings, labels=labels,
                                progress=lambda f, m: step(0.1 + 0.8 * f, m))
    result.notes.extend(f"input: {p}" for p in problems)
    step(0.9, "training the risk model")
    risk = _risk(features, labels, settings, result, outdir)
    step(0.95, "writing report")
    write_precursor_report(result, features, outdir, risk)
    return result


def _risk(features: xr.Dataset, labels: Labels, settings: PrecursorSettings,
          result: PrecursorResult, outdir: Path) -> dict[str, np.ndarray] | None:
    """Train and save the calibrated risk model; fill each member's maximum risk."""
    try:
        model = train_risk(features, labels, RiskSettings(seed=settings.seed))
    except ConfigurationError as err:
        result.notes.append(f"risk model not trained: {err}")
        return None
    model.save(outdir / "risk_model", result.ensembles)
    risk = before_onset(model.score(features),
                        {m.member: m.first_freeze for m in result.members if m.first_freeze})
    peak = risk.max("time", skipna=True)
    for row in result.members:
        row.max_risk = float(peak.sel(member=row.member))
    rel = model.reliability
    result.risk_model = RiskModelSummary(
        horizon_months=model.settings.horizon_months,
        **rel.model_dump(exclude={"bin_mean_predicted", "bin_observed", "bin_count"}))
    result.notes.append("max_risk (before onset) of members outside risk_model.test_members "
                        "is in-sample")
    return {str(m): risk.sel(member=m).values for m in risk.member.values}


def top_findings(result: PrecursorResult, n: int = 3) -> list[str]:
    """One line per top driver process: what a developer should look at first."""
    lines = []
    for p in result.top_drivers(n):
        verdict = "significant" if p.significant else "not significant"
        drop = f", drop-AUC {p.drop_auc:+.2f}" if p.drop_auc is not None else ""
        lines.append(f"{p.process}: importance {p.importance:.2f} "
                     f"[{p.ci[0]:.2f}, {p.ci[1]:.2f}] ({verdict}{drop}, direction {p.direction}, "
                     f"peak {p.peak_lag_months} months before onset)")
    return lines


def _attribution_lines(result: PrecursorResult) -> list[str]:
    """The answer first: where the excess fresh water came from, and how sure we are."""
    a = result.attribution
    if a is None:
        return []
    return [a.summary, f"Verdict: {a.verdict} ({a.reason})."]


def _budget_lines(result: PrecursorResult) -> list[str]:
    b = result.budget
    if b is None:
        return []
    closure = "" if b.closure is None else f"; residual rms / tendency rms {b.closure:.2f}"
    return [f"Upper {b.layer_m[0]:g}-{b.layer_m[1]:g} m of the Lab Sea, freshwater content "
            f"relative to {b.reference_salinity:g} g/kg, area {b.area_m2:.3g} m2 "
            f"({b.area_source}); {b.n_frozen} frozen members against same-configuration "
            f"members not frozen in the {b.years_before_onset} years before their onset"
            f"{closure}. Land-side runoff explains the ocean-side terms and is not added to "
            "them.", *b.unmeasured, *b.notes]


def _budget_table(result: PrecursorResult) -> Table:
    def fmt(a: Anomaly | None) -> tuple[str, str]:
        if a is None or a.anomaly_msv is None:
            return "", ""
        ci = f"[{a.anomaly_ci[0]:+.2f}, {a.anomaly_ci[1]:+.2f}]" if a.anomaly_ci else ""
        return f"{a.anomaly_msv:+.2f}", ci

    rows = []
    b = result.budget
    if b is not None:
        for name, a in (("tendency", b.tendency), ("sum of terms", b.sum_of_terms),
                        ("residual", b.residual)):
            rows.append((name, "", *fmt(a), ""))
        for t in b.terms:
            upstream = ", ".join(f"{e.feature} (lag {e.lag_months} mo, r {e.correlation:.2f})"
                                 for e in t.explained_by if e.correlation is not None)
            rows.append((t.source, "" if t.mean_msv is None else f"{t.mean_msv:.1f}",
                         *fmt(t.anomaly), upstream or (f"lacks {t.lacks}" if t.lacks else "")))
    return Table(["term", "mean (mSv)", "anomaly (mSv)", "90% CI", "explained by / lacks"],
                 rows)


def _risk_lines(result: PrecursorResult) -> list[str]:
    rel = result.risk_model
    if rel is None:
        return []
    lines = [f"Risk model (onset within {rel.horizon_months} months): expected calibration "
             f"error {rel.expected_calibration_error:.3f}, Brier {rel.brier_calibrated:.3f} "
             f"(uncalibrated {rel.brier_raw:.3f}) on held-out members of {rel.n_splits} "
             f"member split(s), {', '.join(rel.test_members)}."]
    if rel.brier_skill_score is not None and rel.brier_climatology is not None:
        ci = rel.brier_skill_score_ci
        shown = f" (90% CI [{ci[0]:+.3f}, {ci[1]:+.3f}])" if ci else ""
        verdict = "beats" if rel.beats_climatology else "does NOT beat"
        lines.append(
            f"The calibrated risk {verdict} climatology: Brier skill score "
            f"{rel.brier_skill_score:+.3f}{shown} against the constant base rate (Brier "
            f"{rel.brier_climatology:.3f})." + ("" if rel.beats_climatology else
                                                 " Read risk values as no better than the "
                                                 "base rate."))
    if rel.training_base_rate is not None:
        lines.append(f"Risks are calibrated to the training base rate "
                     f"({rel.training_base_rate:.1%} of months precede an onset within the "
                     "horizon); a freeze-enriched database's base rate is higher than a new "
                     f"run's. {rel.n_censored_months} months had no target (censored).")
    return lines


def write_precursor_report(result: PrecursorResult, features: xr.Dataset, outdir: Path,
                           risk: dict[str, np.ndarray] | None = None) -> Path:
    skill_rows = [(r.view, r.lead_months, r.model, r.roc_auc,
                   format_ci(r.roc_auc_ci, ".2f"),
                   f"[{r.chance_band[0]:.2f}, {r.chance_band[1]:.2f}]" if r.chance_band else "",
                   r.pr_auc, r.brier, r.n_samples, r.n_positive) for r in result.skill]
    process_rows = [(p.view, p.process, p.role, p.importance, format_ci(p.ci, ".2f"),
                     "" if p.p_value is None else p.p_value,
                     "" if p.drop_auc is None else p.drop_auc, "yes" if p.significant else "no",
                     p.direction, p.peak_lag_months) for p in result.processes]
    sections = [
        Section("Summary", paragraphs=[
            *_attribution_lines(result),
            f"{result.n_members} members ({result.n_frozen} froze) of "
            f"{', '.join(result.ensembles) or 'unnamed ensembles'}; configurations: "
            f"{', '.join(result.configurations)}. Freeze rule: {result.label}.",
            "The drivers view answers 'excess freshwater, but from where?': it sees driver "
            "features only. The full view also sees the Lab Sea's own state (symptoms), which "
            "is early warning rather than attribution.",
            *top_findings(result), *_risk_lines(result)], notes=result.notes),
        Section("Skill by lead time", tables=[Table(
            ["view", "lead", "model", "ROC AUC", "90% CI", "chance band", "PR AUC", "Brier",
             "n", "n+"],
            skill_rows)], figures=[figs.skill_by_lead(result, outdir)]),
        Section("Which processes", tables=[Table(
            ["view", "process", "role", "importance", "90% CI", "permutation p", "drop AUC",
             "significant", "direction", "peak lag"], process_rows)],
            figures=[figs.process_importance(result, outdir), figs.lag_profiles(result, outdir),
                     figs.top_features(result, outdir)]),
        Section("Freshwater budget before onset", paragraphs=_budget_lines(result),
                tables=[_budget_table(result)],
                figures=[figs.freshwater_budget(result, outdir)]),
        Section("Members", figures=[figs.member_timelines(features, result, outdir, risk)],
                tables=[Table(["member", "ensemble", "froze", "first freeze", "max risk"],
                              [(m.member, m.ensemble, m.froze, m.first_freeze or "",
                                "" if m.max_risk is None else m.max_risk)
                               for m in result.members])]),
        Section("Explainer checks", tables=[Table(
            ["view", "lead", "model", "explainer", "additivity error", "kernel rank corr."],
            [(c.view, c.lead_months, c.model, c.explainer, c.additivity_error,
              "" if c.kernel_rank_correlation is None else c.kernel_rank_correlation)
             for c in result.explainer_checks])]),
    ]
    return write_report(outdir, "esmwatch: precursors of the Labrador Sea freeze", sections)
