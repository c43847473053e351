"""Grouped cross-validation: folds by member, fold-wise standardisation, out-of-fold predictions.

Every model and baseline is judged on members it never saw: folds are grouped by member (and
configuration), stratified so each holds frozen members, and the seasonal climatology and
scaling are fitted on the training windows of each fold only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from joblib import Parallel
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from detectors import baselines
from detectors.models import get_model
from detectors.samples import SampleSet, Standardiser, summarise
from ensembles.errors import EsmwatchError


class AnalysisError(EsmwatchError):
    """The ensemble cannot support the analysis (e.g. no frozen member)."""


@dataclass
class Fold:
    train: np.ndarray
    test: np.ndarray
    scaler: Standardiser


def make_folds(samples: SampleSet, n_folds: int, seed: int) -> list[Fold]:
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
        out.append(Fold(train, test, Standardiser().fit(samples.subset(train))))
    return out


def fold_strata(samples: SampleSet, folds: list[Fold]) -> np.ndarray:
    """Stratum of each window for the stratified AUC: fold x configuration x window end.

    Only a positive and a negative scored by the same fold model at the same model time
    are compared (see :mod:`detectors.skill`).
    """
    fold = np.full(samples.y.size, -1)
    for k, f in enumerate(folds):
        fold[f.test] = k
    keys = np.char.add(np.char.add(fold.astype(str), "|"),
                       np.char.add(np.char.add(samples.configuration.astype(str), "|"),
                                   samples.end_index.astype(str)))
    return np.unique(keys, return_inverse=True)[1].ravel()


def fold_inputs(samples: SampleSet, fold: Fold, index: np.ndarray, kind: str) -> np.ndarray:
    seq = fold.scaler.transform(samples.subset(index))
    return seq if kind == "sequence" else summarise(seq, samples.rule.block_months)


def _oof(samples: SampleSet, folds: list[Fold], fit_predict: Callable) -> np.ndarray:
    p = np.full(samples.y.size, np.nan)
    for fold in folds:
        p[fold.test] = fit_predict(fold)
    return p


def model_oof(
    samples: SampleSet, folds: list[Fold], name: str, seed: int, drop: np.ndarray | None = None
) -> np.ndarray:
    spec = get_model(name)

    def fit_predict(fold: Fold) -> np.ndarray:
        x_train = fold_inputs(samples, fold, fold.train, spec.input)
        x_test = fold_inputs(samples, fold, fold.test, spec.input)
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


def baseline_oof(
    samples: SampleSet, salinity: SampleSet | None, folds: list[Fold]
) -> dict[str, np.ndarray]:
    """Each baseline's number mapped to a probability by a one-feature logistic regression.

    Class-balanced, like every classifier in the skill table, so that Brier scores compare
    like with like (an unweighted baseline would be scored on calibrated-to-prevalence
    probabilities, a classifier on balanced ones).
    """
    out: dict[str, np.ndarray] = {}
    for fold in folds:
        scaler = Standardiser().fit(salinity.subset(fold.train)) if salinity is not None else None
        train = _baseline_scores(samples, salinity, scaler, fold.train)
        test = _baseline_scores(samples, salinity, scaler, fold.test)
        for name, x in train.items():
            clf = LogisticRegression(class_weight="balanced").fit(x[:, None],
                                                                   samples.y[fold.train])
            out.setdefault(name, np.full(samples.y.size, np.nan))
            out[name][fold.test] = clf.predict_proba(test[name][:, None])[:, 1]
    return out


def n_processes(n_jobs: int | None, items: Sequence[object]) -> int:
    return max(1, min(n_jobs or os.cpu_count() or 1, len(items)))


def parallel(n_jobs: int | None, items: Sequence[object]) -> Parallel:
    """Independent passes (leads, drop tests) on separate processes.

    Every model trains single-threaded, so two cores give close to twice the speed; with
    one job everything runs in this process.
    """
    return Parallel(n_jobs=n_processes(n_jobs, items), backend="loky")
