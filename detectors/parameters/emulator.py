"""P(freeze | parameters) from 20-100 members: candidates, member-grouped CV, bootstrap.

Inputs are the parameters scaled to the unit box (:meth:`ParameterInputs.scaled`).

- **Candidates** (:data:`CLASSIFIERS`, simplest first): ``logistic`` (main effects),
  ``logistic_interactions`` (main effects and every pairwise product) and ``gp`` (Gaussian
  process classifier, ARD RBF kernel, Laplace approximation). All logistic fits are
  L2-regularised: with tens of members and ``p + p(p-1)/2`` terms an unpenalised fit
  separates the classes and its probabilities run to 0 and 1.
- **Choice**: member-grouped, class-stratified K-fold CV, repeated with reshuffled folds
  (one row per member, so a member never sits in its own training fold; where several
  configurations exist the groups are configurations). Score = out-of-fold log loss; the
  simplest candidate within ``tolerance`` of the best wins, since a flexible classifier that is
  no better out of sample adds variance to every downstream number. Brier score and ROC AUC
  are reported beside it.
- **Uncertainty**: bootstrap over members; each replicate refits the chosen classifier (a GP
  keeps the full-data kernel, so a replicate is a refit of the latent function, not of the
  length scales). Percentiles of the replicates' P give the bands, the safe region and the
  what-if intervals.

Fits run with one BLAS thread: on tens of rows a threaded BLAS is mostly overhead.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.gaussian_process.kernels import RBF
from sklearn.gaussian_process.kernels import ConstantKernel as Amplitude
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures
from threadpoolctl import threadpool_limits

from ensembles.errors import ConfigurationError

log = logging.getLogger(__name__)
EPS = 1e-6


def _centre(u: np.ndarray) -> np.ndarray:
    return 2.0 * np.asarray(u, float) - 1.0


def _logistic(n_features: int, seed: int) -> ClassifierMixin:
    return make_pipeline(FunctionTransformer(_centre), LogisticRegression(C=1.0, max_iter=2000))


def _logistic_interactions(n_features: int, seed: int) -> ClassifierMixin:
    return make_pipeline(
        FunctionTransformer(_centre),
        PolynomialFeatures(2, interaction_only=True, include_bias=False),
        LogisticRegression(C=1.0, max_iter=2000),
    )


def _gp(n_features: int, seed: int) -> ClassifierMixin:
    kernel = Amplitude(4.0, (1e-2, 1e3)) * RBF(np.full(n_features, 0.5), (0.05, 100.0))
    return GaussianProcessClassifier(kernel, n_restarts_optimizer=0, random_state=seed)


@dataclass(frozen=True)
class ClassifierKind:
    """A candidate: name, one-line description, factory ``(n_features, seed)``."""

    name: str
    description: str
    make: Callable[[int, int], ClassifierMixin]


CLASSIFIERS: dict[str, ClassifierKind] = {
    c.name: c
    for c in (
        ClassifierKind("logistic", "L2 logistic regression on the parameters", _logistic),
        ClassifierKind(
            "logistic_interactions",
            "L2 logistic regression on the parameters and every pairwise product",
            _logistic_interactions,
        ),
        ClassifierKind("gp", "Gaussian process classifier, ARD RBF kernel (Laplace)", _gp),
    )
}
"""Candidates, simplest first (the order breaks ties in the cross-validated choice)."""


def fit(model: ClassifierMixin, x: np.ndarray, y: np.ndarray) -> ClassifierMixin:
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y.astype(int))


def probability(model: ClassifierMixin, x: np.ndarray) -> np.ndarray:
    """P(freeze) of rows ``x``."""
    with threadpool_limits(1):
        return np.asarray(model.predict_proba(np.atleast_2d(x))[:, 1], dtype=float)


@dataclass(frozen=True)
class CvScore:
    """Out-of-fold scores of one candidate, pooled over folds and averaged over repeats."""

    name: str
    log_loss: float
    brier: float
    roc_auc: float | None
    predicted: np.ndarray  # out-of-fold P of the first repeat


def cross_validate(
    name: str, x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, repeats: int, seed: int
) -> CvScore:
    losses, briers, aucs, first = [], [], [], None
    n_splits = max(2, min(folds, int(min(y.sum(), (~y).sum()))))
    for r in range(repeats):
        predicted = np.empty(len(y))
        splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed + r)
        for train, test in splitter.split(x, y, groups):
            model = fit(CLASSIFIERS[name].make(x.shape[1], seed), x[train], y[train])
            predicted[test] = probability(model, x[test])
        clipped = np.clip(predicted, EPS, 1 - EPS)
        losses.append(log_loss(y, clipped, labels=[0, 1]))
        briers.append(brier_score_loss(y, predicted))
        aucs.append(roc_auc_score(y, predicted))
        first = predicted if first is None else first
    return CvScore(
        name, float(np.mean(losses)), float(np.mean(briers)), float(np.mean(aucs)), first
    )


@dataclass
class FreezeEmulator:
    """The chosen, fitted classifier and its bootstrap replicates."""

    name: str
    model: ClassifierMixin
    scores: dict[str, CvScore]
    x: np.ndarray
    y: np.ndarray
    seed: int
    replicates: list[ClassifierMixin] = field(default_factory=list)

    @property
    def cv(self) -> CvScore:
        return self.scores[self.name]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return probability(self.model, x)

    def refit(self, x: np.ndarray, y: np.ndarray) -> ClassifierMixin:
        """The same classifier on other data (a GP keeps the fitted kernel)."""
        model = clone(self.model)
        if isinstance(model, GaussianProcessClassifier):
            model.set_params(kernel=self.model.kernel_, optimizer=None)
        return fit(model, x, y)

    def bootstrap(self, n_boot: int) -> None:
        """Refit on ``n_boot`` resamples of the members (both classes needed in each)."""
        rng = np.random.default_rng([self.seed, 5])
        n = len(self.y)
        self.replicates = []
        for _ in range(n_boot):
            pick = rng.integers(0, n, n)
            if self.y[pick].all() or not self.y[pick].any():
                continue
            self.replicates.append(self.refit(self.x[pick], self.y[pick]))
        if len(self.replicates) < 2:
            raise ConfigurationError("fewer than 2 usable bootstrap refits: raise n_bootstrap")

    def draws(self, x: np.ndarray) -> np.ndarray:
        """``(replicates, rows)`` P(freeze) of every bootstrap refit."""
        return np.stack([probability(m, x) for m in self.replicates])

    def describe(self) -> str:
        kernel = getattr(self.model, "kernel_", None)
        return CLASSIFIERS[self.name].description + (f"; fitted kernel {kernel}" if kernel else "")


def choose_classifier(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    candidates: tuple[str, ...],
    folds: int,
    repeats: int,
    tolerance: float,
    seed: int,
) -> FreezeEmulator:
    """Cross-validate every candidate, keep the simplest within ``tolerance`` of the best.

    Raises
    ------
    ConfigurationError
        Unknown candidates, or too few members of either class to cross-validate.
    """
    unknown = [c for c in candidates if c not in CLASSIFIERS]
    if unknown:
        raise ConfigurationError(
            f"unknown classifier(s) {', '.join(unknown)}; known: {', '.join(CLASSIFIERS)}"
        )
    y = np.asarray(y, bool)
    if min(y.sum(), (~y).sum()) < 2:
        raise ConfigurationError(
            f"{int(y.sum())} frozen and {int((~y).sum())} unfrozen members: "
            "P(freeze | parameters) needs at least 2 of each"
        )
    scores = {name: cross_validate(name, x, y, groups, folds, repeats, seed) for name in candidates}
    best = min(s.log_loss for s in scores.values())
    name = next(n for n in CLASSIFIERS if n in scores and scores[n].log_loss <= best + tolerance)
    model = fit(CLASSIFIERS[name].make(x.shape[1], seed), x, y)
    log.info(
        "classifier %s chosen (CV log loss %s)",
        name,
        ", ".join(f"{n} {s.log_loss:.3f}" for n, s in scores.items()),
    )
    return FreezeEmulator(name, model, scores, x, y, seed)
