"""Analysis jobs: a registry of job types, and how a job is submitted, run and recovered.

A job type is a small object (name, pydantic parameter model, function, queue) in one
registry; adding one is a parameter model, a result model, a function and a
:func:`register` call.  The lifecycle is the same for all of them:

1. :func:`submit_job` validates the parameters (paths must lie under the data roots),
   writes the job row, *then* dispatches it: to a thread of this process in the embedded
   mode, or as a Celery message whose task id is the job id.
2. :func:`run_job` claims the row with a compare-and-set update, keeps the lease alive from
   a heartbeat thread, runs the function into ``<results>/<job id>.tmp-<attempt>/``, renames
   that directory to ``<results>/<job id>/`` and records the outcome, still by CAS.  A second
   delivery of the same job finds it not claimable and returns without running.
3. :func:`reconcile` dispatches again what may have been lost (old queued jobs, running jobs
   whose lease expired) and removes abandoned attempt directories; re-dispatching is always
   safe because only one claim can win.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from detectors.contracts import ResultContract
from ensembles import __version__
from ensembles.errors import ConfigurationError, EsmwatchError
from service.kinds import QUEUES, JobState, QueueName, Scope
from service.result_files import RESULT_FILE, write_result
from service.settings import Settings, get_settings, validate_with_settings
from service.store import Job, NotFound, Store, get_store, public_message, retry_db, utcnow

log = logging.getLogger(__name__)

TMP_MARK = ".tmp-"  # <job id>.tmp-<attempt>: an attempt still being written, never a result

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=ResultContract)
T = TypeVar("T")


class UnknownJobType(ConfigurationError):
    """No job type of that name is registered (HTTP 422)."""


@dataclass
class JobContext:
    """What a job function gets besides its parameters."""

    job_id: str
    job_type: str
    workdir: Path  # write artifacts here; it becomes the result directory on success
    settings: Settings
    _lease: _Lease

    def progress(self, fraction: float, message: str) -> None:
        """Report progress (0..1) and renew the lease."""
        self._lease.renew(progress=fraction, message=message)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or taken over: long jobs may stop early."""
        return self._lease.lost.is_set()

    def provenance(self, params: BaseModel) -> dict[str, Any]:
        """The header fields a job adds to its analysis's result."""
        return {"job": self.job_type, "job_id": self.job_id, "esmwatch_version": __version__,
                "params": params.model_dump(mode="json")}

    def stamped(self, result: R, params: BaseModel) -> R:
        """The analysis result with this job's provenance in its header."""
        return result.model_copy(update=self.provenance(params))


@dataclass(frozen=True)
class JobType(Generic[P]):
    """A registered kind of job.

    Parameters
    ----------
    name
        What clients put in ``{"type": ...}``.
    params
        Pydantic model of the parameters; paths must be :data:`~service.settings.DataPath`.
    run
        ``run(params, ctx) -> ResultContract``; writes artifacts (not ``result.json``, which
        the runner writes once) into ``ctx.workdir`` and raises
        :class:`~ensembles.errors.EsmwatchError` for problems a user can fix.
    queue
        ``io`` (reading archives) or ``gpu`` (training); decides which workers run it.
    result
        The result model, so its JSON Schema can be published.
    scope
        What an API token needs to submit it: ``admin`` for jobs that act on everything
        registered (the scan), ``submit`` otherwise.
    """

    name: str
    params: type[P]
    run: Callable[[P, JobContext], ResultContract]
    queue: QueueName
    result: type[ResultContract]
    description: str = ""
    scope: Scope = "submit"

    def validate(self, params: dict[str, Any] | None, settings: Settings) -> P:
        """Parameters checked against the model and the data roots, before anything is read."""
        return validate_with_settings(self.params, params, settings,
                                      what=f"parameters of a {self.name} job")


_REGISTRY: dict[str, JobType[Any]] = {}


def register(job_type: JobType[Any]) -> JobType[Any]:
    """Add a job type; a name can be registered once."""
    if job_type.name in _REGISTRY:
        raise ConfigurationError(f"job type {job_type.name!r} is already registered")
    if job_type.queue not in QUEUES:
        raise ConfigurationError(f"job type {job_type.name!r}: queue must be one of {QUEUES}")
    _REGISTRY[job_type.name] = job_type
    return job_type


