"""Figures of a sensitivity analysis: offline vs coupled effects, emulator fit, Sobol, SHAP."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from detectors.sensitivity.results import SensitivityResult
from service.report import Figure, save_figure

SETUP_STYLE = {"offline": ("C0", "offline (land only)"), "coupled": ("C1", "coupled")}


def _errors(centre: np.ndarray, cis: list[tuple[float, float] | None]) -> np.ndarray:
    """``(2, n)`` error-bar lengths; a missing CI draws no bar."""
    lo = np.array([centre[k] - c[0] if c else 0.0 for k, c in enumerate(cis)])
    hi = np.array([c[1] - centre[k] if c else 0.0 for k, c in enumerate(cis)])
    return np.clip(np.vstack([lo, hi]), 0.0, None)


def effects(result: SensitivityResult, outdir: Path) -> Figure:
    """Offline and coupled effect of every parameter side by side; sign flips highlighted."""
    rows = result.parameters[::-1]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(8, 0.55 * max(len(rows), 3) + 1.2), layout="constrained")
    for k, row in enumerate(rows):
        if row.verdict == "sign-flip":
            ax.axhspan(k - 0.45, k + 0.45, color="C3", alpha=0.15, lw=0)
    for offset, setup in ((0.17, "offline"), (-0.17, "coupled")):
        color, label = SETUP_STYLE[setup]
        centre = np.array([getattr(r, setup).effect for r in rows])
        ax.errorbar(centre, y + offset, xerr=_errors(centre, [getattr(r, setup).ci for r in rows]),
                    fmt="o", color=color, capsize=3, label=label)
    ax.axvline(0, color="k", lw=0.8)
    for side in (-1, 1):
        ax.axvline(side * result.verdict_floor, color="grey", lw=0.6, ls=":")
    ax.set_yticks(y, [f"{r.parameter}\n{r.verdict}" for r in rows], fontsize=8)
    level = round(100 * result.settings.get("ci_level", 0.9))
    simultaneous = " simultaneous" if result.settings.get("simultaneous") else ""
    ax.set(xlabel=f"effect: high end minus low end ({result.target.units})",
           title=f"{result.target.feature}, {result.target.season} ({result.design} design)")
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, outdir, "effects.png",
                       f"Effect of each parameter offline and coupled with {level}%{simultaneous} "
                       "CIs; red "
                       "bands: sign flips (both CIs exclude zero); dotted: the smallest effect "
                       "that counts")


def emulator_fit(result: SensitivityResult, outdir: Path) -> Figure | None:
    """Cross-validated predictions against the members' responses, per setup."""
    if result.emulator is None:
        return None
    fits = result.emulator.fits
    fig, axes = plt.subplots(1, len(fits), figsize=(4.5 * len(fits), 4.2), squeeze=False,
                             layout="constrained")
    for ax, fit in zip(axes[0], fits, strict=True):
        actual = np.array([p.actual for p in fit.cv])
        predicted = np.array([p.predicted for p in fit.cv])
        ax.scatter(actual, predicted, s=14, color=SETUP_STYLE[fit.setup][0])
        span = [min(actual.min(), predicted.min()), max(actual.max(), predicted.max())]
        ax.plot(span, span, "k--", lw=0.8)
        r2 = "n/a" if fit.cv_r2 is None else f"{fit.cv_r2:.3f}"
        ax.set(xlabel=f"response ({result.target.units})", ylabel="out-of-fold prediction",
               title=f"{fit.setup}: {fit.model}, CV R² {r2}")
    return save_figure(fig, outdir, "emulator_fit.png",
                       "Emulator fit: each member's response against the chosen emulator's "
                       "prediction when the member was held out")


def sobol(result: SensitivityResult, outdir: Path) -> Figure | None:
    """First-order and total Sobol indices in both setups."""
    if not result.sobol:
        return None
    names = [p.parameter for p in result.parameters]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * max(len(names), 3) + 1.5), sharey=True,
                             layout="constrained")
    y = np.arange(len(names))[::-1]
    for ax, (key, title) in zip(axes, (("s1", "first-order S1"), ("st", "total ST")),
                                strict=True):
        for offset, setup in ((0.18, "offline"), (-0.18, "coupled")):
            rows = {r.parameter: r for r in result.sobol if r.setup == setup}
            centre = np.array([getattr(rows[n], key) or 0.0 if n in rows else 0.0
                               for n in names])
            cis = [getattr(rows[n], f"{key}_ci") if n in rows else None for n in names]
            color, label = SETUP_STYLE[setup]
            ax.barh(y + offset, centre, height=0.34, color=color, label=label,
                    xerr=_errors(centre, cis), capsize=2)
        ax.set(title=title, xlabel="share of the target's variance", xlim=(0, 1.05))
        ax.legend(fontsize=8)
    axes[0].set_yticks(y, names, fontsize=8)
    return save_figure(fig, outdir, "sobol.png",
                       "Sobol indices through the emulators (uniform over each parameter's "
                       "range) with bootstrap CIs: which parameters the target's spread comes "
                       "from in each setup")


def shap_summary(result: SensitivityResult, outdir: Path) -> Figure | None:
    """SHAP value of each member for each parameter, coloured by the parameter's value."""
    if not result.shap:
        return None
    names = [p.parameter for p in result.parameters]
    setups = [s for s in ("offline", "coupled") if any(r.setup == s for r in result.shap)]
    fig, axes = plt.subplots(1, len(setups), figsize=(6 * len(setups), 0.45 * len(names) + 1.6),
                             sharey=True, squeeze=False, layout="constrained")
    rng = np.random.default_rng(0)
    for ax, setup in zip(axes[0], setups, strict=True):
        rows = {r.parameter: r for r in result.shap if r.setup == setup}
        for k, name in enumerate(names[::-1]):
            if name not in rows:
                continue
            values = np.asarray(rows[name].values)
            raw = np.asarray(rows[name].parameter_values)
            scaled = (raw - raw.min()) / (np.ptp(raw) or 1.0)
            ax.scatter(values, k + rng.uniform(-0.25, 0.25, values.size), c=scaled, s=10,
                       cmap="coolwarm", vmin=0, vmax=1)
        ax.axvline(0, color="k", lw=0.8)
        ax.set(title=f"{setup}: SHAP values of the emulator",
               xlabel=f"contribution to the response ({result.target.units})")
    axes[0, 0].set_yticks(np.arange(len(names)), names[::-1], fontsize=8)
    return save_figure(fig, outdir, "shap.png",
                       "SHAP summary per setup: each dot a member, colour its parameter value "
                       "(blue low, red high); the spread is the parameter's influence and the "
                       "colour gradient its direction")
