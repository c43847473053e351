"""Attribution: out-of-fold SHAP aggregated to processes, a permutation null and drop tests.

Process importance is the mean over windows of |sum of the process's SHAP values| (so a process
is not inflated by having many features), with member-bootstrap CIs shared across leads.  In
every view a process is ``significant`` only if it beats the persistence-preserving
permutation null (:mod:`detectors.permutation`, Bonferroni over the view's processes); in the
drivers view its removal must also cost more skill than refitting the same model with another
seed: that drop test is what separates a driver from a decoy that merely co-varies with it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from joblib import delayed

from detectors.crossval import Fold, fold_inputs, model_oof, parallel
from detectors.explain import additivity_error, explain, kernel_crosscheck
from detectors.models import get_model
from detectors.permutation import PermutationNull
from detectors.precursors.results import ExplainerCheck, FeatureRow, ProcessRow
from detectors.samples import SampleSet
from detectors.skill import group_counts, interval, weighted_roc_auc

if TYPE_CHECKING:
    from detectors.precursors.settings import PrecursorSettings

@dataclass
class _Shap:
    columns: list[tuple[str, int]]
    rows: np.ndarray  # indices of the explained windows (all positives, some negatives)
    values: np.ndarray  # (rows, columns) out-of-fold SHAP
    inputs: np.ndarray  # (rows, columns) standardised inputs, for directions
    checks: list[ExplainerCheck]


def explain_oof(samples: SampleSet, folds: list[Fold], settings: PrecursorSettings,
                model_name: str) -> _Shap:
    """Out-of-fold SHAP of the explained model: each fold's model explains its test windows."""
    spec = get_model(model_name)
    rng = np.random.default_rng(settings.seed)
    rows, values, inputs, checks = [], [], [], []
    for k, fold in enumerate(folds):
        explained = _explained_rows(samples.y, fold.test, settings.explain_rows, rng)
        x_train = fold_inputs(samples, fold, fold.train, "summary")
        x_test = fold_inputs(samples, fold, explained, "summary")
        model = spec.build(seed=settings.seed).fit(
            x_train, samples.y[fold.train], groups=samples.groups[fold.train]
        )
        background = x_train[rng.choice(len(x_train), min(100, len(x_train)), replace=False)]
        expl = explain(model, spec, background, x_test, seed=settings.seed)
        rows.append(explained)
        values.append(expl.values)
        inputs.append(x_test)
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
    return _Shap(samples.summary_columns(), np.concatenate(rows), np.concatenate(values),
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


@dataclass
class ViewLead:
    """Everything one (view, lead) pass keeps for the aggregation across leads."""

    samples: SampleSet
    folds: list[Fold]
    shap: _Shap
    explain_oof: np.ndarray
    model: str
    strata: np.ndarray  # fold x window end of each window (stratified AUC)


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


def aggregate(
    view: str, passes: list[ViewLead], null: PermutationNull, settings: PrecursorSettings,
    notes: list[str]
) -> tuple[list[ProcessRow], list[FeatureRow]]:
    """Process and feature importance over all leads of one view, with CIs, the permutation
    test and drop tests."""
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
    level = settings.alpha / len(per_process)
    p_values = dict(zip(null.processes, null.p_values(), strict=True))
    threshold = dict(zip(null.processes, null.null_quantile(level), strict=True))
    observed = dict(zip(null.processes, null.observed, strict=True))
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
                significant=bool(p_values[process] <= level),
                p_value=float(p_values[process]),
                test_auc=float(observed[process]),
                null_auc=float(threshold[process]),
                direction=_direction(directions[process]),
                peak_lag_months=int(max(profile, key=profile.get)),
                lag_profile={str(k): v for k, v in sorted(profile.items())},
                features=sorted(f for f, p in process_of.items() if p == process),
            )
        )
    rows.sort(key=lambda r: r.importance, reverse=True)
    tested = ([r for r in rows if r.significant][: settings.drop_top]
              if view in settings.drop_views else [])
    # the same model refitted with other seeds: how much AUC moves by refitting alone
    refits = [f"{REFIT}{k}" for k in range(settings.drop_refits)] if tested else []
    jobs = [(name, vl) for name in refits for vl in passes]
    jobs += [(row.process, vl) for row in tested for vl in passes]
    predictions = parallel(settings.n_jobs, jobs)(
        delayed(_drop_oof)(process, vl, settings) for process, vl in jobs)
    by_process: dict[str, list] = defaultdict(list)
    for (process, vl), p_drop in zip(jobs, predictions, strict=True):
        by_process[process].append((vl, p_drop))
    needed = set()
    noise = np.zeros(weights.shape[0])
    if tested:
        losses = [_drop_summary(by_process[name], passes, weights, group_index)[2]
                  for name in refits]
        if all(loss is not None for loss in losses):
            noise = np.mean(losses, axis=0)
        noise_ci = _ci(noise)
        notes.append(f"{view} view: refitting with other seeds ({len(refits)}) moves ROC AUC "
                     f"by [{noise_ci[0]:+.3f}, {noise_ci[1]:+.3f}] on average (90%); a drop "
                     "test is measured against the refits")
    for row in tested:
        row.drop_auc, row.drop_auc_ci, replicates = _drop_summary(
            by_process[row.process], passes, weights, group_index)
        if replicates is not None and (
                share_not_beyond(replicates, noise) < settings.alpha / len(tested)):
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


