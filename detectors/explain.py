"""SHAP values per input feature (and per lag for sequences) for the registered models.

Every explanation is in **log-odds** (the logit of P(freeze)): the torch network's logit, the
boosting margin, the logistic regression's linear predictor. Log-odds are where the models are
additive, so ``values.sum() + expected_value == output`` holds exactly for each sample, and
process importances built by summing feature values stay meaningful. Probabilities would make
the same feature's contribution depend on every other feature.

The explainer is chosen by the type of the trained model, always an exact one:

- torch (``mlp``, ``cnn``): ``shap.DeepExplainer`` (DeepLIFT rescale with a background
  distribution) on a float64 copy of the logit network, additive to ~1e-12;
- ``gbm``: ``shap.TreeExplainer``, interventional, on the raw margin, additive to ~1e-7
  (the trees compare in float32);
- ``logistic``: ``shap.LinearExplainer`` with an ``Independent`` masker holding *every*
  background row (the default masker would sample 100), which is ``coef * (x - mean)``.

GradientExplainer is not used: it is sampled and not additive. :func:`kernel_crosscheck`
compares any of them with the model-agnostic KernelExplainer on a subsample.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shap
import torch
from scipy.stats import spearmanr

from detectors.models import (
    Classifier,
    GBMClassifier,
    LogisticClassifier,
    MarginClassifier,
    ModelSpec,
    TorchClassifier,
    check_inputs,
    get_model,
    torch_numerics,
)
from ensembles.errors import ConfigurationError

log = logging.getLogger(__name__)

SPACE = "log-odds"
ADDITIVITY_TOLERANCE = 1e-5


@dataclass
class Explanation:
    """SHAP values of one model on one set of samples.

    Attributes
    ----------
    values
        Same shape as the explained ``X``: (n, p) for summaries, (n, channels, lags) for
        sequences.
    expected_value
        Mean model output over the background, in ``space``.
    output
        Model output for each explained sample, in ``space``; ``values`` summed over every axis
        but the first, plus ``expected_value``, equals it.
    space
        ``"log-odds"`` for every explainer here.
    explainer
        Which SHAP explainer produced the values.
    """

    values: np.ndarray
    expected_value: float
    output: np.ndarray
    space: str
    explainer: str


def explain(model: Classifier, spec: ModelSpec | str, X_background: np.ndarray,
            X: np.ndarray, *, seed: int = 0, max_background: int | None = 100) -> Explanation:
    """Exact SHAP values of a trained model, in log-odds.

    Parameters
    ----------
    model
        A trained ``mlp``, ``cnn``, ``logistic`` or ``gbm`` classifier.
    spec
        Its registry entry (or name); says which input kind ``X`` must be.
    X_background
        Samples that define "no information" (typically training negatives and positives).
    X
        Samples to explain.
    seed
        Seeds the subsample of the background.
    max_background
        At most this many background rows are used (a seeded random subsample; ``None``: all).
        DeepExplainer's cost grows linearly with it and the expected value converges quickly.

    Raises
    ------
    ConfigurationError
        For a model with no exact explainer (e.g. a baseline), or inputs of the wrong rank.
    """
    spec = get_model(spec)
    X = check_inputs(X, spec.input, spec.name)
    background = _sample_rows(check_inputs(X_background, spec.input, spec.name),
                              max_background, np.random.default_rng(seed))
    for kind, method in _EXPLAINERS.items():
        if isinstance(model, kind):
            explanation = method(model, background, X)
            break
    else:
        raise ConfigurationError(
            f"no exact SHAP explainer for model {spec.name!r} ({type(model).__name__}); "
            f"explainable: {', '.join(k.__name__ for k in _EXPLAINERS)}")
    error = additivity_error(explanation)
    if error > ADDITIVITY_TOLERANCE:
        log.warning("%s values of %s miss additivity by %.2e", explanation.explainer,
                    spec.name, error)
    return explanation


def additivity_error(expl: Explanation) -> float:
    """Largest ``|sum of values + expected_value - output|`` over the explained samples."""
    total = expl.values.reshape(len(expl.values), -1).sum(axis=1) + expl.expected_value
    return float(np.abs(total - expl.output).max()) if len(total) else 0.0


def kernel_crosscheck(model: Classifier, spec: ModelSpec | str, X_background: np.ndarray,
                      X: np.ndarray, *, n_samples: int = 50, n_background: int = 50,
                      nsamples: int | str = "auto", seed: int = 0) -> dict[str, Any]:
    """Compare the fast explainer with KernelExplainer on a subsample, in the same space.

    Both explainers get the *same* background (a seeded sample of ``n_background`` rows), so
    their expected values agree and ``max_abs_diff`` measures the methods, not the
    backgrounds. KernelExplainer runs with ``l1_reg=False``: shap 0.51 defaults to keeping only
    10 features per sample, which would zero the rest. Sequences are flattened to
    channel × lag features for KernelExplainer.

    Returns
    -------
    dict
        ``n`` (samples explained), ``n_background``, ``explainer``, ``space``,
        ``spearman_mean_abs`` (rank correlation of mean |SHAP| per feature between the two),
        ``max_abs_diff`` (largest per-value difference, log-odds), ``seconds_fast`` and
        ``seconds_kernel``.
    """
    spec = get_model(spec)
    rng = np.random.default_rng(seed)
    rows = _sample_rows(check_inputs(X, spec.input, spec.name), n_samples, rng)
    background = _sample_rows(check_inputs(X_background, spec.input, spec.name),
                              n_background, rng)
    started = time.perf_counter()
    fast = explain(model, spec, background, rows, max_background=None)
    seconds_fast = time.perf_counter() - started

    shape = rows.shape[1:]
    margin = _margin(model)

    def flat_margin(flat: np.ndarray) -> np.ndarray:
        return margin(flat.reshape((-1, *shape)))

    started = time.perf_counter()
    kernel = shap.KernelExplainer(flat_margin, background.reshape(len(background), -1))
    kernel_values = np.asarray(kernel.shap_values(rows.reshape(len(rows), -1), nsamples=nsamples,
                                                  l1_reg=False, silent=True))
    seconds_kernel = time.perf_counter() - started

    fast_values = fast.values.reshape(len(rows), -1)
    rho = spearmanr(np.abs(fast_values).mean(axis=0), np.abs(kernel_values).mean(axis=0))
    return {"n": len(rows), "n_background": len(background), "explainer": fast.explainer,
            "space": fast.space, "spearman_mean_abs": float(rho.statistic),
            "max_abs_diff": float(np.abs(fast_values - kernel_values).max()),
            "seconds_fast": seconds_fast, "seconds_kernel": seconds_kernel}


def _deep(model: TorchClassifier, background: np.ndarray, X: np.ndarray) -> Explanation:
    """DeepExplainer on a private float64 CPU copy of the logit network.

    DeepExplainer hangs hooks and attributes on every layer, so it gets a copy; float64 turns
    its ~1e-6 float32 additivity error into rounding noise; the inputs are standardised as in
    training (an affine map per feature leaves SHAP values unchanged).
    """
    network = copy.deepcopy(model.require_network()).to(device="cpu", dtype=torch.float64).eval()
    reference = torch.as_tensor(model.standardise(background), dtype=torch.float64)
    x = torch.as_tensor(model.standardise(X), dtype=torch.float64)
    with torch_numerics(model.training.cpu_threads):
        explainer = shap.DeepExplainer(network, reference)
        values = np.asarray(explainer.shap_values(x, check_additivity=False))[..., 0]
        with torch.no_grad():
            output = network(x).squeeze(1).numpy()
    return Explanation(values=values, expected_value=float(np.ravel(explainer.expected_value)[0]),
                       output=output, space=SPACE, explainer="deep")


def _tree(model: GBMClassifier, background: np.ndarray, X: np.ndarray) -> Explanation:
    """Interventional TreeExplainer: exact Shapley values against the background rows."""
    explainer = shap.TreeExplainer(model.require_model(), data=background,
                                   feature_perturbation="interventional", model_output="raw")
    values = np.asarray(explainer.shap_values(X, check_additivity=False))
    return Explanation(values=values, expected_value=float(np.ravel(explainer.expected_value)[0]),
                       output=model.decision_function(X), space=SPACE, explainer="tree")


def _linear(model: LogisticClassifier, background: np.ndarray, X: np.ndarray) -> Explanation:
    """LinearExplainer with every background row in the masker, hence exact."""
    if model.coef_ is None:
        raise ConfigurationError("logistic model is not trained yet")
    masker = shap.maskers.Independent(background, max_samples=len(background))
    explainer = shap.LinearExplainer((model.coef_, model.intercept_), masker)
    values = np.asarray(explainer.shap_values(X))
    return Explanation(values=values, expected_value=float(np.ravel(explainer.expected_value)[0]),
                       output=model.decision_function(X), space=SPACE, explainer="linear")


_EXPLAINERS: dict[type, Callable[[Any, np.ndarray, np.ndarray], Explanation]] = {
    TorchClassifier: _deep,
    GBMClassifier: _tree,
    LogisticClassifier: _linear,
}


def _margin(model: Classifier) -> Callable[[np.ndarray], np.ndarray]:
    """The model's log-odds function, the space every explanation here is in."""
    if not isinstance(model, MarginClassifier):
        raise ConfigurationError(f"{type(model).__name__} exposes no log-odds (decision_function)")
    return model.decision_function


def _sample_rows(X: np.ndarray, k: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``k`` rows of ``X``, drawn without replacement, in their original order."""
    if k is None or len(X) <= k:
        return X
    return X[np.sort(rng.choice(len(X), size=k, replace=False))]
