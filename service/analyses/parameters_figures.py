"""Figures of the parameters report: partial dependence, the top pair's map, the safe box."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from detectors.parameters.results import ParametersResult
from service.report import Figure, save_figure

REGION_COLOURS = ListedColormap(["#d9534f", "#5cb85c", "#f0ad4e"])  # ruled out, not, uncertain


def partial_dependence(result: ParametersResult, outdir: Path) -> Figure:
    """1-D partial dependence of P(freeze) on each parameter, with bootstrap bands."""
    rows = result.partial_dependence
    cols = min(3, len(rows))
    fig, axes = plt.subplots(
        math.ceil(len(rows) / cols),
        cols,
        figsize=(4 * cols, 3 * math.ceil(len(rows) / cols)),
        squeeze=False,
    )
    threshold = result.safe_region.threshold
    for ax, row in zip(axes.ravel(), rows, strict=False):
        ax.fill_between(row.values, row.low, row.high, alpha=0.3)
        ax.plot(row.values, row.p_freeze)
        ax.axhline(threshold, color="k", ls="--", lw=0.8)
        ax.set(xlabel=row.parameter, ylabel="P(freeze)", ylim=(0, 1))
    for ax in axes.ravel()[len(rows) :]:
        ax.axis("off")
    level = round(100 * result.safe_region.ci_level)
    return save_figure(
        fig,
        outdir,
        "partial_dependence.png",
        f"P(freeze) against each parameter, others at the members' values "
        f"(averaged), {level}% bootstrap band; dashed: threshold {threshold}",
    )


def pair_map(result: ParametersResult, outdir: Path) -> Figure | None:
    """P(freeze) over the top pair with the region classes and the members."""
    m = result.pair_map
    if m is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    p = np.array(m.p_freeze).T
    image = left.pcolormesh(
        m.x_values, m.y_values, p, vmin=0, vmax=1, cmap="viridis", shading="auto"
    )
    fig.colorbar(image, ax=left, label="P(freeze)")
    right.pcolormesh(
        m.x_values,
        m.y_values,
        np.array(m.region).T,
        cmap=REGION_COLOURS,
        vmin=0,
        vmax=2,
        shading="auto",
    )
    for ax in (left, right):
        for froze, marker in ((True, "x"), (False, "o")):
            pts = [(q.x, q.y) for q in m.members if q.froze == froze]
            if pts:
                ax.scatter(
                    *zip(*pts, strict=True),
                    marker=marker,
                    c="w" if ax is left else "k",
                    s=25,
                    label="froze" if froze else "did not freeze",
                )
        ax.set(xlabel=m.x, ylabel=m.y)
    left.legend(loc="upper right", fontsize=8)
    right.set_title("red: ruled out, green: not ruled out, orange: uncertain", fontsize=9)
    return save_figure(
        fig,
        outdir,
        "pair_map.png",
        f"Partial dependence of P(freeze) on {m.x} and {m.y} (members overlaid)"
        " and the region classes of that surface",
    )


def safe_fraction(result: ParametersResult, outdir: Path) -> Figure:
    """How much of the parameter box is ruled out, not ruled out and uncertain."""
    s = result.safe_region
    fig, ax = plt.subplots(figsize=(6, 1.6))
    left = 0.0
    for (name, value), colour in zip(s.fractions.items(), REGION_COLOURS.colors, strict=True):
        ax.barh(0, value, left=left, color=colour, label=f"{name} {value:.0%}")
        left += value
    ax.set(xlim=(0, 1), yticks=[], xlabel="fraction of the parameter box")
    ax.legend(ncol=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.6))
    return save_figure(
        fig,
        outdir,
        "safe_fraction.png",
        f"Safe (not ruled out) fraction of the box: {s.safe_fraction:.0%} "
        f"(threshold {s.threshold}, {s.n_points} Sobol points)",
    )