def share_not_beyond(drop: np.ndarray, refit: np.ndarray) -> float:
    """Share of bootstrap draws in which the AUC lost without a process is not beyond the
    AUC lost by refitting alone (both (draws,), losses against the explained fit).

    The difference ``drop - refit`` is the refitted models' AUC minus the reduced model's, so
    refit noise counts with its sign: a refit that happens to score better than the explained
    fit raises the bar by as much as one that scores worse lowers it.  (Subtracting its
    absolute value, as before, doubled the bar whenever the refit scored better.)  Draws
    without a defined AUC (no positive resampled) say nothing and are left out.
    """
    beyond = drop - refit
    beyond = beyond[np.isfinite(beyond)]
    return float(np.mean(beyond <= 0)) if beyond.size else 1.0


def _drop_oof(process: str, vl: ViewLead, settings: PrecursorSettings) -> np.ndarray | None:
    """Out-of-fold predictions of the explained model refitted without the process, or,
    for ``REFIT<k>``, refitted on everything with seed + 1 + k."""
    if process.startswith(REFIT):
        return model_oof(vl.samples, vl.folds, vl.model,
                         settings.seed + 1 + int(process.removeprefix(REFIT)))
    columns = vl.samples.summary_columns()
    process_of = dict(zip(vl.samples.features, vl.samples.processes, strict=True))
    drop = np.array([process_of[f] == process for f, _ in columns])
    if drop.all() or not drop.any():
        return None
    return model_oof(vl.samples, vl.folds, vl.model, settings.seed, drop)


def _drop_summary(
    results: list[tuple[ViewLead, np.ndarray | None]],
    passes: list[ViewLead],
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
        losses.append(float(weighted_roc_auc(y, vl.explain_oof, unit, vl.strata)[0]
                            - weighted_roc_auc(y, p_drop, unit, vl.strata)[0]))
        w = weights[:, gi]
        replicates.append(weighted_roc_auc(y, vl.explain_oof, w, vl.strata)
                          - weighted_roc_auc(y, p_drop, w, vl.strata))
    if not losses:
        return None, None, None
    stacked = np.stack(replicates)  # (leads, draws); a draw with no defined AUC stays NaN
    defined = np.isfinite(stacked)
    count = defined.sum(axis=0)
    mean = np.where(defined, stacked, 0.0).sum(axis=0) / np.maximum(count, 1)
    mean[count == 0] = np.nan
    return float(np.mean(losses)), _ci(mean), mean
