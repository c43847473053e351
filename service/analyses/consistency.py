"""The consistency analysis: a candidate tested against its reference, with its report."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from detectors.consistency.results import ConsistencyResult
from detectors.consistency.test import ConsistencySettings, consistency_test
from service.report import Section, Table, write_report


def run_consistency(reference: xr.Dataset, candidate: xr.Dataset, outdir: Path,
                    settings: ConsistencySettings) -> ConsistencyResult:
    """Test the candidate against its reference; write report.html (result.json is the
    caller's, see :mod:`service.result_files`)."""
    result = consistency_test(reference, candidate, settings)
    outdir.mkdir(parents=True, exist_ok=True)
    write_report(outdir, "esmwatch: ensemble consistency test", [
        Section("Verdict", paragraphs=[consistency_summary(result, settings)],
                notes=result.notes),
        Section("Principal components", tables=[Table(
            ["PC", "explained variance", "failing runs", "fails"],
            [(p.pc, p.explained_variance, ", ".join(p.failing_runs), p.fails)
             for p in result.pcs])]),
        Section("Power against effect size", tables=[Table(
            ["shifted", "shift (reference sd)", "detection rate", "CI"],
            [(p.pattern, p.shift_sd, p.detection_rate, f"[{p.ci[0]:.2f}, {p.ci[1]:.2f}]")
             for p in result.power])]),
        Section("Variables dropped (pyCECT filters)", tables=[Table(
            ["variable", "reason"], [(d.variable, d.reason) for d in result.dropped_variables])]),
    ])
    return result


def consistency_summary(result: ConsistencyResult, settings: ConsistencySettings) -> str:
    """The verdict with the rule that produced it, in one sentence."""
    cal = result.calibration
    return (f"{result.verdict.upper()}: {result.failing_pcs} of {result.n_pcs} PCs fail "
            f"(rule: a PC fails outside {result.sigma:g} sd in {settings.runs_failing} of "
            f"{settings.runs} runs; the case fails with {result.min_failing_pcs} failing "
            f"PCs). False-positive rate on {cal.n_triples} {cal.method} held-out reference "
            f"triples: {cal.false_positive_rate:.2%} [{cal.ci[0]:.2%}, {cal.ci[1]:.2%}] "
            f"(target {cal.target_fpr:.2%}).")
