"""Which parameters matter: exact Shapley values, interaction indices, Sobol, a permutation null.

- **Exact SHAP over parameters.** For every coalition ``S`` of parameters (all ``2^p``), the
  value of a member is the emulator's mean over a background of members with the parameters
  outside ``S`` taken from the background (the interventional value function); Shapley values
  are the weighted sums of marginal contributions. Enumerating the coalitions ourselves (rather
  than asking ``shap.KernelExplainer`` to) gives the exact **Shapley interaction index** of
  every pair from the same table of values at no extra cost, and avoids importing shap.
- **Two scales.** Importance is reported on the probability scale (mean |SHAP| in units of
  P(freeze)); interactions and the significance tests use the log-odds of the prediction,
  where a logistic model with main effects only has no interactions at all (on the
  probability scale the sigmoid alone would make every strong pair "interact").
- **Sobol** S1/ST of P(freeze) over the uniform box (SALib, through
  :mod:`detectors.sensitivity.emulator`); ``ST - S1`` is the parameter's share in
  interactions.
- **Permutation null over members.** The freeze labels are permuted across members, the
  chosen classifier is refitted **with its own hyperparameter search** and the statistics
  recomputed: a GP kernel tuned to the real labels would carry their chance structure into
  every permutation and make the null too narrow (measured: a nuisance parameter flagged in
  a null database). A parameter is significant when its mean |SHAP| (log-odds)
  beats the null's **maximum** over parameters in all but ``alpha`` of the permutations
  (single-step maxT, so the family of parameters is tested at ``alpha``); pairs likewise
  against the null's maximum over pairs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from math import factorial

import numpy as np

from ensembles.errors import ConfigurationError

MAX_EXACT = 10
"""Above this many parameters 2^p coalitions x members x background is too many."""
CLIP = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, CLIP, 1 - CLIP)
    return np.log(p / (1 - p))


def _coalitions(p: int) -> np.ndarray:
    """``(2^p, p)`` boolean membership; row index = bitmask."""
    return ((np.arange(2**p)[:, None] >> np.arange(p)[None, :]) & 1).astype(bool)


def coalition_values(
    predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean P and mean log-odds of every member under every coalition, ``(2^p, n)`` each."""
    n, p = x.shape
    if p > MAX_EXACT:
        raise ConfigurationError(f"{p} parameters: exact Shapley values are limited to {MAX_EXACT}")
    masks = _coalitions(p)
    nb = len(background)
    grid = np.where(masks[:, None, None, :], x[None, :, None, :], background[None, None, :, :])
    prob = predict(grid.reshape(-1, p)).reshape(len(masks), n, nb)
    return prob.mean(axis=2), _logit(prob).mean(axis=2)


def shapley(values: np.ndarray, p: int) -> np.ndarray:
    """Shapley values ``(n, p)`` from a coalition table ``(2^p, n)``."""
    masks = _coalitions(p)
    size = masks.sum(axis=1)
    out = np.zeros((values.shape[1], p))
    for j in range(p):
        without = np.flatnonzero(~masks[:, j])
        weight = np.array([factorial(s) * factorial(p - s - 1) for s in size[without]]) / factorial(
            p
        )
        out[:, j] = weight @ (values[without | (1 << j)] - values[without])
    return out


def interaction_index(values: np.ndarray, p: int) -> np.ndarray:
    """Shapley interaction index of every pair, ``(n, p, p)`` (symmetric, zero diagonal)."""
    masks = _coalitions(p)
    size = masks.sum(axis=1)
    out = np.zeros((values.shape[1], p, p))
    for j, k in itertools.combinations(range(p), 2):
        rest = np.flatnonzero(~masks[:, j] & ~masks[:, k])
        weight = np.array([factorial(s) * factorial(p - s - 2) for s in size[rest]]) / factorial(
            p - 1
        )
        both = (
            values[rest | (1 << j) | (1 << k)]
            - values[rest | (1 << j)]
            - values[rest | (1 << k)]
            + values[rest]
        )
        out[:, j, k] = out[:, k, j] = weight @ both
    return out


