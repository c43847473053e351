"""Precursors of the freeze: cross-validated skill by lead, SHAP by process, drop tests.

One pass per (lead, view): grouped cross-validation gives out-of-fold predictions for every
model and baseline (skill and bootstrap CIs come from those, without refitting), and
out-of-fold SHAP values of the explained model, with *shadow* processes (each process's
columns permuted across samples) trained alongside as the null.  The top processes are then
removed one at a time and the model refitted: the loss of AUC is what separates a driver from
a decoy that merely co-varies with it.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from joblib import Parallel, delayed
from pydantic import BaseModel, ConfigDict, Field
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from detectors import baselines
from detectors.budget import freshwater_budget
from detectors.explain import additivity_error, explain, kernel_crosscheck
from detectors.labels import LabelRule, Labels, label_freezes
from detectors.models import get_model
from detectors.results import (
    ExplainerCheck,
    FeatureRow,
    MemberRow,
    PrecursorResult,
    ProcessRow,
    SkillRow,
)
from detectors.samples import (
    VIEW_RULES,
    SampleRule,
    SampleSet,
    Standardiser,
    build_samples,
    summarise,
    view_features,
)
from detectors.skill import group_counts, interval, skill, weighted_roc_auc
from ensembles.errors import EsmwatchError

log = logging.getLogger(__name__)

BASELINES = ("salinity_level", "model_year", "ews_variance", "ews_ac1")


class PrecursorSettings(BaseModel):
    """Everything that decides a precursor analysis; echoed into the result."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    models: tuple[str, ...] = ("mlp", "cnn", "logistic", "gbm")
    explain_model: str = Field(
        "auto", description="model whose SHAP values rank processes; 'auto' takes the "
        "summary model (mlp, logistic, gbm) with the best mean ROC AUC in the drivers view, "
        "so explanations come from the model that predicts best")
    views: tuple[str, ...] = ("full", "drivers")
    n_folds: int = Field(5, ge=2)
    n_boot: int = Field(500, ge=50)
    alpha: float = Field(
        0.1, gt=0, lt=1, description="family-wise error rate per view: a process is tested at "
        "alpha / (number of processes tested), Bonferroni, on the bootstrap replicates")
    drop_top: int = Field(
        8, ge=0, description="at most this many processes that beat the shadow null are "
        "tested by drop-process retraining (highest importance first); in a view with drop "
        "tests only a tested process can be significant")
    explain_rows: int = Field(
        400, ge=20, description="test windows explained per fold (all positives kept)")
    kernel_samples: int = Field(0, ge=0, le=50, description="KernelExplainer cross-check rows")
    drop_views: tuple[str, ...] = Field(
        ("drivers",), description="views whose significant processes get drop-process tests "
        "(the full view's symptoms are redundant with each other, so removing one costs "
        "nothing and the test says nothing)")
    n_jobs: int | None = Field(None, ge=1, description="processes; None = all cores")
    seed: int = 0
    label: LabelRule = Field(default_factory=LabelRule)
    samples: SampleRule = Field(default_factory=SampleRule)


class AnalysisError(EsmwatchError):
    """The ensemble cannot support the analysis (e.g. no frozen member)."""


@dataclass
class _Fold:
    train: np.ndarray
    test: np.ndarray
    scaler: Standardiser


def _folds(samples: SampleSet, n_folds: int, seed: int) -> list[_Fold]:
    groups = samples.groups
    n = min(n_folds, len(np.unique(groups[samples.y == 1])), len(np.unique(groups)))
    if n < 2:
        raise AnalysisError(
            f"lead {samples.lead} months: fewer than 2 frozen members with a complete window; "
            "cannot cross-validate"
        )
    splitter = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
    out = []
    for train, test in splitter.split(samples.sequences, samples.y, groups):
        out.append(_Fold(train, test, Standardiser().fit(samples.subset(train))))
    return out


def _inputs(samples: SampleSet, fold: _Fold, index: np.ndarray, kind: str) -> np.ndarray:
    seq = fold.scaler.transform(samples.subset(index))
    return seq if kind == "sequence" else summarise(seq, samples.rule.block_months)


def _oof(samples: SampleSet, folds: list[_Fold], fit_predict: Callable) -> np.ndarray:
    p = np.full(samples.y.size, np.nan)
    for fold in folds:
        p[fold.test] = fit_predict(fold)
    return p


