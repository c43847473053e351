"""Comparing two ensembles as the CLI, the job runner and the nightly scan run it.

``run_compare(params, outdir)`` reads both ensembles through the one feature path, scores
their members with the promoted risk model when one is given (each member's highest risk
before its onset: the risk distribution "under the promoted model"), runs
:func:`detectors.compare.compare_ensembles` and writes ``report.html``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from detectors.compare import CompareResult, CompareSettings, compare_ensembles
from detectors.labels import label_freezes
from ensembles.errors import ConfigurationError
from service.analyses.inputs import Progress, load_features
from service.report import Section, Table, format_ci, write_report

if TYPE_CHECKING:
    from detectors.risk import RiskModel

log = logging.getLogger(__name__)


class CompareParams(BaseModel):
    """Two ensembles to compare (JSON-serialisable, validated at the boundary)."""

    model_config = ConfigDict(extra="forbid")
    a: list[Path] = Field(min_length=1, description="roots of ensemble A (e.g. the reference)")
    b: list[Path] = Field(min_length=1, description="roots of ensemble B (e.g. the candidate)")
    names: tuple[str, str] = Field(("A", "B"), description="labels of A and B in the result")
    settings: CompareSettings = Field(default_factory=CompareSettings)


def member_max_risk(
    model: RiskModel, features: xr.Dataset, settings: CompareSettings
) -> np.ndarray:
    """Each member's highest calibrated risk before its onset (NaN when never scored)."""
    from detectors.risk import before_onset

    labels = label_freezes(features, settings.label)
    onsets = {
        str(m): str(o)
        for m, o in zip(labels.onset.member.values, labels.onset.values, strict=True)
        if o
    }
    risk = before_onset(model.score(features), onsets)
    return np.asarray(risk.max("time", skipna=True).values, dtype=float)


def compare_features(
    a: xr.Dataset,
    b: xr.Dataset,
    names: tuple[str, str],
    settings: CompareSettings,
    model: tuple[str, RiskModel] | None = None,
) -> CompareResult:
    """The comparison of two feature tables, with risk when a model is given."""
    risk, notes = None, []
    if model is not None:
        try:
            scored = {
                side: member_max_risk(model[1], d, settings) for side, d in (("a", a), ("b", b))
            }
            risk = {side: v[np.isfinite(v)] for side, v in scored.items()}
            if min(len(v) for v in risk.values()) < 2:
                risk, notes = None, ["risk: fewer than 2 scored members in an ensemble"]
        except ConfigurationError as err:
            notes.append(f"risk not scored: {err}")
    else:
        notes.append("no promoted risk model: risk distributions not compared")
    result = compare_ensembles(a, b, names, settings, risk, model[0] if model else None)
    result.notes.extend(notes)
    return result


def run_compare(
    params: CompareParams,
    outdir: Path,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    scheduler: str | None = None,
    model: tuple[str, RiskModel] | None = None,
) -> CompareResult:
    """Features of A and B -> comparison -> report.html (the caller writes result.json)."""
    step = progress or (lambda fraction, message: None)
    step(0.05, f"reading {params.names[0]}")
    a = load_features(params.a, cache_dir, scheduler=scheduler)
    step(0.4, f"reading {params.names[1]}")
    b = load_features(params.b, cache_dir, scheduler=scheduler)
    step(0.75, "comparing")
    result = compare_features(a.dataset, b.dataset, params.names, params.settings, model)
    result.notes.extend(f"input: {p}" for p in [*a.problems, *b.problems])
    outdir.mkdir(parents=True, exist_ok=True)
    write_compare_report(result, outdir)
    step(1.0, "done")
    return result


def write_compare_report(result: CompareResult, outdir: Path) -> Path:
    """report.html: outcomes, tests, risk and the features that shifted."""
    sides = (result.a, result.b)
    sections = [
        Section("Verdict", paragraphs=[f"{result.verdict}: {result.reason}"], notes=result.notes),
        Section(
            "Freeze outcome",
            tables=[
                Table(
                    ["ensemble", "members", "froze", "fraction", "CI", "median onset (years)"],
                    [
                        (
                            s.ensemble,
                            s.n_members,
                            s.n_frozen,
                            s.fraction,
                            format_ci(s.ci),
                            s.median_onset_years,
                        )
                        for s in sides
                    ],
                ),
                Table(
                    ["test", "statistic", "p"],
                    [(t.test, t.statistic, t.p_value) for t in (result.fisher, result.log_rank)],
                ),
            ],
        ),
    ]
    if result.risk is not None:
        r = result.risk
        sections.append(
            Section(
                f"Risk under {r.model}",
                tables=[
                    Table(
                        ["ensemble", "members", "median max risk", "quartiles"],
                        [
                            (s.ensemble, side.n_members, side.median, format_ci(side.quartiles))
                            for s, side in zip(sides, (r.a, r.b), strict=True)
                        ],
                    ),
                    Table(
                        ["test", "statistic", "p"],
                        [(r.test.test, r.test.statistic, r.test.p_value)],
                    ),
                ],
            )
        )
    sections.append(
        Section(
            "What shifted",
            paragraphs=[
                "Whole-run means per member, B − A, Welch t-test, Holm over all features. Budget "
                "terms that shifted: " + (", ".join(result.budget_terms) or "none")
            ],
            tables=[
                Table(
                    ["process", "shifted", "features"],
                    [(p.process, p.shifted, ", ".join(p.features)) for p in result.processes],
                ),
                Table(
                    ["feature", "process", "units", "A", "B", "B − A", "CI", "p (Holm)", "shifted"],
                    [
                        (
                            f.feature,
                            f.process,
                            f.units,
                            f.mean_a,
                            f.mean_b,
                            f.difference,
                            format_ci(f.ci),
                            f.p_holm,
                            f.shifted,
                        )
                        for f in result.features[:30]
                    ],
                ),
            ],
        )
    )
    return write_report(outdir, f"esmwatch: {result.a.ensemble} vs {result.b.ensemble}", sections)