@dataclass(frozen=True)
class Explanation:
    """SHAP of the members under one fitted emulator."""

    shap: np.ndarray  # (n, p), probability scale
    shap_logit: np.ndarray  # (n, p), log-odds scale
    interactions: np.ndarray  # (n, p, p), log-odds scale
    base_value: float
    additivity_error: float

    @property
    def importance(self) -> np.ndarray:
        return np.abs(self.shap).mean(axis=0)

    @property
    def statistic(self) -> np.ndarray:
        """What the permutation null tests per parameter: mean |SHAP| on the log-odds."""
        return np.abs(self.shap_logit).mean(axis=0)

    @property
    def pair_statistic(self) -> np.ndarray:
        """Mean |interaction index| per pair ``(p, p)``."""
        return np.abs(self.interactions).mean(axis=0)


def explain(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> Explanation:
    """Exact SHAP and interaction indices of every member, background = the members."""
    p = x.shape[1]
    prob, logit = coalition_values(predict, x, x)
    phi = shapley(prob, p)
    full = predict(x)
    base = float(prob[0].mean())
    error = float(np.max(np.abs(phi.sum(axis=1) + prob[0] - full))) if len(x) else 0.0
    return Explanation(phi, shapley(logit, p), interaction_index(logit, p), base, error)


def directions(x: np.ndarray, shap: np.ndarray, floor: float = 1e-9) -> list[str]:
    """``+`` when a higher value raises P(freeze) (SHAP rises with the parameter), else ``-``;
    ``0`` when the parameter's SHAP does not vary."""
    out = []
    for j in range(x.shape[1]):
        if np.std(shap[:, j]) <= floor or np.std(x[:, j]) <= 0:
            out.append("0")
            continue
        slope = np.polyfit(x[:, j], shap[:, j], 1)[0]
        out.append("+" if slope > 0 else "-")
    return out


def _exceed(null: np.ndarray, stat: float) -> float:
    """Permutation p-value; a statistic within rounding of the null (a structural zero such
    as the interactions of a main-effects model) is not evidence."""
    tolerance = 1e-9 * max(1.0, abs(stat))
    return float((1 + np.sum(null >= stat - tolerance)) / (len(null) + 1))


@dataclass(frozen=True)
class NullTest:
    """maxT p-values of the parameters and of the pairs."""

    p_values: np.ndarray  # (p,)
    pair_p_values: np.ndarray  # (p, p), NaN on the diagonal
    null_max: np.ndarray  # (n_perm,) per-permutation max over parameters
    null_pair_max: np.ndarray
    n_permutations: int


def permutation_null(
    refit: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]],
    x: np.ndarray,
    y: np.ndarray,
    observed: Explanation,
    n_perm: int,
    seed: int,
) -> NullTest:
    """Refit on permuted labels ``n_perm`` times; maxT p-values over parameters and pairs.

    ``refit(y)`` returns the predict function of the chosen classifier fitted to ``(x, y)``.
    """
    rng = np.random.default_rng([seed, 13])
    p = x.shape[1]
    null_max = np.zeros(n_perm)
    null_pair = np.zeros(n_perm)
    upper = np.triu_indices(p, 1)
    for b in range(n_perm):
        permuted = y[rng.permutation(len(y))]
        predict = refit(permuted)
        _, logit = coalition_values(predict, x, x)
        null_max[b] = np.abs(shapley(logit, p)).mean(axis=0).max()
        if p > 1:
            null_pair[b] = np.abs(interaction_index(logit, p)).mean(axis=0)[upper].max()
    p_values = np.array([_exceed(null_max, s) for s in observed.statistic])
    pairs = np.full((p, p), np.nan)
    pair_stat = observed.pair_statistic
    for j, k in zip(*upper, strict=True):
        pairs[j, k] = pairs[k, j] = _exceed(null_pair, pair_stat[j, k])
    return NullTest(p_values, pairs, null_max, null_pair, n_perm)
