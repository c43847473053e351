"""Analyses as the CLI and the job runner both run them: features -> science -> report.

Each function reads its inputs through the ensembles layer, calls the detectors, and
writes ``result.json``, ``report.html`` and PNG figures into an output directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from detectors.consistency import ConsistencyResult, ConsistencySettings, consistency_test
from detectors.labels import label_freezes
from detectors.precursors import PrecursorSettings, analyse_precursors
from detectors.results import PrecursorResult
from detectors.risk import RiskSettings, before_onset, train_risk
from ensembles.errors import ConfigurationError, InputFileError
from ensembles.features import FeatureSet, build_features
from service import precursor_figures as figs
from service.report import Section, Table, write_atomically, write_report

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]


def load_features(roots: Sequence[str | Path], cache_dir: Path | None,
                  progress: Progress | None = None, scheduler: str | None = None) -> FeatureSet:
    """Feature table of the roots; an archive with no usable member is an input error."""
    if progress:
        progress(0.02, f"reading {len(roots)} root(s)")
    built = build_features(roots, cache_dir=cache_dir, scheduler=scheduler)
    if not built.dataset.sizes.get("member"):
        shown = "; ".join(str(p) for p in built.problems[:5]) or "no CESM files found"
        raise InputFileError(roots[0], f"no member has usable monthly files ({shown})")
    return built


def run_precursors(features: xr.Dataset, outdir: Path, settings: PrecursorSettings,
                   problems: Sequence[str] = (), progress: Progress | None = None
                   ) -> PrecursorResult:
    """Analyse, then write result.json, report.html and figures into ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    leads = settings.samples.leads_months

    def step(message: str) -> None:
        if progress and message.startswith("lead "):
            done = leads.index(int(message.split()[1])) / len(leads)
            progress(0.1 + 0.8 * done, message)

    result = analyse_precursors(features, settings, progress=step)
    result.notes.extend(f"input: {p}" for p in problems)
    if progress:
        progress(0.9, "training the risk model")
    risk = _risk(features, settings, result, outdir)
    if progress:
        progress(0.95, "writing report")
    write_atomically(outdir / "result.json", result.model_dump_json(by_alias=True, indent=2))
    write_precursor_report(result, features, outdir, risk)
    return result


def _risk(features: xr.Dataset, settings: PrecursorSettings, result: PrecursorResult,
          outdir: Path) -> dict[str, np.ndarray] | None:
    """Train and save the calibrated risk model; fill each member's maximum risk."""
    try:
        model = train_risk(features, label_freezes(features, settings.label),
                           RiskSettings(seed=settings.seed))
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
    result.notes.append(
        f"risk model (onset within {model.settings.horizon_months} months): expected "
        f"calibration error {rel.expected_calibration_error:.3f}, Brier {rel.brier_calibrated:.3f}"
        f" on held-out members {', '.join(rel.test_members)}; max_risk (before onset) of other "
        "members is in-sample")
    return {str(m): risk.sel(member=m).values for m in risk.member.values}


def top_findings(result: PrecursorResult, n: int = 3) -> list[str]:
    """One line per top driver process: what a developer should look at first."""
    drivers = [p for p in result.processes if p.view == "drivers"]
    lines = []
    for p in drivers[:n]:
        verdict = "significant" if p.significant else "not significant"
        drop = f", drop-AUC {p.drop_auc:+.2f}" if p.drop_auc is not None else ""
        lines.append(f"{p.process}: importance {p.importance:.2f} "
                     f"[{p.ci[0]:.2f}, {p.ci[1]:.2f}] ({verdict}{drop}, direction {p.direction}, "
                     f"peak {p.peak_lag_months} months before onset)")
    return lines


def write_precursor_report(result: PrecursorResult, features: xr.Dataset, outdir: Path,
                           risk: dict[str, np.ndarray] | None = None) -> Path:
    skill_rows = [(r.view, r.lead_months, r.model, r.roc_auc,
                   f"[{r.roc_auc_ci[0]:.2f}, {r.roc_auc_ci[1]:.2f}]" if r.roc_auc_ci else "",
                   r.pr_auc, r.brier, r.n_samples, r.n_positive) for r in result.skill]
    process_rows = [(p.view, p.process, p.role, p.importance, f"[{p.ci[0]:.2f}, {p.ci[1]:.2f}]",
                     "" if p.drop_auc is None else p.drop_auc, "yes" if p.significant else "no",
                     p.direction, p.peak_lag_months) for p in result.processes]
    sections = [
        Section("Summary", paragraphs=[
            f"{result.n_members} members ({result.n_frozen} froze) of "
            f"{', '.join(result.ensembles) or 'unnamed ensembles'}; configurations: "
            f"{', '.join(result.configurations)}. Freeze rule: {result.label}.",
            "The drivers view answers 'excess freshwater, but from where?': it sees driver "
            "features only. The full view also sees the Lab Sea's own state (symptoms), which "
            "is early warning rather than attribution.",
            *top_findings(result)], notes=result.notes),
        Section("Skill by lead time", tables=[Table(
            ["view", "lead", "model", "ROC AUC", "90% CI", "PR AUC", "Brier", "n", "n+"],
            skill_rows)], figures=[figs.skill_by_lead(result, outdir)]),
        Section("Which processes", tables=[Table(
            ["view", "process", "role", "importance", "90% CI", "drop AUC", "significant",
             "direction", "peak lag"], process_rows)],
            figures=[figs.process_importance(result, outdir), figs.lag_profiles(result, outdir),
                     figs.top_features(result, outdir)]),
        Section("Freshwater budget before onset", figures=[figs.freshwater_budget(result, outdir)]),
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


def run_consistency(reference: xr.Dataset, candidate: xr.Dataset, outdir: Path,
                    settings: ConsistencySettings) -> ConsistencyResult:
    """Test the candidate against its reference; write result.json and report.html."""
    result = consistency_test(reference, candidate, settings)
    outdir.mkdir(parents=True, exist_ok=True)
    write_atomically(outdir / "result.json", result.model_dump_json(by_alias=True, indent=2))
    write_report(outdir, "esmwatch: ensemble consistency test", [
        Section("Verdict", paragraphs=[consistency_summary(result, settings)],
                notes=result.notes),
        Section("Principal components", tables=[Table(
            ["PC", "explained variance", "failing runs", "fails"],
            [(p.pc, p.explained_variance, ", ".join(p.failing_runs), p.fails)
             for p in result.pcs])]),
    ])
    return result


def consistency_summary(result: ConsistencyResult, settings: ConsistencySettings) -> str:
    """The verdict with the rule that produced it, in one sentence."""
    return (f"{result.verdict.upper()}: {result.failing_pcs} of {result.n_pcs} PCs fail "
            f"(rule: a PC fails outside {settings.sigma} sd in {settings.runs_failing} of "
            f"{settings.runs} runs; the case fails with {settings.min_failing_pcs} failing "
            f"PCs). False-positive rate on held-out reference members: "
            f"{result.false_positive_rate:.1%}.")
