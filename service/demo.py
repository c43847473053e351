"""``esmwatch demo``: the whole product on synthetic data, embedded, in a few minutes.

Synthetic CESM3-like ensembles → registered ensembles → a precursors job (which trains and
promotes the risk model) → a coupled-vs-offline sensitivity job → a nightly scan with its
alert → one index page linking every report.  Everything runs through the same job
machinery as production, with SQLite and no broker, under ``WORKDIR``.  The data are
written as post-processed time series (one file per variable and run): the same analysis
as on a short-term archive, with far fewer files to write on a laptop.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.job_types import register_all
from service.jobs import finished_result, submit_job
from service.report import Section, write_report
from service.settings import Settings, override_settings, validate_with_settings
from service.store import Conflict, EnsembleSpec, get_store
from synth.ensemble import synthesize

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]
FREEZE_DB = "demo-freeze-db"
PPE_REPLICATES, PPE_YEARS = 8, 16  # default-parameter runs per setup; years per run
# What the demo writes, measured on its own output (packed, deflated time series; small
# grids): per member-year of the freeze database, the PPE, and cache + database + results.
MB_PER_MEMBER_YEAR, PPE_MB, SERVICE_MB = 0.97, 101, 25


def planned_megabytes(members: int, years: int) -> int:
    """About how much ``esmwatch demo`` writes, so the user is told before it starts."""
    return round(members * years * MB_PER_MEMBER_YEAR + PPE_MB + SERVICE_MB)


@dataclass
class DemoOutcome:
    report: Path
    findings: list[str] = field(default_factory=list)
    truth: dict[str, Any] = field(default_factory=dict)


def demo_settings(workdir: Path) -> Settings:
    """Embedded settings confined to the demo directory (nothing of the user's is touched)."""
    workdir = workdir.absolute()
    return Settings(data_dir=workdir / "service", data_roots=[workdir / "data"],
                    cache_dir=workdir / "cache", broker_url=None, database_url=None)


def run_demo(workdir: Path, *, scenario: str, members: int, years: int,
             progress: Progress | None = None) -> DemoOutcome:
    """Run every step, reusing data already written by an earlier demo in ``workdir``."""
    step = progress or (lambda fraction, message: None)
    register_all()
    settings = demo_settings(workdir)
    data = workdir.absolute() / "data"
    freeze, ppe = data / "freeze", data / "ppe"
    if not (freeze / "truth.json").exists():
        step(0.0, f"writing {members} synthetic members x {years} years")
        synthesize(freeze, kind="freeze-database", scenario=scenario, members=members,
                   years=years, size="small", flavour="cesm3", layout="tseries", packed=True)
    if not (ppe / "truth.json").exists():
        step(0.25, "writing a coupled and an offline one-at-a-time PPE")
        synthesize(ppe, kind="ppe", design="oaat", members=PPE_REPLICATES, years=PPE_YEARS,
                   size="small", flavour="cesm3", layout="tseries", packed=True)
    with override_settings(settings):
        _register(settings, FREEZE_DB, "freeze-database", freeze)
        _register(settings, "demo-ppe-coupled", "ppe-coupled", ppe / "coupled")
        _register(settings, "demo-ppe-offline", "ppe-offline", ppe / "offline")
        step(0.3, "precursors job: features, classifiers, SHAP, risk model")
        precursors = _run(settings, "precursors", {"roots": [str(freeze)]})
        step(0.75, "sensitivity job: coupled vs offline effects")
        sensitivity = _run(settings, "sensitivity", {"coupled": [str(ppe / "coupled")],
                                                     "offline": [str(ppe / "offline")]})
        step(0.88, "nightly scan of the freeze database")
        scan = _run(settings, "scan", {"ensembles": [FREEZE_DB]})
    step(0.97, "writing the index page")
    results = [precursors, sensitivity, scan]
    findings = _findings(precursors, sensitivity, scan)
    report = _index(workdir.absolute(), settings, results, findings)
    truth = json.loads((freeze / "truth.json").read_text())
    return DemoOutcome(report=report, findings=findings, truth=truth)


def _register(settings: Settings, name: str, kind: str, root: Path) -> None:
    spec = validate_with_settings(EnsembleSpec, {
        "name": name, "kind": kind, "configuration": "demo: synthetic B1850C_MTso ne30_t232",
        "roots": [str(root)]}, settings, what="ensemble")
    with contextlib.suppress(Conflict):  # registered by an earlier demo in this directory
        get_store(settings).add_ensemble(spec)


def _run(settings: Settings, job_type: str, params: dict[str, Any]) -> dict[str, Any]:
    return finished_result(submit_job(job_type, params, settings=settings, wait=True), settings)


def _findings(precursors: dict[str, Any], sensitivity: dict[str, Any], scan: dict[str, Any]
              ) -> list[str]:
    drivers = [p for p in precursors["processes"] if p["view"] == "drivers"][:3]
    lines = [f"driver {p['process']}: importance {p['importance']:.2f} "
             f"[{p['ci'][0]:.2f}, {p['ci'][1]:.2f}], "
             f"{'significant' if p['significant'] else 'not significant'}, direction "
             f"{p['direction']}" for p in drivers]
    units = sensitivity["target"]["units"]
    lines += [f"{p['parameter']}: {p['class']} (offline "
              f"{p['offline']['effect']:+.2g}, coupled {p['coupled']['effect']:+.2g} {units})"
              for p in sensitivity["parameters"]
              if p["class"] not in ("consistent", "no-effect", "inconclusive")]
    lines.append(f"scan: {len(scan['findings'])} new finding(s), alert delivered to "
                 f"{', '.join((scan['alert'] or {}).get('delivered', [])) or 'no sink'}")
    return lines


def _index(workdir: Path, settings: Settings, results: list[dict[str, Any]],
           findings: list[str]) -> Path:
    links = [(f"{r['job']} report (job {r['job_id']})",
              (settings.job_results_dir(r["job_id"]) / "report.html").relative_to(workdir)
              .as_posix()) for r in results]
    write_report(workdir, "esmwatch demo", [
        Section("What ran", paragraphs=[
            "Synthetic CESM3-like ensembles were analysed by the same jobs production runs, "
            "embedded (SQLite, no broker). The planted causes are in data/freeze/truth.json "
            "and data/ppe/truth.json, which no analysis reads: compare them with the "
            "reports."],
            links=links),
        Section("Top findings", paragraphs=findings),
    ])
    return workdir / "report.html"
