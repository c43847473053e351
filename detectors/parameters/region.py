"""Where in the parameter box it is safe, and the smallest change from the defaults to get there.

Every number here is a statement about the emulator, with the emulator's uncertainty: each
bootstrap refit (:meth:`FreezeEmulator.draws`) gives one P(freeze) surface, and the band of
the refits at ``level`` is what "with confidence" means.

- **Safe region** (history-matching style), on a scrambled Sobol sample of the unit box: a
  point is ``ruled_out`` when the lower band is at or above the threshold (it freezes too
  often, with confidence), ``not_ruled_out`` when the upper band is below it (safe with
  confidence) and ``uncertain`` otherwise. The safe fraction is the ``not_ruled_out`` share.
- **Partial dependence**: P(freeze) with one (or two) parameters set on a grid and the others
  at the members' own values, averaged over the members; bands from the refits.
- **What-if**: from the default vector, each parameter alone is moved along its range; the
  smallest move (as a fraction of the range) at which the central P(freeze) falls below the
  threshold is that parameter's change. When no single parameter gets there, pairs are
  searched on a grid (smallest Euclidean move in the unit box). The best change and the best
  one using other parameters are reported, each with the P(freeze) band at the new setting
  and the spread of the move over the refits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.stats import qmc

from detectors.parameters.emulator import FreezeEmulator

CLASSES = ("ruled_out", "not_ruled_out", "uncertain")


def band(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile of the refits, per column."""
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(draws, [tail, 100.0 - tail], axis=0)
    return low, high


@dataclass(frozen=True)
class SafeRegion:
    fractions: dict[str, float]
    safe_fraction: float
    central_safe_fraction: float
    n_points: int


def safe_region(
    emulator: FreezeEmulator, threshold: float, level: float, n_points: int, seed: int
) -> SafeRegion:
    """Class fractions of a scrambled Sobol sample of the box (``n_points`` a power of 2)."""
    p = emulator.x.shape[1]
    points = qmc.Sobol(p, scramble=True, seed=seed).random(n_points)
    low, high = band(emulator.draws(points), level)
    central = emulator.predict(points)
    classes = np.where(
        low >= threshold, "ruled_out", np.where(high < threshold, "not_ruled_out", "uncertain")
    )
    fractions = {c: float(np.mean(classes == c)) for c in CLASSES}
    return SafeRegion(
        fractions, fractions["not_ruled_out"], float(np.mean(central < threshold)), n_points
    )


def _pd_points(x: np.ndarray, columns: tuple[int, ...], grid: np.ndarray) -> np.ndarray:
    """Members' rows with ``columns`` set to each grid row: ``(len(grid) * n, p)``."""
    stacked = np.repeat(x[None, :, :], len(grid), axis=0)
    for c, column in enumerate(columns):
        stacked[:, :, column] = grid[:, c][:, None]
    return stacked.reshape(-1, x.shape[1])


@dataclass(frozen=True)
class Dependence:
    grid: np.ndarray  # (g,) or (g, 2) scaled values
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def partial_dependence(
    emulator: FreezeEmulator, columns: tuple[int, ...], grid: np.ndarray, level: float
) -> Dependence:
    """PD of P(freeze) on ``columns`` at ``grid`` rows, averaged over the members."""
    grid = np.asarray(grid, float).reshape(len(grid), len(columns))
    n = len(emulator.x)
    points = _pd_points(emulator.x, columns, grid)
    mean = emulator.predict(points).reshape(len(grid), n).mean(axis=1)
    draws = emulator.draws(points).reshape(-1, len(grid), n).mean(axis=2)
    low, high = band(draws, level)
    return Dependence(grid, mean, low, high)


@dataclass(frozen=True)
class Change:
    """A what-if change of one or two parameters, in the unit box."""

    columns: tuple[int, ...]
    target: np.ndarray  # scaled values of ``columns`` after the change
    distance: float  # Euclidean move in the unit box
    p_freeze: float
    p_band: tuple[float, float]
    distance_band: tuple[float, float] | None
    confident: bool  # upper band below the threshold at the new setting


def _first_below(curves: np.ndarray, steps: np.ndarray, threshold: float) -> np.ndarray:
    """Per row of ``curves`` (P along ``steps``), the first step below threshold (NaN: none)."""
    below = curves < threshold
    first = np.argmax(below, axis=-1)
    return np.where(below.any(axis=-1), steps[first], np.nan)


