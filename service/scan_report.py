"""The scan's alert report: HTML, Markdown and PNG figures, written into a job directory."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from service.report import Figure, Section, Table, save_figure, write_report
from service.scan import ScanSummary


def write_scan_report(summary: ScanSummary, risks: dict[str, xr.DataArray], outdir: Path) -> Path:
    """Write report.html and report.md (what alert sinks send) with the figures."""
    outdir.mkdir(parents=True, exist_ok=True)
    headline = (f"{len(summary.findings)} new finding(s) in {', '.join(summary.ensembles)}"
                if summary.findings else f"nothing new in {', '.join(summary.ensembles)}")
    unreadable = [(m.ensemble, m.member, p) for m in summary.members for p in m.problems]
    sections = [
        Section("Summary", paragraphs=[
            headline + ".",
            f"{summary.files_read} files read, {summary.files_cached} taken from the cache; "
            f"risk model: {summary.risk_model or 'none promoted'}; alert threshold "
            f"{summary.alert_risk:.0%}; {summary.known_findings} earlier finding(s) still "
            "hold and are not repeated."], notes=summary.notes),
        Section("New findings", tables=[Table(
            ["kind", "ensemble", "member", "month", "what"],
            [(f.kind, f.ensemble, f.member or "", f.month or "", f.message)
             for f in summary.findings])] if summary.findings else [],
            paragraphs=[] if summary.findings else ["None."]),
    ]
    figures = [f for f in (_risk_timelines(summary, risks, outdir),
                           _processes(summary, outdir)) if f is not None]
    sections.append(Section("Risk and responsible processes", figures=figures, paragraphs=[
        "Processes are those the promoted model's training analysis ranked in its drivers "
        "view: where the excess freshwater came from in the runs that froze."]
        if summary.top_processes else []))
    sections.append(Section("Members", tables=[Table(
        ["ensemble", "member", "months", "last month", "risk", "froze", "first freeze"],
        [(m.ensemble, m.member, m.months, m.last_month or "",
          "" if m.risk is None else m.risk, "yes" if m.froze else "no", m.first_freeze or "")
         for m in summary.members])]))
    if unreadable:
        sections.append(Section("Unreadable files", tables=[Table(
            ["ensemble", "member", "problem"], unreadable)]))
    return write_report(outdir, f"esmwatch scan: {headline}", sections, markdown=True)


def _risk_timelines(summary: ScanSummary, risks: dict[str, xr.DataArray], outdir: Path
                    ) -> Figure | None:
    if not risks:
        return None
    flagged = {(f.ensemble, f.member) for f in summary.findings if f.member}
    fig, ax = plt.subplots(figsize=(10, 4))
    for name, risk in risks.items():
        years = np.array([t.year + (t.month - 0.5) / 12 for t in risk.time.values])
        for member in risk.member.values.astype(str):
            hot = (name, member) in flagged
            ax.plot(years, risk.sel(member=member), lw=1.4 if hot else 0.6,
                    color="C3" if hot else "C0", alpha=0.95 if hot else 0.4,
                    label=f"{member}" if hot else None)
    ax.axhline(summary.alert_risk, color="k", ls="--", lw=0.8, label="alert threshold")
    ax.set(xlabel="model year", ylabel="P(freeze onset within horizon)", ylim=(0, 1),
           title="Freeze risk per member (red: new finding)")
    ax.legend(fontsize=7, ncol=3)
    return save_figure(fig, outdir, "risk_timelines.png",
                       "Calibrated freeze risk per member from the promoted model; members "
                       "with a new finding in red, blank after a freeze onset")


def _processes(summary: ScanSummary, outdir: Path) -> Figure | None:
    rows = summary.top_processes
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    value = np.array([r["importance"] for r in rows])
    lo = np.array([r["ci"][0] for r in rows])
    hi = np.array([r["ci"][1] for r in rows])
    ax.barh(y, value, xerr=[value - lo, hi - value], capsize=3,
            color=["C3" if r.get("significant") else "C7" for r in rows])
    ax.set_yticks(y, [f"{r['process']} ({r.get('direction', '')})" for r in rows])
    ax.set(xlabel="importance (mean |SHAP| of the process)",
           title="Responsible processes (drivers view; red: significant)")
    return save_figure(fig, outdir, "processes.png",
                       "Processes the promoted model's analysis found responsible, with 90% CIs")