def unregister(name: str) -> None:
    """Remove a job type (tests register temporary ones)."""
    _REGISTRY.pop(name, None)


def job_types() -> dict[str, JobType[Any]]:
    """The registered job types (entry points call ``service.job_types.register_all``)."""
    return dict(_REGISTRY)


def get_job_type(name: str) -> JobType[Any]:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownJobType(f"unknown job type {name!r} (known: {known})") from None


# ---- submission and dispatch -----------------------------------------------------------


def submit_job(job_type: str, params: dict[str, Any] | None, *, settings: Settings | None = None,
               dedupe_key: str | None = None, wait: bool = False) -> str:
    """Validate, record and dispatch a job; return its id.

    Parameters
    ----------
    dedupe_key
        Submitting twice with the same key returns the first job and dispatches nothing.
    wait
        Embedded mode only: run the job in this thread before returning.

    Raises
    ------
    UnknownJobType, InvalidParameters
        Before any row is written or any input read.
    """
    settings = settings or get_settings()
    kind = get_job_type(job_type)
    validated = kind.validate(params, settings)
    job, created = get_store(settings).create_job(kind.name, validated.model_dump(mode="json"),
                                                  dedupe_key=dedupe_key)
    if created:
        dispatch(job.id, kind, settings, wait=wait)
    return job.id


def finished_result(job_id: str, settings: Settings) -> dict[str, Any]:
    """The ``result.json`` of a job that succeeded; a clear error naming it otherwise."""
    job = get_store(settings).get_job(job_id)
    if job.state != "succeeded":
        raise EsmwatchError(f"{job.type} job {job_id} {job.state}: {job.error or job.message}")
    return json.loads((settings.job_results_dir(job_id) / RESULT_FILE).read_text())


def dispatch(job_id: str, kind: JobType[Any], settings: Settings, *, wait: bool = False) -> None:
    """Hand a recorded job to whatever runs jobs; a failure leaves it queued, not lost.

    A broker that cannot be reached is logged, not raised: the row is already written and
    the reconciler dispatches it again later.
    """
    if settings.embedded:
        if wait:
            run_job(job_id, settings=settings)
        else:
            _embedded_pool().submit(_run_logged, job_id, settings)
        return
    from service.broker import RUN_TASK, producer  # Celery only where there is a broker

    try:
        producer(settings).send_task(RUN_TASK, args=[job_id], task_id=job_id,
                                      queue=settings.queue_name(kind.queue))
    except Exception as err:  # kombu raises several unrelated types for an unreachable broker
        log.warning("job %s stays queued, the broker did not take it (%s); the reconciler "
                    "will dispatch it again", job_id, err)