def _model_oof(
    samples: SampleSet, folds: list[_Fold], name: str, seed: int, drop: np.ndarray | None = None
) -> np.ndarray:
    spec = get_model(name)

    def fit_predict(fold: _Fold) -> np.ndarray:
        x_train = _inputs(samples, fold, fold.train, spec.input)
        x_test = _inputs(samples, fold, fold.test, spec.input)
        if drop is not None:
            x_train, x_test = x_train[:, ~drop], x_test[:, ~drop]
        model = spec.build(seed=seed).fit(
            x_train, samples.y[fold.train], groups=samples.groups[fold.train]
        )
        return model.predict_proba(x_test)

    return _oof(samples, folds, fit_predict)


def _baseline_scores(
    samples: SampleSet, salinity: SampleSet | None, scaler: Standardiser | None, index: np.ndarray
) -> dict[str, np.ndarray]:
    scores = {"model_year": samples.model_month[index].astype(float)}
    if salinity is not None and scaler is not None:
        seq = scaler.transform(salinity.subset(index))[:, 0, :]
        var_tau, ac_tau = baselines.ews_trends(seq)
        scores.update(
            salinity_level=baselines.salinity_level(seq), ews_variance=var_tau, ews_ac1=ac_tau
        )
    return scores


def _baseline_oof(
    samples: SampleSet, salinity: SampleSet | None, folds: list[_Fold]
) -> dict[str, np.ndarray]:
    """Each baseline's number mapped to a probability by a one-feature logistic regression."""
    out: dict[str, np.ndarray] = {}
    for fold in folds:
        scaler = Standardiser().fit(salinity.subset(fold.train)) if salinity is not None else None
        train = _baseline_scores(samples, salinity, scaler, fold.train)
        test = _baseline_scores(samples, salinity, scaler, fold.test)
        for name, x in train.items():
            clf = LogisticRegression().fit(x[:, None], samples.y[fold.train])
            out.setdefault(name, np.full(samples.y.size, np.nan))
            out[name][fold.test] = clf.predict_proba(test[name][:, None])[:, 1]
    return out


@dataclass
class _Shap:
    columns: list[tuple[str, int]]
    rows: np.ndarray  # indices of the explained windows (all positives, some negatives)
    values: np.ndarray  # (rows, columns) out-of-fold SHAP, shadows dropped
    shadow_importance: float
    inputs: np.ndarray  # (rows, columns) standardised inputs, for directions
    checks: list[ExplainerCheck]


def _shadow_blocks(
    columns: list[tuple[str, int]], process_of: dict[str, str]
) -> dict[str, np.ndarray]:
    blocks: dict[str, list[int]] = defaultdict(list)
    for i, (feature, _) in enumerate(columns):
        blocks[process_of[feature]].append(i)
    return {p: np.array(ix) for p, ix in blocks.items()}


def _explain_oof(samples: SampleSet, folds: list[_Fold], settings: PrecursorSettings,
                 model_name: str) -> _Shap:
    spec = get_model(model_name)
    columns = samples.summary_columns()
    process_of = dict(zip(samples.features, samples.processes, strict=True))
    blocks = _shadow_blocks(columns, process_of)
    rng = np.random.default_rng(settings.seed)
    rows, values, inputs, shadow_values, checks = [], [], [], [], []
    for k, fold in enumerate(folds):
        explained = _explained_rows(samples.y, fold.test, settings.explain_rows, rng)
        x = {
            part: _inputs(samples, fold, ix, "summary")
            for part, ix in (("train", fold.train), ("test", explained))
        }
        shadows = {
            part: np.concatenate([_permuted(x[part][:, ix], rng) for ix in blocks.values()], axis=1)
            for part in x
        }
        x_train = np.concatenate([x["train"], shadows["train"]], axis=1)
        x_test = np.concatenate([x["test"], shadows["test"]], axis=1)
        model = spec.build(seed=settings.seed).fit(
            x_train, samples.y[fold.train], groups=samples.groups[fold.train]
        )
        background = x_train[rng.choice(len(x_train), min(100, len(x_train)), replace=False)]
        expl = explain(model, spec, background, x_test, seed=settings.seed)
        n_real = len(columns)
        rows.append(explained)
        values.append(expl.values[:, :n_real])
        inputs.append(x["test"])
        offsets = np.cumsum([0] + [len(ix) for ix in blocks.values()])
        shadow_values.append(np.stack(
            [expl.values[:, n_real + offsets[b]: n_real + offsets[b + 1]].sum(axis=1)
             for b in range(len(blocks))], axis=1))
        check = ExplainerCheck(
            view=samples.view,
            lead_months=samples.lead,
            model=spec.name,
            explainer=expl.explainer,
            additivity_error=additivity_error(expl),
        )
        if k == 0 and settings.kernel_samples:
            cross = kernel_crosscheck(
                model,
                spec,
                background,
                x_test,
                n_samples=settings.kernel_samples,
                seed=settings.seed,
            )
            check.kernel_rank_correlation = cross["spearman_mean_abs"]
            check.kernel_n = cross["n"]
        checks.append(check)
    shadow_importance = float(np.abs(np.concatenate(shadow_values)).mean(axis=0).max())
    return _Shap(columns, np.concatenate(rows), np.concatenate(values), shadow_importance,
                 np.concatenate(inputs), checks)


