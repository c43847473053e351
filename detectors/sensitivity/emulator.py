"""Emulators of a sampled PPE: choice by cross-validation, effects, bootstrap, SHAP and Sobol.

Inputs are the parameters scaled to ``u = (value - min) / (max - min)`` over each parameter's
range, so every parameter spans ``[0, 1]`` and Sobol indices are for uniform sampling of the
ranges.

- **Candidates** (:data:`EMULATORS`, plain metadata objects): ``linear`` (least squares),
  ``gp`` (Gaussian process: ARD RBF + linear + white-noise kernel, so a near-linear response
  is not pulled back to the mean at the edges of the design) and ``gbm``
  (HistGradientBoosting). A torch MLP is not among them: with tens of members it has more
  weights than data; the registry takes one more entry if a PPE ever needs it.
- **Choice**: K-fold cross-validated R^2 (out-of-fold predictions, pooled). The simplest
  candidate within ``cv_tolerance`` of the best wins (order of :data:`EMULATORS`), since a
  flexible emulator that is no better out of sample only adds variance to the effects.
- **Effect** of a parameter = the emulator's mean prediction with that parameter at the top of
  its range minus at the bottom, **averaged over the members' own values of the other
  parameters** (the partial-dependence difference). Averaging, rather than holding the others
  at their defaults, gives the effect over the whole sampled space the design was built to
  explore, needs no default member, and keeps the emulator inside the region where it has
  data.
- **CIs**: bootstrap over members; each replicate refits the chosen emulator (a GP restarts
  its hyperparameter search from the full-data optimum). Effect CIs are normal intervals
  with the bootstrap standard error (their level may be Bonferroni-adjusted, far in the
  tails where percentiles of a few hundred refits are noise).
- **SHAP**: ``shap.KernelExplainer`` with every one of the 2^p coalitions enumerated, which
  makes it exact (not sampled) Shapley values of the emulator for an interventional
  background: the members themselves (at most ``shap_background`` of them). Beyond 12
  parameters coalitions are sampled, and the result says so.
- **Sobol** first-order and total indices: SALib's Saltelli/Sobol sample (scrambled) through
  the emulator's mean prediction, ``sobol.analyze``; CIs are percentiles over the bootstrap
  refits (emulator uncertainty), falling back to SALib's own resampling CI without bootstrap.

GP fits run with one BLAS thread: on matrices of tens of rows a threaded BLAS is mostly
overhead (an order of magnitude slower on two cores).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import RegressorMixin, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, DotProduct, WhiteKernel
from sklearn.gaussian_process.kernels import ConstantKernel as Amplitude
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from ensembles.errors import ConfigurationError

log = logging.getLogger(__name__)
MAX_EXACT_SHAP = 12


def _gp(n_features: int, seed: int) -> RegressorMixin:
    # Length scales start at 0.3 of a range: started at 1, the search often stops in the
    # "all linear" optimum of a non-linear response (cross-validated R^2 0.45 vs 0.97 on
    # the Ishigami function).
    kernel = (Amplitude(1.0, (1e-3, 1e3)) * RBF(np.full(n_features, 0.3), (0.05, 100.0))
              + Amplitude(1e-2, (1e-4, 1e3)) * DotProduct(0.5, (1e-3, 1e2))
              + WhiteKernel(1e-2, (1e-10, 1e1)))
    return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=1,
                                    random_state=seed)


def _gbm(n_features: int, seed: int) -> RegressorMixin:
    return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=8,
                                         min_samples_leaf=3, random_state=seed)


def _linear(n_features: int, seed: int) -> RegressorMixin:
    return LinearRegression()


@dataclass(frozen=True)
class EmulatorKind:
    """A candidate emulator: name, one-line description, factory (n_features, seed)."""

    name: str
    description: str
    make: Callable[[int, int], RegressorMixin]


EMULATORS: dict[str, EmulatorKind] = {e.name: e for e in (
    EmulatorKind("linear", "least-squares linear regression", _linear),
    EmulatorKind("gp", "Gaussian process, ARD RBF + linear + white-noise kernel", _gp),
    EmulatorKind("gbm", "histogram gradient boosting", _gbm),
)}
"""Candidates, simplest first (the order breaks ties in the cross-validated choice)."""


def _fit(model: RegressorMixin, x: np.ndarray, y: np.ndarray) -> RegressorMixin:
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def _predict(model: RegressorMixin, x: np.ndarray) -> np.ndarray:
    with threadpool_limits(1):
        return np.asarray(model.predict(x), dtype=float)


@dataclass(frozen=True)
class CvScore:
    name: str
    r2: float
    rmse: float
    predicted: np.ndarray


def cross_validate(name: str, x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> CvScore:
    """Out-of-fold R^2 (pooled) and RMSE of one candidate."""
    n_splits = max(2, min(folds, len(y)))
    predicted = np.empty_like(y)
    for train, test in KFold(n_splits, shuffle=True, random_state=seed).split(x):
        model = _fit(EMULATORS[name].make(x.shape[1], seed), x[train], y[train])
        predicted[test] = _predict(model, x[test])
    sse = float(np.sum((predicted - y) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    return CvScore(name, 1.0 - sse / sst if sst > 0 else float("nan"),
                   float(np.sqrt(sse / len(y))), predicted)


@dataclass
class Emulator:
    """The chosen, fitted emulator of one setup's responses."""

    name: str
    model: RegressorMixin
    scores: dict[str, CvScore]
    x: np.ndarray
    y: np.ndarray
    seed: int

    @property
    def cv(self) -> CvScore:
        return self.scores[self.name]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _predict(self.model, x)

    def refit(self, x: np.ndarray, y: np.ndarray) -> RegressorMixin:
        """The same emulator fitted to other data (a GP starts from the fitted kernel)."""
        model = clone(self.model)
        if isinstance(model, GaussianProcessRegressor):
            model.set_params(kernel=self.model.kernel_, n_restarts_optimizer=0)
        return _fit(model, x, y)

    def describe(self) -> str:
        kernel = getattr(self.model, "kernel_", None)
        return f"{EMULATORS[self.name].description}" + (f"; fitted kernel {kernel}" if kernel
                                                        else "")