_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _embedded_pool() -> ThreadPoolExecutor:
    """One background thread: embedded jobs run one at a time, in submission order."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="esmwatch-job")
        return _pool


def drain_embedded(timeout_s: float | None = None) -> None:
    """Wait until every embedded job submitted so far has run.

    The pool runs jobs one at a time in submission order, so a no-op submitted now finishes
    after them. netCDF4/HDF5 is not thread-safe: a process that is about to read or write
    netCDF files itself (a test, a shutting-down server) must not do it beside a job thread.
    """
    with _lock:
        pool = _pool
    if pool is not None:
        pool.submit(lambda: None).result(timeout_s)


def _run_logged(job_id: str, settings: Settings) -> None:
    try:
        run_job(job_id, settings=settings)
    except Exception:  # nothing above this thread would report it
        log.exception("job %s: the embedded runner failed; the reconciler will retry it", job_id)


# ---- running ---------------------------------------------------------------------------


class _Lease:
    """Renews a claimed job's lease from a daemon thread while the job runs."""

    def __init__(self, store: Store, job_id: str, worker_id: str, interval_s: float) -> None:
        self.store, self.job_id, self.worker_id = store, job_id, worker_id
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._interval = interval_s
        self._thread = threading.Thread(target=self._beat, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            self.renew()

    def renew(self, *, progress: float | None = None, message: str | None = None) -> None:
        try:
            held = self.store.heartbeat(self.job_id, self.worker_id, progress=progress,
                                        message=message)
        except Exception as err:  # a database hiccup must not kill the job; the lease decides
            log.warning("job %s: heartbeat failed: %s", self.job_id, err)
            return
        if not held:
            self.lost.set()


def run_job(job_id: str, *, worker: str | None = None, settings: Settings | None = None) -> str:
    """Run a job if this call can claim it; the one entry point of every runner.

    Parameters
    ----------
    worker
        A label for logs and the ``worker_id`` column (host, Celery node); a unique suffix
        is added so that every call is its own lease holder.

    Returns
    -------
    str
        ``skipped`` (not claimable: finished, cancelled or running elsewhere), the state
        recorded (``succeeded``, ``failed``) or ``lost`` (lease lost before finishing).
    """
    settings = settings or get_settings()

    def retried(what: str, call: Callable[[], T]) -> T:
        return retry_db(call, what=f"job {job_id}: {what}", budget_s=settings.db_retry_s)

    store = retried("opening the store", lambda: get_store(settings))
    worker_id = f"{worker or f'{socket.gethostname()}:{os.getpid()}'}/{uuid.uuid4().hex[:8]}"
    if not retried("claim", lambda: store.claim_job(job_id, worker_id)) and not _holds(
            retried("reading it", lambda: _find(store, job_id)), worker_id, "running"):
        log.info("job %s not claimable by %s (finished, cancelled or running elsewhere); "
                 "delivery ignored", job_id, worker_id)
        return "skipped"
    job = retried("reading it", lambda: store.get_job(job_id))
    log.info("job %s (%s) attempt %d claimed by %s", job_id, job.type, job.attempts, worker_id)
    workdir = settings.job_results_dir(job_id).with_name(f"{job_id}{TMP_MARK}{job.attempts}")
    final = settings.job_results_dir(job_id)
    with _Lease(store, job_id, worker_id, settings.lease_seconds / 3) as lease:
        state: JobState = "succeeded"
        try:
            outcome = _execute(job.type, job.params,
                               JobContext(job_id, job.type, workdir, settings, lease), final)
        except EsmwatchError as err:
            state, outcome = "failed", {"message": "failed", "error": str(err)}
        except Exception as err:  # recorded on the job so that no failure is silent
            log.exception("job %s failed unexpectedly", job_id)
            state, outcome = "failed", {"message": "failed unexpectedly",
                                        "error": public_message(err)}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if retried("recording the outcome",
               lambda: store.finish_job(job_id, worker_id, state, **outcome)) or _holds(
            retried("reading it", lambda: _find(store, job_id)), worker_id, state):
        log.info("job %s %s", job_id, state)
        return state
    now = retried("reading it", lambda: store.get_job(job_id)).state
    log.warning("job %s: lease lost before finishing (job is now %s); this attempt's outcome "
                "is discarded", job_id, now)
    if now == "cancelled":
        shutil.rmtree(final, ignore_errors=True)
    return "lost"


def _find(store: Store, job_id: str) -> Job | None:
    try:
        return store.get_job(job_id)
    except NotFound:
        return None


def _holds(job: Job | None, worker_id: str, state: str) -> bool:
    """Whether this attempt's own update is already recorded.

    An update whose commit reached the database but whose reply was lost to an outage
    returns False when retried; the row then shows this attempt's unique worker id.
    """
    return job is not None and job.state == state and job.worker_id == worker_id


def _execute(job_type: str, params: dict[str, Any], ctx: JobContext, final: Path
             ) -> dict[str, Any]:
    """Run the job function into its attempt directory and publish it atomically."""
    kind = get_job_type(job_type)
    validated = kind.validate(params, ctx.settings)
    shutil.rmtree(ctx.workdir, ignore_errors=True)
    ctx.workdir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    ctx.workdir.mkdir(mode=0o700)  # results are the users' business only
    result = kind.run(validated, ctx)
    write_result(ctx.workdir, result)
    try:
        ctx.workdir.rename(final)  # atomic: a result directory is complete or absent
    except OSError:
        if not (final / RESULT_FILE).is_file():
            raise
        log.warning("job %s: an earlier attempt already published %s; keeping it",
                    ctx.job_id, final)
    artifacts = sorted(p.relative_to(final).as_posix() for p in final.rglob("*") if p.is_file())
    return {"message": result.summary(), "artifacts": artifacts, "result_path": str(final)}


# ---- recovery --------------------------------------------------------------------------

INCARNATION = uuid.uuid4().hex[:8]  # this worker's start; prefork children inherit it


def worker_label(node: str) -> str:
    """How a job run by Celery node ``node`` (``name@host``) in this process is labelled.

    The label says which incarnation of the node ran the job, so that the node, started
    again after a crash, can tell its predecessor's jobs from its own.
    """
    return f"{node}/{INCARNATION}:{os.getpid()}"


def recover_own_jobs(node: str, settings: Settings | None = None) -> list[str]:
    """Re-queue the running jobs an earlier incarnation of ``node`` held when it died.

    A worker that starts knows its predecessor under the same name is gone, so the leases
    it held are void: they are expired now and the jobs dispatched again (or failed, after
    their last attempt), instead of waiting out the lease and the next reconcile pass
    (300 s + 300 s by default).  Jobs of other workers are left alone.
    """
    settings = settings or get_settings()
    store = get_store(settings)
    mine = f"{node}/{INCARNATION}:"
    expired = []
    for job in store.running_jobs(worker_prefix=f"{node}/"):
        held_by = job.worker_id or ""
        if not held_by.startswith(mine) and store.expire_lease(job.id, held_by):
            expired.append(job.id)
    if expired:
        log.info("worker %s started: re-queueing %s, still leased to its previous run",
                 node, expired)
        reconcile(settings)
    return expired


@dataclass
class ReconcileReport:
    """What one :func:`reconcile` pass did."""

    dispatched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def reconcile(settings: Settings | None = None, *, wait: bool = False) -> ReconcileReport:
    """Re-dispatch jobs that may have lost their message or worker; fail hopeless ones.

    The broker's contents cannot be inspected reliably, so a queued job older than
    ``reconcile_after_s`` is simply dispatched again: if its message was alive after all,
    the second delivery finds the job claimed and does nothing.
    """
    settings = settings or get_settings()
    store = get_store(settings)
    report = ReconcileReport()
    for job in store.stale_jobs(
            queued_before=utcnow() - timedelta(seconds=settings.reconcile_after_s)):
        if job.state == "running" and job.attempts >= settings.max_attempts:
            if store.fail_lost_job(job.id):
                report.failed.append(job.id)
            continue
        try:
            kind = get_job_type(job.type)
        except UnknownJobType:
            log.warning("job %s: type %s is not registered here; left for a runner that has it",
                        job.id, job.type)
            continue
        dispatch(job.id, kind, settings, wait=wait)
        report.dispatched.append(job.id)
    report.removed = _remove_abandoned_attempts(store, settings)
    if report.dispatched or report.failed or report.removed:
        log.info("reconcile: dispatched %s, failed %s, removed %s", report.dispatched,
                 report.failed, report.removed)
    return report


def _remove_abandoned_attempts(store: Store, settings: Settings) -> list[str]:
    """Delete attempt directories no live attempt is writing to."""
    results = settings.results_dir
    if results is None or not results.is_dir():
        return []
    removed = []
    for path in results.glob(f"*{TMP_MARK}*"):
        job_id, _, attempt = path.name.partition(TMP_MARK)
        try:
            job = store.get_job(job_id)
            live = job.state == "running" and str(job.attempts) == attempt
        except NotFound:
            live = False
        if not live:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def submit_scheduled(job_type: str, settings: Settings | None = None) -> str | None:
    """Submit a scheduled job (the nightly scan) once per scheduled minute.

    Returns None, with a log line, when no such job type is registered yet, so a schedule
    can be configured before the job type exists.
    """
    if job_type not in job_types():
        log.info("scheduled %s job skipped: no such job type is registered", job_type)
        return None
    stamp = utcnow().strftime("%Y-%m-%dT%H:%M")
    return submit_job(job_type, {}, settings=settings, dedupe_key=f"schedule:{job_type}:{stamp}")


def result_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every registered job's result, keyed by job type (from its model)."""
    return {name: kind.result.model_json_schema(by_alias=True)
            for name, kind in job_types().items()}

