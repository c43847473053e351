"""Every job type in one place: features, ingest, precursors, consistency, sensitivity,
parameters, compare, scan.

Each is a parameter model, a result contract and a function over the analyses in
:mod:`service.analyses` and the scan in :mod:`service.scan`; the job lifecycle (claim,
lease, ``result.json`` written once, atomic publication) is :mod:`service.jobs`' business.
Importing this module registers nothing: the entry points (API, workers, CLI, demo, tests)
call :func:`register_all`, which is idempotent.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from detectors.compare import CompareResult
from detectors.consistency.results import ConsistencyResult
from detectors.consistency.test import ConsistencySettings
from detectors.contracts import ResultContract
from detectors.parameters.results import ParametersResult
from detectors.precursors.results import PrecursorResult
from detectors.precursors.settings import PrecursorSettings
from detectors.sensitivity.results import SensitivityResult
from ensembles.errors import ConfigurationError
from ensembles.features import build_features
from ensembles.filenames import discover
from service.alerts import AlertReport, resend_unsent, send_alert
from service.analyses.compare import CompareParams, run_compare
from service.analyses.consistency import run_consistency
from service.analyses.inputs import load_features
from service.analyses.parameters import ParametersParams, run_parameters
from service.analyses.parameters import resolve_inputs as resolve_parameter_tables
from service.analyses.sensitivity import SensitivityParams, resolve_inputs, run_sensitivity
from service.jobs import JobContext, JobType, job_types, register, run_job, submit_job
from service.kinds import TERMINAL_STATES
from service.limits import MAX_ENSEMBLES, MAX_ROOTS, EnsembleName
from service.model_registry import RISK_MODEL, load_promoted_risk, register_model
from service.scan import ScanSummary, mark_alerted, report_dir_files, scan
from service.scan_report import write_scan_report
from service.settings import DataPath, DataPaths
from service.store import Ensemble, Store, get_store

log = logging.getLogger(__name__)
INGEST_POLL_S = 1.0
TOP_PROCESSES = 6  # how many driver processes a registered model carries for alert reports


# ---- features --------------------------------------------------------------------------


class FeaturesParams(BaseModel):
    """Build the monthly regional features of every member under some roots."""

    model_config = ConfigDict(extra="forbid")
    roots: DataPaths = Field(description="Archives under the data roots.")
    output_name: str = Field("features.nc", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.nc$",
                             max_length=200, description="File name of the netCDF artifact.")


class FeaturesResult(ResultContract):
    job: Literal["features"] = "features"
    output: str
    n_members: int
    n_months: int
    n_features: int
    members: list[str]
    features: list[str]
    files_read: int
    files_cached: int
    problems: list[str]
    coverage: list[dict[str, str]] = Field(
        default_factory=list, description="per component and process: each feature built "
        "(from which variables and fallbacks) or missing (why); ensembles.coverage")
    streams: list[dict[str, str | int]] = Field(
        default_factory=list, description="per case and stream: files and what became of them")

    def summary(self) -> str:
        return (f"{self.n_members} members x {self.n_months} months x {self.n_features} "
                f"features, {len(self.problems)} problems")


def run_features(params: FeaturesParams, ctx: JobContext) -> FeaturesResult:
    """Features of the roots, cached per file; unusable files become listed problems."""
    built = load_features(params.roots, ctx.settings.cache_dir, ctx.progress,
                          ctx.settings.file_scheduler)
    dataset = built.dataset
    problems = [str(problem) for problem in built.problems]
    ctx.progress(0.9, f"writing {params.output_name}")
    dataset.to_netcdf(ctx.workdir / params.output_name)
    return FeaturesResult(
        **ctx.provenance(params), output=params.output_name,
        n_members=dataset.sizes["member"], n_months=dataset.sizes.get("time", 0),
        n_features=len(dataset.data_vars), members=[str(m) for m in dataset["member"].values],
        features=sorted(str(name) for name in dataset.data_vars), files_read=built.files_read,
        files_cached=built.files_cached, problems=problems,
        coverage=[asdict(row) for row in built.coverage()],
        streams=[asdict(row) for row in built.streams()])


# ---- precursors ------------------------------------------------------------------------


class PrecursorsParams(BaseModel):
    """Learn the precursors of the freeze in some archives and train the risk model."""

    model_config = ConfigDict(extra="forbid")
    roots: DataPaths = Field(description="Freeze-database / pertlim roots.")
    settings: PrecursorSettings = Field(default_factory=PrecursorSettings)
    configurations: list[Annotated[str, Field(max_length=500)]] | None = Field(
        None, max_length=MAX_ROOTS,
        description="Configuration of each root, in order; default: the configuration "
        "of the registered ensemble that has the root, else the case-name stem.")
    register_model: bool = Field(
        True, description="Add the risk model to the registry (the first one is promoted).")


class PrecursorsJobResult(PrecursorResult):
    """The precursor result, plus the registry version of the risk model it trained."""

    risk_model_version: int | None = None

    def summary(self) -> str:
        top = self.top_drivers(1)
        return (f"{self.n_members} members, {self.n_frozen} froze"
                + (f"; top driver {top[0].process}" if top else ""))


def _registered_configurations(roots: list[str], ctx: JobContext) -> list[str | None]:
    """The registry's configuration of each root (None where no registered ensemble has it)."""
    by_root = {str(Path(r).resolve()): e.configuration
               for e in get_store(ctx.settings).list_ensembles() for r in e.roots}
    return [by_root.get(str(Path(r).resolve())) for r in roots]


