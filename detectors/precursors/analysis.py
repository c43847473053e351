"""Precursors of the freeze: cross-validated skill by lead, SHAP by process, drop tests.

One pass per lead (in parallel): grouped cross-validation (``crossval``) gives out-of-fold
predictions of every model and baseline in every view, and skill with member-bootstrap CIs
comes from those without refitting.  The model that predicts best in the drivers view is
then explained (``attribution``): out-of-fold SHAP with shadow processes as the null, and
drop-process retraining of the processes that beat it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr
from joblib import delayed

from detectors import baselines
from detectors.attribution import ViewLead, aggregate, explain_oof
from detectors.budget import freshwater_budget
from detectors.crossval import (
    AnalysisError,
    Fold,
    baseline_oof,
    make_folds,
    model_oof,
    n_processes,
    parallel,
)
from detectors.labels import Labels, label_freezes
from detectors.models import get_model
from detectors.precursors.results import MemberRow, PrecursorResult, SkillRow
from detectors.precursors.settings import PrecursorSettings
from detectors.samples import (
    VIEW_RULES,
    SampleSet,
    Standardiser,
    build_samples,
    view_features,
)
from detectors.skill import skill

__all__ = ["AnalysisError", "PrecursorSettings", "analyse_precursors"]

log = logging.getLogger(__name__)

BASELINES = ("salinity_level", "model_year", "ews_variance", "ews_ac1")


def _configuration(features: xr.Dataset) -> xr.DataArray:
    for name in ("configuration", "ensemble"):
        if name in features.coords:
            return features[name]
    return xr.DataArray(np.full(features.sizes["member"], "default"), dims="member")


def _usable(features: xr.Dataset, notes: list[str]) -> xr.Dataset:
    """Drop features missing for most of the record (e.g. a model that lacks them)."""
    keep = []
    for name, var in features.data_vars.items():
        if float(var.isnull().mean()) > 0.5:
            notes.append(f"{name}: more than half missing, left out")
        else:
            keep.append(name)
    return features[keep]


def _skill_row(
    view: str,
    lead: int,
    model: str,
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray,
    settings: PrecursorSettings,
) -> SkillRow:
    ok = ~np.isnan(p)
    s = skill(y[ok], p[ok], groups[ok], n_boot=settings.n_boot, seed=settings.seed)

    def clean(value: float) -> float | None:
        return None if np.isnan(value) else float(value)

    def clean_ci(ci: tuple[float, float]) -> tuple[float, float] | None:
        return None if any(np.isnan(ci)) else (float(ci[0]), float(ci[1]))

    return SkillRow(
        view=view,
        lead_months=lead,
        model=model,
        roc_auc=clean(s.roc_auc),
        roc_auc_ci=clean_ci(s.roc_auc_ci),
        pr_auc=clean(s.pr_auc),
        pr_auc_ci=clean_ci(s.pr_auc_ci),
        brier=s.brier,
        brier_ci=clean_ci(s.brier_ci),
        n_samples=s.n,
        n_positive=s.n_positive,
    )


def analyse_precursors(
    features: xr.Dataset,
    settings: PrecursorSettings | None = None,
    *,
    labels: Labels | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> PrecursorResult:
    """Learn and explain precursors of the freeze in a feature table (member x time).

    ``labels`` are the freeze labels of ``features`` when the caller already has them (the
    risk model needs the same ones); ``progress(fraction, message)`` is told how far it got.

    Raises
    ------
    AnalysisError
        Fewer than two frozen members, or no lead with enough windows to cross-validate.
    """
    settings = settings or PrecursorSettings()
    if settings.explain_model != "auto" and get_model(settings.explain_model).input != "summary":
        raise AnalysisError(f"explain_model {settings.explain_model!r} must take window summaries")
    notes: list[str] = []
    labels = labels if labels is not None else label_freezes(features, settings.label)
    n_frozen = int(labels.froze.sum())
    if n_frozen < 2:
        raise AnalysisError(
            f"only {n_frozen} frozen member(s) among {features.sizes['member']}: "
            "precursors need at least 2 (check the label rule)"
        )
    table = _usable(features, notes)
    configuration = _configuration(table)
    leads = settings.samples.leads_months
    if progress:
        workers = n_processes(settings.n_jobs, leads)
        progress(0.1, f"{len(leads)} leads x {len(settings.views)} views on {workers} "
                      "process(es)")
    outcomes = parallel(settings.n_jobs, leads)(
        delayed(_analyse_lead)(table, labels, configuration, lead, settings) for lead in leads)
    skill_rows: list[SkillRow] = []
    states: list[tuple[str, _LeadView]] = []
    for lead_rows, lead_states, lead_notes in outcomes:
        skill_rows.extend(lead_rows)
        notes.extend(lead_notes)
        states.extend(lead_states.items())
    if not states:
        raise AnalysisError("no lead had enough windows to cross-validate: " + "; ".join(notes))
    explain_model = _choose_explain_model(skill_rows, settings)
    if progress:
        progress(0.5, f"explaining {explain_model} (SHAP with shadow processes)")
    shaps = parallel(settings.n_jobs, states)(
        delayed(explain_oof)(st.samples, st.folds, settings, explain_model) for _, st in states)
    passes: dict[str, list[ViewLead]] = defaultdict(list)
    for (view, st), shap_pass in zip(states, shaps, strict=True):
        passes[view].append(ViewLead(st.samples, st.folds, shap_pass, st.oof[explain_model],
                                      explain_model))
    if progress:
        progress(0.7, "aggregating and drop-process tests")
    notes.extend(_beats_salinity(skill_rows))
    processes, feature_rows = [], []
    for view, view_passes in passes.items():
        rows, frows = aggregate(view, view_passes, settings, notes)
        processes.extend(rows)
        feature_rows.extend(frows)
    return PrecursorResult(
        ensembles=sorted(set(map(str, table.coords["ensemble"].values)))
        if "ensemble" in table.coords
        else [],
        configurations=sorted(set(map(str, configuration.values))),
        n_members=int(table.sizes["member"]),
        n_frozen=n_frozen,
        label={**settings.label.model_dump(), "mixed_layer": labels.mixed_layer},
        samples=settings.samples.model_dump(),
        views={v: VIEW_RULES[v] for v in passes},
        explain_model=explain_model,
        skill=skill_rows,
        processes=processes,
        features=feature_rows,
        explainer_checks=[c for vp in passes.values() for p in vp for c in p.shap.checks],
        budget=freshwater_budget(table, labels),
        members=_member_rows(table, labels),
        notes=notes,
    )


@dataclass
class _LeadView:
    """Windows, folds and out-of-fold predictions of one (lead, view), kept for explaining."""

    samples: SampleSet
    folds: list[Fold]
    oof: dict[str, np.ndarray]


def _choose_explain_model(rows: list[SkillRow], settings: PrecursorSettings) -> str:
    if settings.explain_model != "auto":
        return settings.explain_model
    candidates = [m for m in settings.models if get_model(m).input == "summary"]
    if not candidates:
        raise AnalysisError("explain_model 'auto' needs a summary model (mlp, logistic, gbm)")
    view = "drivers" if "drivers" in settings.views else settings.views[0]

    def mean_auc(model: str) -> float:
        aucs = [r.roc_auc for r in rows if r.model == model and r.view == view
                and r.roc_auc is not None]
        return float(np.mean(aucs)) if aucs else -1.0

    return max(candidates, key=mean_auc)


def _analyse_lead(table: xr.Dataset, labels: Labels, configuration: xr.DataArray, lead: int,
                  settings: PrecursorSettings
                  ) -> tuple[list[SkillRow], dict[str, _LeadView], list[str]]:
    """Skill of every model and baseline for one lead and all views (no explaining yet)."""
    base = build_samples(table, labels, lead, configuration, settings.samples)
    if base.y.sum() < 2:
        return [], {}, [f"lead {lead}: fewer than 2 positive windows, skipped"]
    salinity_name = next((f for f in baselines.SALINITY_FEATURES if f in base.features), None)
    salinity = base.select([salinity_name], "full") if salinity_name else None
    try:
        folds = make_folds(base, settings.n_folds, settings.seed)
    except AnalysisError as err:
        return [], {}, [str(err)]
    base_p = baseline_oof(base, salinity, folds)
    rows: list[SkillRow] = []
    states: dict[str, _LeadView] = {}
    for view in settings.views:
        samples = base.select(view_features(base, view), view)
        view_folds = [
            Fold(f.train, f.test, Standardiser().fit(samples.subset(f.train))) for f in folds
        ]
        extra = () if settings.explain_model == "auto" else (settings.explain_model,)
        oof = {name: model_oof(samples, view_folds, name, settings.seed)
               for name in dict.fromkeys((*settings.models, *extra))}
        predictions = {**{m: oof[m] for m in settings.models}, **base_p}
        rows.extend(_skill_row(view, lead, name, samples.y, p, samples.groups, settings)
                    for name, p in predictions.items())
        states[view] = _LeadView(samples, view_folds, oof)
    return rows, states, []


def _beats_salinity(rows: list[SkillRow]) -> list[str]:
    """Say plainly where no classifier beats the salinity level."""
    notes = []
    by = {(r.view, r.lead_months, r.model): r for r in rows}
    for (view, lead, model), row in by.items():
        if model != "salinity_level" or row.roc_auc is None:
            continue
        best = max(
            (
                r
                for (v, ld, m), r in by.items()
                if v == view and ld == lead and m not in BASELINES and r.roc_auc is not None
            ),
            key=lambda r: r.roc_auc,
            default=None,
        )
        if best is None or best.roc_auc <= row.roc_auc:
            notes.append(
                f"{view} view, lead {lead} months: no classifier beats the salinity "
                f"level (AUC {row.roc_auc:.2f})"
            )
    return notes


def _member_rows(table: xr.Dataset, labels: Labels) -> list[MemberRow]:
    ensemble = (
        table.coords["ensemble"].values
        if "ensemble" in table.coords
        else np.full(table.sizes["member"], "")
    )
    return [
        MemberRow(
            member=r["member"], ensemble=str(e), froze=r["froze"], first_freeze=r["first_freeze"]
        )
        for r, e in zip(labels.to_records(), ensemble, strict=True)
    ]
