"""Figures of a precursor analysis: what a developer looks at before reading the numbers."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from detectors.precursors.results import PrecursorResult
from service.report import Figure, save_figure

BASELINE_STYLE = {"salinity_level": "k--", "model_year": "k:", "ews_variance": "C7--",
                  "ews_ac1": "C7:"}


def skill_by_lead(result: PrecursorResult, outdir: Path) -> Figure:
    views = sorted({r.view for r in result.skill})
    fig, axes = plt.subplots(1, len(views), figsize=(6 * len(views), 4), sharey=True,
                             squeeze=False)
    for ax, view in zip(axes[0], views, strict=True):
        rows = [r for r in result.skill if r.view == view and r.roc_auc is not None]
        for k, model in enumerate(sorted({r.model for r in rows})):
            mine = sorted((r for r in rows if r.model == model), key=lambda r: r.lead_months)
            lead = np.array([r.lead_months for r in mine]) + 0.4 * (k - 3)
            auc = np.array([r.roc_auc for r in mine])
            lo = np.array([r.roc_auc_ci[0] if r.roc_auc_ci else np.nan for r in mine])
            hi = np.array([r.roc_auc_ci[1] if r.roc_auc_ci else np.nan for r in mine])
            style = BASELINE_STYLE.get(model, "-o")
            ax.errorbar(lead, auc, yerr=[auc - lo, hi - auc], fmt=style, capsize=2, label=model,
                        alpha=0.9)
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set(title=f"{view} view", xlabel="lead (months before onset)", ylabel="ROC AUC",
               ylim=(0, 1.02))
        ax.legend(fontsize=8, ncol=2)
    return save_figure(fig, outdir, "skill_by_lead.png",
                       "ROC AUC by lead time for every model and baseline (90% CIs over members)")


def process_importance(result: PrecursorResult, outdir: Path) -> Figure:
    views = sorted({p.view for p in result.processes})
    fig, axes = plt.subplots(1, len(views), figsize=(7.5 * len(views), 5), squeeze=False,
                             layout="constrained")
    for ax, view in zip(axes[0], views, strict=True):
        rows = [p for p in result.processes if p.view == view][::-1]
        y = np.arange(len(rows))
        imp = np.array([p.importance for p in rows])
        err = np.array([[p.importance - p.ci[0], p.ci[1] - p.importance] for p in rows]).T
        colors = ["C3" if p.significant else "C7" for p in rows]
        ax.barh(y, imp, xerr=err, color=colors, capsize=2)
        ax.set_yticks(y, [f"{p.process} ({p.role}{', ' + p.direction if p.significant else ''})"
                          for p in rows], fontsize=8)
        ax.set(title=f"{view} view: process importance", xlabel="mean |sum of SHAP| (log-odds)")
    return save_figure(fig, outdir, "process_importance.png",
                       "Process importance with 90% CIs; red = significant: beats the "
                       "permutation null (member series permuted at matched model times; "
                       "Bonferroni over processes); in the drivers view also needed: "
                       "removing it and refitting costs skill")


def top_features(result: PrecursorResult, outdir: Path, n: int = 15) -> Figure:
    views = sorted({f.view for f in result.features})
    fig, axes = plt.subplots(1, len(views), figsize=(7.5 * len(views), 5), squeeze=False,
                             layout="constrained")
    for ax, view in zip(axes[0], views, strict=True):
        rows = [f for f in result.features if f.view == view][:n][::-1]
        y = np.arange(len(rows))
        ax.barh(y, [f.importance for f in rows],
                xerr=np.array([[f.importance - f.ci[0], f.ci[1] - f.importance]
                               for f in rows]).T.reshape(2, -1), color="C0", capsize=2)
        ax.set_yticks(y, [f"{f.feature} @ {f.lag_months} mo" for f in rows], fontsize=8)
        ax.set(title=f"{view} view: top features by lag", xlabel="mean |SHAP| (log-odds)")
    return save_figure(fig, outdir, "top_features.png",
                       "SHAP summary: the most important features and lags before onset")


def lag_profiles(result: PrecursorResult, outdir: Path) -> Figure:
    views = sorted({p.view for p in result.processes})
    fig, axes = plt.subplots(1, len(views), figsize=(6 * len(views), 4), squeeze=False)
    for ax, view in zip(axes[0], views, strict=True):
        for p in [p for p in result.processes if p.view == view][:6]:
            lags = sorted(int(k) for k in p.lag_profile)
            ax.plot(lags, [p.lag_profile[str(k)] for k in lags], "-o", label=p.process)
        ax.set(title=f"{view} view: importance by lag", xlabel="months before onset",
               ylabel="mean |sum of SHAP|")
        ax.invert_xaxis()
        ax.legend(fontsize=8)
    return save_figure(fig, outdir, "lag_profiles.png",
                       "How far ahead each of the top processes carries information")


def freshwater_budget(result: PrecursorResult, outdir: Path) -> Figure:
    budget = result.budget
    terms = budget.ranking() if budget else []
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(terms), 4) + 1))
    y = np.arange(len(terms))[::-1]
    values = [t.anomaly.anomaly_msv for t in terms]
    ax.barh(y, values, color=["C3" if v > 0 else "C0" for v in values])
    for yi, t in zip(y, terms, strict=True):
        if t.anomaly.anomaly_ci:
            ax.plot(t.anomaly.anomaly_ci, [yi, yi], color="k", lw=1)
    ax.set_yticks(y, [t.source for t in terms], fontsize=8)
    ax.axvline(0, color="k", lw=0.8)
    years = budget.years_before_onset if budget else "?"
    ax.set(xlabel="frozen minus other members (mSv, 90% CI)",
           title=f"Freshwater budget terms in the {years} years before onset")
    return save_figure(fig, outdir, "freshwater_budget.png",
                       "Freshwater budget: how much more of each source arrived before onset in "
                       "members that froze (each pathway counted once)")


def member_timelines(features: xr.Dataset, result: PrecursorResult, outdir: Path,
                     risk: dict[str, np.ndarray] | None = None) -> Figure:
    """Lab Sea salinity (and risk where a risk model ran) per member, onsets marked."""
    onset = {m.member: m.first_freeze for m in result.members}
    name = next((n for n in ("so_upper_labsea", "sos_labsea") if n in features), None)
    fig, axes = plt.subplots(2 if risk else 1, 1, figsize=(10, 6 if risk else 3.5), sharex=True,
                             squeeze=False)
    years = np.array([t.year + (t.month - 0.5) / 12 for t in features.time.values])
    for member in features.member.values.astype(str):
        frozen = bool(onset.get(member))
        color = "C3" if frozen else "C0"
        if name:
            axes[0, 0].plot(years, features[name].sel(member=member), color=color, lw=0.7,
                            alpha=0.7)
        if risk and member in risk:
            axes[1, 0].plot(years, risk[member], color=color, lw=0.7, alpha=0.7)
        if frozen:
            year = int(onset[member][:4])
            for ax in axes[:, 0]:
                ax.axvline(year, color="C3", lw=0.5, ls=":")
    axes[0, 0].set(ylabel=f"{name} (g/kg)" if name else "", title="Members: red froze (onset "
                   "dotted), blue did not")
    if risk:
        axes[1, 0].set(ylabel="P(onset within horizon)", ylim=(0, 1))
    axes[-1, 0].set(xlabel="model year")
    return save_figure(fig, outdir, "member_timelines.png",
                       "Lab Sea upper-ocean salinity (and calibrated risk, where a risk model "
                       "was trained) per member with freeze onsets marked")