def run_precursors_job(params: PrecursorsParams, ctx: JobContext) -> PrecursorsJobResult:
    from service.analyses.precursors import run_precursors  # torch: only in jobs that train

    roots = [str(r) for r in params.roots]
    if params.configurations is not None and len(params.configurations) != len(roots):
        raise ConfigurationError(f"{len(params.configurations)} configurations for "
                                 f"{len(roots)} roots: give one per root")
    configurations = params.configurations or _registered_configurations(roots, ctx)
    built = load_features(params.roots, ctx.settings.cache_dir, ctx.progress,
                          ctx.settings.file_scheduler,
                          configurations=configurations if any(configurations) else None)
    result = run_precursors(built.dataset, ctx.workdir, params.settings,
                            [str(p) for p in built.problems], ctx.progress)
    version = None
    if params.register_model and (ctx.workdir / "risk_model").is_dir():
        version = _register_risk(result, ctx).version
    return PrecursorsJobResult(**ctx.stamped(result, params).model_dump(),
                               risk_model_version=version)


def _register_risk(result: PrecursorResult, ctx: JobContext) -> Any:
    """Register this job's risk model once, even if the job is run again after a crash."""
    store = get_store(ctx.settings)
    for row in store.list_models():
        if row.name == RISK_MODEL and row.metrics.get("job_id") == ctx.job_id:
            return row
    drivers = result.top_drivers(TOP_PROCESSES)
    reliability = (result.risk_model.model_dump(mode="json") if result.risk_model is not None
                   else {})
    return register_model(store, ctx.settings, RISK_MODEL, ctx.workdir / "risk_model", {
        "job_id": ctx.job_id, "ensembles": result.ensembles, "n_members": result.n_members,
        "n_frozen": result.n_frozen, "reliability": reliability,
        "top_processes": [{"process": p.process, "importance": p.importance, "ci": list(p.ci),
                           "significant": p.significant, "direction": p.direction}
                          for p in drivers]})




# ---- consistency -----------------------------------------------------------------------


class ConsistencyParams(BaseModel):
    """Is a candidate configuration distinguishable from its reference ensemble?"""

    model_config = ConfigDict(extra="forbid")
    reference: DataPaths = Field(description="Reference (pertlim) roots.")
    case: DataPaths = Field(description="The candidate's roots.")
    settings: ConsistencySettings = Field(default_factory=ConsistencySettings)


def run_consistency_job(params: ConsistencyParams, ctx: JobContext) -> ConsistencyResult:
    reference = load_features(params.reference, ctx.settings.cache_dir, ctx.progress,
                              ctx.settings.file_scheduler).dataset
    candidate = load_features(params.case, ctx.settings.cache_dir, None,
                              ctx.settings.file_scheduler).dataset
    ctx.progress(0.6, "testing")
    result = run_consistency(reference, candidate, ctx.workdir, params.settings)
    return ctx.stamped(result, params)




# ---- sensitivity -----------------------------------------------------------------------


class SensitivityJobParams(SensitivityParams):
    """Coupled vs offline sensitivity; every path (given or found) under the data roots."""

    coupled: DataPaths = Field(description="Roots of the coupled PPE.")
    offline: DataPaths = Field(description="Roots of the offline PPE.")
    params: DataPath | None = None
    offline_params: DataPath | None = None
    parameters: DataPath | None = None
    crosswalk: DataPath | None = None


def _check_tables(ctx: JobContext, files: dict[str, Any]) -> None:
    """Tables found beside the roots must lie under the data roots too."""
    for name, path in files.items():
        if path is not None:
            try:
                ctx.settings.check_data_path(path)
            except ValueError as err:
                raise ConfigurationError(f"{name}: {err}") from None