def choose_emulator(x: np.ndarray, y: np.ndarray, candidates: tuple[str, ...], folds: int,
                    tolerance: float, seed: int) -> Emulator:
    """Cross-validate every candidate, keep the simplest one within ``tolerance`` of the best."""
    unknown = [c for c in candidates if c not in EMULATORS]
    if unknown:
        raise ConfigurationError(f"unknown emulator(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(EMULATORS)}")
    if len(y) < max(4, x.shape[1] + 2):
        raise ConfigurationError(f"{len(y)} members cannot support an emulator of "
                                 f"{x.shape[1]} parameters (need at least {x.shape[1] + 2})")
    scores = {name: cross_validate(name, x, y, folds, seed) for name in candidates}
    finite = {n: s.r2 for n, s in scores.items() if np.isfinite(s.r2)}
    best = max(finite.values()) if finite else float("nan")
    ordered = [n for n in EMULATORS if n in candidates]
    name = next((n for n in ordered if n in finite and finite[n] >= best - tolerance),
                ordered[0])
    model = _fit(EMULATORS[name].make(x.shape[1], seed), x, y)
    log.info("emulator %s chosen (CV R^2 %s)", name,
             ", ".join(f"{n} {s.r2:.3f}" for n, s in scores.items()))
    return Emulator(name, model, scores, x, y, seed)