def _single_moves(
    emulator: FreezeEmulator, default: np.ndarray, threshold: float, steps: int
) -> list[tuple[int, float, float]]:
    """``(column, signed move, distance)`` of every parameter whose lone move reaches safety."""
    found = []
    for j in range(len(default)):
        for end in (0.0, 1.0):
            path = np.linspace(default[j], end, steps)
            if np.ptp(path) == 0:
                continue
            points = np.repeat(default[None, :], steps, axis=0)
            points[:, j] = path
            distance = _first_below(emulator.predict(points), np.abs(path - default[j]), threshold)
            if np.isfinite(distance):
                found.append((j, float(np.sign(end - default[j]) * distance), float(distance)))
    best: dict[int, tuple[int, float, float]] = {}
    for move in sorted(found, key=lambda m: m[2]):
        best.setdefault(move[0], move)
    return sorted(best.values(), key=lambda m: m[2])


def _pair_moves(
    emulator: FreezeEmulator, default: np.ndarray, threshold: float, steps: int
) -> list[tuple[tuple[int, int], np.ndarray, float]]:
    """Smallest move of every pair of parameters that reaches safety (grid search)."""
    axis = np.linspace(0.0, 1.0, steps)
    a, b = np.meshgrid(axis, axis, indexing="ij")
    found = []
    for j, k in itertools.combinations(range(len(default)), 2):
        points = np.repeat(default[None, :], a.size, axis=0)
        points[:, j], points[:, k] = a.ravel(), b.ravel()
        safe = emulator.predict(points) < threshold
        if not safe.any():
            continue
        distance = np.hypot(a.ravel() - default[j], b.ravel() - default[k])
        pick = int(np.argmin(np.where(safe, distance, np.inf)))
        found.append(((j, k), points[pick, [j, k]], float(distance[pick])))
    return sorted(found, key=lambda m: m[2])


def _change(
    emulator: FreezeEmulator,
    default: np.ndarray,
    columns: tuple[int, ...],
    target: np.ndarray,
    distance: float,
    threshold: float,
    level: float,
    steps: int,
) -> Change:
    point = default.copy()
    point[list(columns)] = target
    draws = emulator.draws(point[None, :])[:, 0]
    low, high = band(draws[:, None], level)
    distance_band = None
    if len(columns) == 1:
        j = columns[0]
        end = 0.0 if target[0] < default[j] else 1.0
        path = np.linspace(default[j], end, steps)
        points = np.repeat(default[None, :], steps, axis=0)
        points[:, j] = path
        per_refit = _first_below(emulator.draws(points), np.abs(path - default[j]), threshold)
        reached = per_refit[np.isfinite(per_refit)]
        if len(reached) >= 2:
            lo, hi = band(reached[:, None], level)
            distance_band = (float(lo[0]), float(hi[0]))
    return Change(
        columns,
        np.asarray(target, float),
        distance,
        float(emulator.predict(point[None, :])[0]),
        (float(low[0]), float(high[0])),
        distance_band,
        bool(high[0] < threshold),
    )


@dataclass(frozen=True)
class WhatIf:
    default_p: float
    default_band: tuple[float, float]
    already_safe: bool
    best: Change | None
    alternative: Change | None


def what_if(
    emulator: FreezeEmulator,
    default: np.ndarray,
    threshold: float,
    level: float,
    steps: int = 201,
    pair_steps: int = 41,
) -> WhatIf:
    """The smallest change from ``default`` below ``threshold`` and the best alternative."""
    default = np.asarray(default, float)
    draws = emulator.draws(default[None, :])[:, 0]
    low, high = band(draws[:, None], level)
    p0 = float(emulator.predict(default[None, :])[0])
    if p0 < threshold:
        return WhatIf(p0, (float(low[0]), float(high[0])), True, None, None)
    options: list[Change] = []
    for j, move, distance in _single_moves(emulator, default, threshold, steps):
        options.append(
            _change(
                emulator,
                default,
                (j,),
                np.array([default[j] + move]),
                distance,
                threshold,
                level,
                steps,
            )
        )
    if len(options) < 2:
        used = {c.columns[0] for c in options}
        for columns, target, distance in _pair_moves(emulator, default, threshold, pair_steps):
            if not used & set(columns):
                options.append(
                    _change(emulator, default, columns, target, distance, threshold, level, steps)
                )
                break
    best = options[0] if options else None
    alternative = (
        next((c for c in options[1:] if not set(c.columns) & set(best.columns)), None)
        if best
        else None
    )
    return WhatIf(p0, (float(low[0]), float(high[0])), False, best, alternative)