def run_sensitivity_job(params: SensitivityJobParams, ctx: JobContext) -> SensitivityResult:
    analysis = SensitivityParams.model_validate(params.model_dump())
    _check_tables(ctx, resolve_inputs(analysis))
    result = run_sensitivity(analysis, ctx.workdir, ctx.settings.cache_dir, ctx.progress,
                             ctx.settings.file_scheduler)
    return ctx.stamped(result, params)




# ---- parameters ------------------------------------------------------------------------


class ParametersJobParams(ParametersParams):
    """Which parameter settings freeze; every path (given or found) under the data roots."""

    roots: DataPaths = Field(description="Roots of the freeze database.")
    params: DataPath | None = None
    parameters: DataPath | None = None


def run_parameters_job(params: ParametersJobParams, ctx: JobContext) -> ParametersResult:
    analysis = ParametersParams.model_validate(params.model_dump())
    _check_tables(ctx, resolve_parameter_tables(analysis))
    result = run_parameters(analysis, ctx.workdir, ctx.settings.cache_dir, ctx.progress,
                            ctx.settings.file_scheduler)
    return ctx.stamped(result, params)


# ---- compare ---------------------------------------------------------------------------


class CompareJobParams(CompareParams):
    """Two ensembles (e.g. two model versions) compared; both under the data roots."""

    a: DataPaths = Field(description="Roots of ensemble A.")
    b: DataPaths = Field(description="Roots of ensemble B.")


def promoted_risk(ctx: JobContext) -> tuple[str, Any] | None:
    """``(label, model)`` of the promoted risk model, or None."""
    promoted = load_promoted_risk(get_store(ctx.settings), ctx.settings)
    return (f"risk v{promoted[0].version}", promoted[1]) if promoted else None


def run_compare_job(params: CompareJobParams, ctx: JobContext) -> CompareResult:
    result = run_compare(CompareParams.model_validate(params.model_dump()), ctx.workdir,
                         ctx.settings.cache_dir, ctx.progress, ctx.settings.file_scheduler,
                         promoted_risk(ctx))
    return ctx.stamped(result, params)


# ---- per-member ingestion --------------------------------------------------------------


class IngestParams(BaseModel):
    """Read one member's new or changed files into the feature cache."""

    model_config = ConfigDict(extra="forbid")
    roots: DataPaths
    case: str = Field(min_length=1, max_length=500, description="The member's case name.")


class IngestResult(ResultContract):
    job: Literal["ingest"] = "ingest"
    files_read: int
    files_cached: int
    problems: list[str]

    def summary(self) -> str:
        return f"{self.files_read} read, {self.files_cached} cached, {len(self.problems)} problems"


def run_ingest_job(params: IngestParams, ctx: JobContext) -> IngestResult:
    built = build_features(params.roots, cache_dir=ctx.settings.cache_dir,
                           scheduler=ctx.settings.file_scheduler, cases={params.case})
    return IngestResult(**ctx.provenance(params), files_read=built.files_read,
                        files_cached=built.files_cached,
                        problems=[str(p) for p in built.problems])




def ingest_members(store: Store, ctx: JobContext, ensembles: list[Ensemble]) -> list[str]:
    """One ingestion job per member on queue ``io``; returns when all have finished.

    Completion is tracked in the store (no chords).  Jobs still queued after
    ``ingest_steal_after_s`` are run here: the claim is a compare-and-set, so an io worker
    that picks one up at the same moment simply finds it taken.
    """
    ids = []
    for ensemble in ensembles:
        try:
            files, _ = discover(ensemble.roots)
            ids += [submit_job("ingest", {"roots": ensemble.roots, "case": case},
                               settings=ctx.settings,
                               dedupe_key=f"ingest:{ctx.job_id}:{ensemble.name}:{case}")
                    for case in sorted({f.case for f in files if f.case})]
        except Exception as err:  # the scan itself records this ensemble's failure
            log.warning("ensemble %s: members not ingested: %s", ensemble.name, err)
    started = time.monotonic()
    pending = set(ids)
    while pending:
        jobs = {job_id: store.get_job(job_id) for job_id in pending}
        pending = {i for i, job in jobs.items() if job.state not in TERMINAL_STATES}
        ctx.progress(0.05 + 0.45 * (1 - len(pending) / max(len(ids), 1)),
                     f"ingesting: {len(ids) - len(pending)} of {len(ids)} members done")
        if time.monotonic() - started >= ctx.settings.ingest_steal_after_s:
            for job_id in sorted(i for i in pending if jobs[i].state == "queued"):
                run_job(job_id, worker=f"scan {ctx.job_id}", settings=ctx.settings)
        if pending:
            time.sleep(INGEST_POLL_S)
    return ids