def main_effects(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Mean prediction with each parameter at ``u = 0`` and at ``u = 1``, others as in ``x``.

    Returns ``(low, high)``, each of length ``n_parameters``, from one vectorised prediction.
    """
    n, p = x.shape
    stacked = np.repeat(x[None, None, :, :], 2, axis=0).repeat(p, axis=1)  # (2, p, n, p)
    idx = np.arange(p)
    stacked[0, idx, :, idx] = 0.0
    stacked[1, idx, :, idx] = 1.0
    pred = predict(stacked.reshape(-1, p)).reshape(2, p, n).mean(axis=2)
    return pred[0], pred[1]


def sobol_problem(names: list[str]) -> dict:
    return {"num_vars": len(names), "names": list(names), "bounds": [[0.0, 1.0]] * len(names)}


def sobol_sample(names: list[str], n_base: int, seed: int) -> np.ndarray:
    """Saltelli/Sobol sample of ``n_base * (p + 2)`` points in the unit hypercube."""
    from SALib.sample import sobol as salib_sample

    if n_base < 2 or n_base & (n_base - 1):
        raise ConfigurationError(f"sobol base sample {n_base} must be a power of two")
    return salib_sample.sample(sobol_problem(names), n_base, calc_second_order=False,
                               scramble=True, seed=seed)


@dataclass(frozen=True)
class SobolIndices:
    s1: np.ndarray
    st: np.ndarray
    s1_conf: np.ndarray
    st_conf: np.ndarray


def sobol_indices(names: list[str], sample: np.ndarray, values: np.ndarray, level: float,
                  seed: int, resamples: int = 100) -> SobolIndices:
    """First-order and total indices (SALib); NaN where the output does not vary."""
    from SALib.analyze import sobol as salib_analyze

    p = len(names)
    if not np.isfinite(values).all() or np.ptp(values) <= 1e-12 * max(1.0, np.abs(values).max()):
        nan = np.full(p, np.nan)
        return SobolIndices(nan, nan, nan, nan)
    with np.errstate(all="ignore"):
        out = salib_analyze.analyze(sobol_problem(names), values, calc_second_order=False,
                                    num_resamples=resamples, conf_level=level, seed=seed)
    return SobolIndices(np.asarray(out["S1"]), np.asarray(out["ST"]),
                        np.asarray(out["S1_conf"]), np.asarray(out["ST_conf"]))


@dataclass(frozen=True)
class Bootstrap:
    """Effects and Sobol indices of every bootstrap refit, ``(n_boot, p)`` each."""

    effects: np.ndarray
    s1: np.ndarray
    st: np.ndarray


def bootstrap(emulator: Emulator, names: list[str], sample: np.ndarray, n_boot: int,
              level: float, seed: int) -> Bootstrap:
    """Resample members with replacement, refit, recompute effects and Sobol indices."""
    rng = np.random.default_rng([seed, 7])
    n, p = emulator.x.shape
    effects, s1, st = (np.full((n_boot, p), np.nan) for _ in range(3))
    for b in range(n_boot):
        pick = rng.integers(0, n, n)
        if np.unique(pick).size < min(n, p + 2):
            continue
        model = emulator.refit(emulator.x[pick], emulator.y[pick])
        low, high = main_effects(lambda u, m=model: _predict(m, u), emulator.x)
        effects[b] = high - low
        indices = sobol_indices(names, sample, _predict(model, sample), level, seed, resamples=2)
        s1[b], st[b] = indices.s1, indices.st
    return Bootstrap(effects, s1, st)


def normal_half_width(draws: np.ndarray, level: float) -> np.ndarray:
    """``z * bootstrap standard error`` per column: stable at the far tails that a
    Bonferroni-adjusted level asks for, where percentiles of a few hundred draws are not."""
    from scipy import stats

    finite = np.isfinite(draws).all(axis=1)
    if finite.sum() < 2:
        raise ConfigurationError("fewer than 2 usable bootstrap refits: no CI (raise "
                                 "n_bootstrap)")
    return stats.norm.ppf(0.5 + level / 2.0) * np.std(draws[finite], axis=0, ddof=1)


def percentile_ci(draws: np.ndarray, level: float) -> np.ndarray:
    """``(p, 2)`` percentile intervals over the first axis, NaN draws ignored."""
    tail = 100.0 * (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(draws, [tail, 100.0 - tail], axis=0).T


@dataclass(frozen=True)
class ShapValues:
    values: np.ndarray  # (n, p)
    base_value: float
    explainer: str
    additivity_error: float
    background: int


def shap_values(emulator: Emulator, max_background: int, seed: int) -> ShapValues:
    """SHAP values of every member under the emulator (exact up to 12 parameters).

    ``shap.KernelExplainer`` given all ``2^p`` coalitions solves the Shapley regression
    without sampling, so its values are the exact Shapley values for the background (checked
    against ``shap.explainers.Exact`` to 1e-14); it avoids the Exact explainer's numba
    compilation (~20 s per process).
    """
    import shap

    x = emulator.x
    p = x.shape[1]
    rng = np.random.default_rng([seed, 11])
    background = x if len(x) <= max_background else x[rng.choice(len(x), max_background,
                                                                 replace=False)]
    explainer = shap.KernelExplainer(emulator.predict, background)
    if p <= MAX_EXACT_SHAP:
        n_samples = 2**p
        label = ("shap.KernelExplainer, all 2^p coalitions enumerated: exact Shapley values "
                 "for an interventional background of the members")
    else:
        n_samples = 2048 + 2 * p
        label = f"shap.KernelExplainer, {n_samples} sampled coalitions (more than 12 parameters)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = np.asarray(explainer.shap_values(x, nsamples=n_samples, silent=True),
                            dtype=float).reshape(len(x), p)
    base = float(np.asarray(explainer.expected_value, dtype=float).reshape(-1)[0])
    error = float(np.max(np.abs(values.sum(axis=1) + base - emulator.predict(x))))
    return ShapValues(values, base, label, error, len(background))
