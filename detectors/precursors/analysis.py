"""Precursors of the freeze: cross-validated skill by lead, SHAP by process, drop tests.

One pass per lead (in parallel): grouped cross-validation (``crossval``) gives out-of-fold
predictions of every model and baseline in every view, and skill with member-bootstrap CIs
comes from those without refitting.  A persistence-preserving permutation null
(``permutation``: member series permuted among members matched in model time, a cheap model
refitted on every permutation) gives each process's p-value and each lead's chance band of
the ROC AUC.  The model that predicts best in the drivers view is then explained
(``attribution``): out-of-fold SHAP, and drop-process retraining of the processes that beat
the null.
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
from detectors.budget.analysis import freshwater_budget
from detectors.budget.content import ice_counted_once
from detectors.crossval import (
    AnalysisError,
    Fold,
    baseline_oof,
    fold_strata,
    make_folds,
    model_oof,
    n_processes,
    parallel,
)
from detectors.labels import Labels, label_freezes
from detectors.models import get_model
from detectors.permutation import (
    Design,
    PermutationNull,
    build_design,
    n_permutations,
    permutation_null,
)
from detectors.precursors.results import (
    Censoring,
    MemberRow,
    PermutationSummary,
    PrecursorResult,
    SkillRow,
)
from detectors.precursors.settings import PrecursorSettings
from detectors.precursors.sources import attribute
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


def _configuration(features: xr.Dataset, notes: list[str]) -> xr.DataArray:
    """Each member's configuration: the ``configuration`` coordinate that the caller set
    from the registry or ``--configuration`` (``ensembles.features.with_configurations``);
    without it, the ensemble part of the case name, with a note, since numbered
    development runs of different configurations then count as one."""
    if "configuration" in features.coords:
        return features["configuration"]
    if "ensemble" in features.coords:
        notes.append("configuration taken from case names (no configuration registered or "
                     "given): runs of different configurations that share a case-name stem "
                     "are pooled")
        return features["ensemble"]
    notes.append("no configuration known: all members are treated as one configuration")
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
    strata: np.ndarray,
    settings: PrecursorSettings,
) -> SkillRow:
    ok = ~np.isnan(p)
    s = skill(y[ok], p[ok], groups[ok], n_boot=settings.n_boot, seed=settings.seed,
              strata=strata[ok])

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
    budget_table = table  # the budget separates the imported ice itself
    table, counted = ice_counted_once(table, settings.budget.reference_salinity)
    notes.extend([counted] if counted else [])
    configuration = _configuration(table, notes)
    leads = settings.samples.leads_months
    _check_negatives([_without_negatives(s) for s in (
        build_samples(table, labels, lead, configuration, settings.samples) for lead in leads)
        if s.y.any()], configuration, labels)
    if progress:
        workers = n_processes(settings.n_jobs, leads)
        progress(0.1, f"{len(leads)} leads x {len(settings.views)} views on {workers} "
                      "process(es)")
    outcomes = parallel(settings.n_jobs, leads)(
        delayed(_analyse_lead)(table, labels, configuration, lead, settings) for lead in leads)
    skill_rows: list[SkillRow] = []
    states: list[tuple[str, _LeadView]] = []
    censored: dict[str, int] = {}
    for lead, (lead_rows, lead_states, lead_notes, n_censored) in zip(leads, outcomes,
                                                                      strict=True):
        skill_rows.extend(lead_rows)
        notes.extend(lead_notes)
        states.extend(lead_states.items())
        censored[str(lead)] = n_censored
    if not states:
        raise AnalysisError("no lead had enough windows to cross-validate: " + "; ".join(notes))
    if progress:
        progress(0.35, "permutation null (member series permuted at matched model times)")
    nulls = _nulls(states, settings)
    _chance(skill_rows, nulls)
    explain_model = _choose_explain_model(skill_rows, settings)
    if progress:
        progress(0.5, f"explaining {explain_model} (out-of-fold SHAP)")
    shaps = parallel(settings.n_jobs, states)(
        delayed(explain_oof)(st.samples, st.folds, settings, explain_model) for _, st in states)
    passes: dict[str, list[ViewLead]] = defaultdict(list)
    for (view, st), shap_pass in zip(states, shaps, strict=True):
        passes[view].append(ViewLead(st.samples, st.folds, shap_pass, st.oof[explain_model],
                                      explain_model, st.design.strata))
    if progress:
        progress(0.7, "aggregating and drop-process tests")
    notes.extend(_beats_salinity(skill_rows))
    processes, feature_rows = [], []
    for view, view_passes in passes.items():
        rows, frows = aggregate(view, view_passes, nulls[view], settings, notes)
        processes.extend(rows)
        feature_rows.extend(frows)
    budget = freshwater_budget(budget_table, labels, configuration.values, settings.budget)
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
        budget=budget,
        attribution=attribute(budget, processes),
        members=_member_rows(table, labels),
        permutations=[_permutation_summary(v, n, settings) for v, n in nulls.items()],
        censoring=_censoring(labels, censored),
        notes=notes,
    )


def _nulls(states: list[tuple[str, _LeadView]], settings: PrecursorSettings
           ) -> dict[str, PermutationNull]:
    """The permutation null of each view, over all of its leads at once."""
    by_view: dict[str, list[Design]] = defaultdict(list)
    processes: dict[str, list[str]] = {}
    for view, st in states:
        by_view[view].append(st.design)
        processes[view] = st.processes
    return {
        view: permutation_null(
            designs, processes[view],
            n_permutations(len(processes[view]), settings.alpha, settings.n_permutations),
            strength=settings.permutation_ridge, seed=settings.seed, n_jobs=settings.n_jobs)
        for view, designs in by_view.items()
    }


def _permutation_summary(view: str, null: PermutationNull, settings: PrecursorSettings
                         ) -> PermutationSummary:
    def rounded(values: np.ndarray) -> list[float]:
        return [round(float(v), 4) for v in values]

    return PermutationSummary(
        view=view, n_permutations=null.n_permutations,
        model="ridge discriminant (class-balanced)",
        alpha_per_process=settings.alpha / len(null.processes),
        null_roc_auc={str(lead): rounded(null.auc_null[:, i])
                      for i, lead in enumerate(null.leads)},
        null_process_auc={p: rounded(null.null[:, i]) for i, p in enumerate(null.processes)})


def _chance(rows: list[SkillRow], nulls: dict[str, PermutationNull]) -> None:
    """Give every skill row the chance band of its view and lead."""
    for row in rows:
        null = nulls.get(row.view)
        if null is None or row.lead_months not in null.leads:
            continue
        band = null.chance_band(row.lead_months)
        if np.isfinite(band).all():
            row.chance_band = band
            row.above_chance = None if row.roc_auc is None else row.roc_auc > band[1]


def _without_negatives(samples: SampleSet) -> set[str]:
    """Configurations with positive windows but no negative one at this lead."""
    configs = samples.configuration.astype(str)
    return {c for c in set(configs[samples.y == 1]) if not (samples.y[configs == c] == 0).any()}


def _check_negatives(per_lead: list[set[str]], configuration: xr.DataArray,
                     labels: Labels) -> None:
    """A configuration whose frozen members have no negatives at any lead cannot be learnt.

    Raises
    ------
    AnalysisError
        Naming the configuration, when it lacks negatives at every lead it has positives.
    """
    if not per_lead:
        return
    lacking = set.intersection(*per_lead)
    if lacking:
        frozen = labels.froze.values
        counts = {c: (int((configuration.values == c).sum()),
                      int(frozen[configuration.values == c].sum())) for c in sorted(lacking)}
        raise AnalysisError(
            "no negatives (members not yet frozen at the same model times) in configuration(s) "
            + "; ".join(f"{c!r}: {n} member(s), {f} frozen" for c, (n, f) in counts.items())
            + ". Negatives must come from the same configuration: add its unfrozen runs, or "
            "check the configuration given at registration (--configuration)")


def _censoring(labels: Labels, dropped: dict[str, int]) -> Censoring:
    cut = {str(m): str(c) for m, c in zip(labels.censored_from.member.values,
                                          labels.censored_from.values, strict=True) if c}
    years = labels.frozen_winter.year.values
    ending_frozen = [m for m, w in zip(labels.frozen_winter.member.values,
                                       labels.frozen_winter.values, strict=True)
                     if str(m) in cut and w[years >= int(cut[str(m)][:4])].any()]
    return Censoring(members=sorted(map(str, ending_frozen)), censored_from=cut,
                     windows_dropped=dropped)


@dataclass
class _LeadView:
    """Windows, folds and out-of-fold predictions of one (lead, view), kept for explaining."""

    samples: SampleSet
    folds: list[Fold]
    oof: dict[str, np.ndarray]
    design: Design
    processes: list[str]


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
                  ) -> tuple[list[SkillRow], dict[str, _LeadView], list[str], int]:
    """Skill of every model and baseline for one lead and all views (no explaining yet),
    and how many negative windows censoring dropped."""
    base = build_samples(table, labels, lead, configuration, settings.samples)
    censored = base.n_censored
    if base.y.sum() < 2 or not (base.y == 0).any():
        return [], {}, [f"lead {lead}: fewer than 2 positive windows or no negative, "
                        "skipped"], censored
    salinity_name = next((f for f in baselines.SALINITY_FEATURES if f in base.features), None)
    salinity = base.select([salinity_name], "full") if salinity_name else None
    try:
        folds = make_folds(base, settings.n_folds, settings.seed)
    except AnalysisError as err:
        return [], {}, [str(err)], censored
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
        strata = fold_strata(samples, view_folds)
        rows.extend(_skill_row(view, lead, name, samples.y, p, samples.groups, strata, settings)
                    for name, p in predictions.items())
        processes = sorted(set(samples.processes))
        states[view] = _LeadView(samples, view_folds, oof,
                                 build_design(samples, view_folds, processes), processes)
    return rows, states, [], censored


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