# ---- scan ------------------------------------------------------------------------------


class ScanParams(BaseModel):
    """Scan registered ensembles for new files, risk, freezes and failed consistency."""

    model_config = ConfigDict(extra="forbid")
    ensembles: list[EnsembleName] = Field(default_factory=list, max_length=MAX_ENSEMBLES,
                                          description="Registered ensemble names; all when "
                                                      "empty.")
    send_alerts: bool = Field(True, description="Send new findings to the alert sinks.")


class ScanJobResult(ResultContract, ScanSummary):
    job: Literal["scan"] = "scan"
    alert: dict[str, Any] | None = Field(None, description="delivery of this scan's alert")

    def summary(self) -> str:
        return (f"{len(self.findings)} new finding(s), {self.files_read} files read, "
                f"{self.files_cached} cached")


def run_scan_job(params: ScanParams, ctx: JobContext) -> ScanJobResult:
    store = get_store(ctx.settings)
    if params.send_alerts:
        for retried in resend_unsent(store, ctx.settings):  # sinks that were down last time
            log.info("alert %s resent: delivered %s, failed %s", retried.key,
                     retried.delivered, retried.failed)
    if not ctx.settings.embedded:  # with workers: one ingestion job per member first
        ensembles = ([store.get_ensemble(n) for n in params.ensembles] if params.ensembles
                     else store.list_ensembles())
        ingest_members(store, ctx, ensembles)
    found, risks = scan(store, ctx.settings, params.ensembles, ctx.progress)
    ctx.progress(0.92, "writing the alert report")
    write_scan_report(found, risks, ctx.workdir)
    alert = None
    if found.findings and params.send_alerts:
        keys = sorted(f.key for f in found.findings)
        report = AlertReport(
            key="scan:" + hashlib.sha256("\n".join(keys).encode()).hexdigest()[:20],
            title=f"esmwatch: {len(keys)} new finding(s) in {', '.join(found.ensembles)}",
            markdown=(ctx.workdir / "report.md").read_text(),
            summary={"findings": [f.model_dump(mode="json") for f in found.findings],
                     "job_id": ctx.job_id},
            files=report_dir_files(ctx.workdir))
        alert = send_alert(store, report, ctx.settings).model_dump(mode="json")
        mark_alerted(store, found.findings)
    return ScanJobResult(**ctx.provenance(params), **found.model_dump(), alert=alert)


def register_all() -> None:
    """Register every built-in job type once; entry points call this, imports do not."""
    if "features" in job_types():
        return
    for kind in _builtin():
        register(kind)


def _builtin() -> list[JobType[Any]]:
    return [
        JobType("features", FeaturesParams, run_features, queue="io", result=FeaturesResult,
                description="Monthly regional features (member x time) of CESM archives."),
        JobType("ingest", IngestParams, run_ingest_job, queue="io", result=IngestResult,
                description="One member's files into the feature cache (fanned out by scans)."),
        JobType("precursors", PrecursorsParams, run_precursors_job, queue="gpu",
                result=PrecursorsJobResult,
                description="Precursors of the Labrador Sea freeze, their processes, and a "
                            "calibrated risk model."),
        JobType("consistency", ConsistencyParams, run_consistency_job, queue="gpu",
                result=ConsistencyResult,
                description="pyCECT-style consistency test of a candidate ensemble."),
        JobType("sensitivity", SensitivityJobParams, run_sensitivity_job, queue="gpu",
                result=SensitivityResult,
                description="Coupled vs offline parameter sensitivity: effects, Sobol, SHAP, "
                            "verdicts."),
        JobType("parameters", ParametersJobParams, run_parameters_job, queue="gpu",
                result=ParametersResult,
                description="Which parameter settings freeze: P(freeze | parameters), SHAP, "
                            "Sobol, safe region, what-if, driver links."),
        JobType("compare", CompareJobParams, run_compare_job, queue="gpu", result=CompareResult,
                description="Two ensembles compared: freeze fraction (Fisher), time to onset "
                            "(log-rank), risk, shifted budget terms and processes."),
        # on the analysis queue: it waits for the io queue's ingestion jobs, so it must not
        # hold an io worker while doing so; it covers every registered ensemble: admin only
        JobType("scan", ScanParams, run_scan_job, queue="gpu", result=ScanJobResult,
                scope="admin",
                description="Nightly scan: new files -> features -> risk -> consistency -> "
                            "alerts."),
    ]