def _explained_rows(y: np.ndarray, test: np.ndarray, limit: int, rng: np.random.Generator
                    ) -> np.ndarray:
    """All positive test windows and a random subset of negatives, ``limit`` in all.

    DeepExplainer costs rows x background; positives are rare and carry the signal, so
    they are always explained.
    """
    positives = test[y[test] == 1]
    negatives = test[y[test] == 0]
    keep = max(limit - positives.size, 0)
    if negatives.size > keep:
        negatives = np.sort(rng.choice(negatives, keep, replace=False))
    return np.concatenate([positives, negatives])


def _permuted(block: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return block[rng.permutation(len(block))]


@dataclass
class _ViewLead:
    """Everything one (view, lead) pass keeps for the aggregation across leads."""

    samples: SampleSet
    folds: list[_Fold]
    shap: _Shap
    explain_oof: np.ndarray
    model: str


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
    progress: Callable[[str], None] | None = None,
) -> PrecursorResult:
    """Learn and explain precursors of the freeze in a feature table (member x time).

    Raises
    ------
    AnalysisError
        Fewer than two frozen members, or no lead with enough windows to cross-validate.
    """
    settings = settings or PrecursorSettings()
    if settings.explain_model != "auto" and get_model(settings.explain_model).input != "summary":
        raise AnalysisError(f"explain_model {settings.explain_model!r} must take window summaries")
    notes: list[str] = []
    labels = label_freezes(features, settings.label)
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
        progress(f"{len(leads)} leads x {len(settings.views)} views on {_jobs(settings, leads)} "
                 "process(es)")
    outcomes = _parallel(settings, leads)(
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
        progress(f"explaining {explain_model} (SHAP with shadow processes)")
    shaps = _parallel(settings, states)(
        delayed(_explain_oof)(st.samples, st.folds, settings, explain_model) for _, st in states)
    passes: dict[str, list[_ViewLead]] = defaultdict(list)
    for (view, st), shap_pass in zip(states, shaps, strict=True):
        passes[view].append(_ViewLead(st.samples, st.folds, shap_pass, st.oof[explain_model],
                                      explain_model))
    if progress:
        progress("aggregating and drop-process tests")
    notes.extend(_beats_salinity(skill_rows))
    processes, feature_rows = [], []
    for view, view_passes in passes.items():
        rows, frows = _aggregate(view, view_passes, settings, notes)
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


def _jobs(settings: PrecursorSettings, items: Sequence[object]) -> int:
    return max(1, min(settings.n_jobs or os.cpu_count() or 1, len(items)))


def _parallel(settings: PrecursorSettings, items: Sequence[object]) -> Parallel:
    """Independent passes (leads, drop tests) on separate processes.

    Every model trains single-threaded, so two cores give close to twice the speed; with
    one job everything runs in this process.
    """
    return Parallel(n_jobs=_jobs(settings, items), backend="loky")


@dataclass
class _LeadView:
    """Windows, folds and out-of-fold predictions of one (lead, view), kept for explaining."""

    samples: SampleSet
    folds: list[_Fold]
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
        folds = _folds(base, settings.n_folds, settings.seed)
    except AnalysisError as err:
        return [], {}, [str(err)]
    base_p = _baseline_oof(base, salinity, folds)
    rows: list[SkillRow] = []
    states: dict[str, _LeadView] = {}
    for view in settings.views:
        samples = base.select(view_features(base, view), view)
        view_folds = [
            _Fold(f.train, f.test, Standardiser().fit(samples.subset(f.train))) for f in folds
        ]
        extra = () if settings.explain_model == "auto" else (settings.explain_model,)
        oof = {name: _model_oof(samples, view_folds, name, settings.seed)
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


def _bootstrap_weights(
    groups_per_pass: list[np.ndarray], n_boot: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group-count draws shared by every lead, so CIs resample members consistently.

    Returns the draws (n_boot, n_groups) and, per pass, the group index of each sample.
    """
    names = np.unique(np.concatenate(groups_per_pass))
    return group_counts(names.size, n_boot, seed), [np.searchsorted(names, g)
                                                    for g in groups_per_pass]


def _mean_by_weights(
    per_sample: np.ndarray, group_index: np.ndarray, weights: np.ndarray, n_groups: int
) -> tuple[float, np.ndarray]:
    """Point mean over samples and its bootstrap replicates (per_sample: (n, k))."""
    sums = np.zeros((n_groups, per_sample.shape[1]))
    np.add.at(sums, group_index, per_sample)
    counts = np.bincount(group_index, minlength=n_groups).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        replicates = (weights @ sums) / (weights @ counts)[:, None]
    return per_sample.mean(axis=0), replicates


def _ci(replicates: np.ndarray) -> tuple[float, float]:
    return interval(replicates, 0.9)


def _aggregate(
    view: str, passes: list[_ViewLead], settings: PrecursorSettings, notes: list[str]
) -> tuple[list[ProcessRow], list[FeatureRow]]:
    """Process and feature importance over all leads of one view, with CIs and drop tests."""
    first = passes[0].samples
    process_of = dict(zip(first.features, first.processes, strict=True))
    role_of = {p: r for p, r in zip(first.processes, first.roles, strict=True)}
    weights, group_index = _bootstrap_weights(
        [p.samples.groups for p in passes], settings.n_boot, settings.seed
    )
    shap_index = [gi[vl.shap.rows] for vl, gi in zip(passes, group_index, strict=True)]
    n_groups = weights.shape[1]
    per_process: dict[str, list] = defaultdict(list)
    per_feature: dict[tuple[str, int], list] = defaultdict(list)
    directions: dict[str, list] = defaultdict(list)
    lag_profile: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for vl, gi in zip(passes, shap_index, strict=True):
        columns = vl.shap.columns
        for process in sorted(set(process_of.values())):
            cols = [i for i, (f, _) in enumerate(columns) if process_of[f] == process]
            total = vl.shap.values[:, cols].sum(axis=1)
            per_process[process].append(
                _mean_by_weights(np.abs(total)[:, None], gi, weights, n_groups)
            )
            directions[process].append((vl.shap.inputs[:, cols].mean(axis=1), total))
            for lag in sorted({lag for _, lag in columns}):
                at_lag = [i for i in cols if columns[i][1] == lag]
                lag_profile[process][lag].append(
                    float(np.abs(vl.shap.values[:, at_lag].sum(axis=1)).mean())
                )
        for i, key in enumerate(columns):
            per_feature[key].append(
                _mean_by_weights(np.abs(vl.shap.values[:, [i]]), gi, weights, n_groups)
            )
    null = float(np.mean([vl.shap.shadow_importance for vl in passes]))
    rows = []
    for process, parts in per_process.items():
        point = float(np.mean([p[0][0] for p in parts]))
        replicates = np.nanmean(np.stack([p[1][:, 0] for p in parts]), axis=0)
        ci = _ci(replicates)
        profile = {lag: float(np.mean(v)) for lag, v in lag_profile[process].items()}
        rows.append(
            ProcessRow(
                view=view,
                process=process,
                role=role_of[process],
                importance=point,
                ci=ci,
                drop_auc=None,
                significant=bool(np.mean(replicates <= null) < settings.alpha / len(per_process)),
                null_importance=null,
                direction=_direction(directions[process]),
                peak_lag_months=int(max(profile, key=profile.get)),
                lag_profile={str(k): v for k, v in sorted(profile.items())},
                features=sorted(f for f, p in process_of.items() if p == process),
            )
        )
    rows.sort(key=lambda r: r.importance, reverse=True)
    tested = ([r for r in rows if r.significant][: settings.drop_top]
              if view in settings.drop_views else [])
    # the same model refitted with another seed: how much AUC moves by refitting alone
    jobs = [(REFIT, vl) for vl in passes] if tested else []
    jobs += [(row.process, vl) for row in tested for vl in passes]
    predictions = _parallel(settings, jobs)(
        delayed(_drop_oof)(process, vl, settings) for process, vl in jobs)
    by_process: dict[str, list] = defaultdict(list)
    for (process, vl), p_drop in zip(jobs, predictions, strict=True):
        by_process[process].append((vl, p_drop))
    needed = set()
    if tested:
        _, noise_ci, noise = _drop_summary(by_process[REFIT], passes, weights, group_index)
        notes.append(f"{view} view: refitting with another seed moves ROC AUC by "
                     f"[{noise_ci[0]:+.3f}, {noise_ci[1]:+.3f}] (90%); a drop test must exceed it")
    for row in tested:
        row.drop_auc, row.drop_auc_ci, replicates = _drop_summary(
            by_process[row.process], passes, weights, group_index)
        beyond_noise = replicates - np.abs(noise) if replicates is not None else None
        if beyond_noise is not None and (
                np.mean(beyond_noise <= 0) < settings.alpha / len(tested)):
            needed.add(row.process)
    if view in settings.drop_views:
        for row in rows:  # beating the null is not enough: the model must need the process
            row.significant = row.process in needed
    features_out = [
        FeatureRow(
            view=view,
            feature=f,
            process=process_of[f],
            lag_months=lag,
            importance=float(np.mean([p[0][0] for p in parts])),
            ci=_ci(np.nanmean(np.stack([p[1][:, 0] for p in parts]), axis=0)),
        )
        for (f, lag), parts in per_feature.items()
    ]
    features_out.sort(key=lambda r: r.importance, reverse=True)
    return rows, features_out


def _direction(pairs: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """Sign of the process's SHAP when its inputs are above normal."""
    x = np.concatenate([a for a, _ in pairs])
    s = np.concatenate([b for _, b in pairs])
    if x.std() == 0 or s.std() == 0:
        return "0"
    r = float(np.corrcoef(x, s)[0, 1])
    return "0" if abs(r) < 0.1 else ("+" if r > 0 else "-")


REFIT = "__refit__"  # drop nothing, refit with another seed: the refit-noise reference


def _drop_oof(process: str, vl: _ViewLead, settings: PrecursorSettings) -> np.ndarray | None:
    """Out-of-fold predictions of the explained model refitted without the process."""
    if process == REFIT:
        return _model_oof(vl.samples, vl.folds, vl.model, settings.seed + 1)
    columns = vl.samples.summary_columns()
    process_of = dict(zip(vl.samples.features, vl.samples.processes, strict=True))
    drop = np.array([process_of[f] == process for f, _ in columns])
    if drop.all() or not drop.any():
        return None
    return _model_oof(vl.samples, vl.folds, vl.model, settings.seed, drop)


def _drop_summary(
    results: list[tuple[_ViewLead, np.ndarray | None]],
    passes: list[_ViewLead],
    weights: np.ndarray,
    group_index: list[np.ndarray],
) -> tuple[float | None, tuple[float, float] | None, np.ndarray | None]:
    """Loss of ROC AUC without the process, averaged over leads, with a paired CI.

    The interval resamples members (the same draws for every lead) and compares the two
    models' out-of-fold predictions on each resample: a paired bootstrap, no refitting.
    """
    losses, replicates = [], []
    for vl, p_drop in results:
        if p_drop is None:
            continue
        gi = group_index[next(i for i, p in enumerate(passes) if p is vl)]
        y = vl.samples.y
        unit = np.ones((1, y.size))
        losses.append(float(weighted_roc_auc(y, vl.explain_oof, unit)[0]
                            - weighted_roc_auc(y, p_drop, unit)[0]))
        w = weights[:, gi]
        replicates.append(weighted_roc_auc(y, vl.explain_oof, w) - weighted_roc_auc(y, p_drop, w))
    if not losses:
        return None, None, None
    mean = np.nanmean(replicates, axis=0)
    return float(np.mean(losses)), _ci(mean), mean
