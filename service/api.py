"""The HTTP API (FastAPI): submit and follow jobs, register ensembles, read models and alerts.

Everything under ``/api/v1`` needs a bearer token (``esmwatch token create``); ``/healthz``
and ``/metrics`` are public so that load balancers and Prometheus need no secret.  Errors
are JSON ``{"detail": ...}``: esmwatch's own errors map to 4xx with their one-line message,
an unreachable database to 503, and request bodies above ``max_body_bytes`` are refused
with 413 before they are read in full.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Body,
    Depends,
    FastAPI,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
)
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ensembles import __version__
from ensembles.errors import EsmwatchError
from service.broker import broker_status
from service.job_types import register_all
from service.jobs import UnknownJobType, reconcile, submit_job
from service.settings import InvalidParameters, Settings, get_settings, validate_with_settings
from service.store import (
    JOB_STATES,
    ApiToken,
    Conflict,
    EnsembleSpec,
    JobState,
    NotFound,
    Store,
    get_store,
    hash_token,
)

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
MAX_INT = 2**31 - 1  # larger numbers overflow a database INTEGER: a 422, not a 500
_STATUS = {InvalidParameters: 422, UnknownJobType: 422, NotFound: 404, Conflict: 409,
           EsmwatchError: 400}


# ---- response and request bodies ---------------------------------------------------------


class JobSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(description="A registered job type, e.g. features or precursors.")
    params: dict[str, Any] = Field(default_factory=dict)


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    type: str
    params: dict[str, Any]
    state: JobState
    attempts: int
    progress: float
    message: str
    error: str | None
    artifacts: list[str]
    created: datetime
    started: datetime | None
    finished: datetime | None
    heartbeat: datetime | None


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


class EnsembleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    kind: str
    configuration: str
    roots: list[str]
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("meta", "metadata"))
    created: datetime


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    version: int
    metrics: dict[str, Any]
    promoted: bool
    created: datetime


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    dedupe_key: str
    payload: dict[str, Any]
    sent_at: datetime | None
    sinks: list[str]


# ---- middleware ---------------------------------------------------------------------------


class BodySizeLimit:
    """Refuse request bodies above ``max_bytes`` with 413, declared or streamed.

    A declared ``Content-Length`` is checked up front; a chunked body is read up to the
    limit (at most ``max_bytes`` are ever held) and replayed to the application.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": f"request body larger than {self.max_bytes} bytes"},
                                status_code=413)
        await response(scope, receive, send)


class _JobStates:
    """Prometheus collector: jobs by state, read from the database at scrape time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("esmwatch_jobs", "Jobs in the database by state",
                                   labels=["state"])
        try:
            counts = get_store(self.settings).count_jobs_by_state()
        except SQLAlchemyError as err:
            log.warning("metrics: database unavailable: %s", err)
            return
        for state in JOB_STATES:
            family.add_metric([state], counts.get(state, 0))
        yield family


class _Metrics:
    """The app's own registry, so several apps (tests) never clash on metric names."""

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("esmwatch_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.submitted = Counter("esmwatch_jobs_submitted", "Jobs submitted through the API",
                                 ["type"], registry=self.registry)
        self.registry.register(_JobStates(settings))

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Count requests by route template (not raw path, which would explode labels)."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                route = getattr(scope.get("route"), "path", "unmatched")
                self.requests.labels(scope["method"], route, str(status)).inc()

        return counted


# ---- dependencies and routes --------------------------------------------------------------


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _store(request: Request) -> Store:
    """The database; an unreachable one raises OperationalError, answered with 503."""
    return get_store(request.app.state.settings)


SettingsDep = Annotated[Settings, Depends(_settings)]
Db = Annotated[Store, Depends(_store)]
_bearer = HTTPBearer(auto_error=False, description="A token from `esmwatch token create`.")


class _VerifiedTokens:
    """Tokens verified in the last ``ttl_s`` seconds, keyed by their sha256.

    Checking a token in the database cost about a third of a status request's CPU; under
    load that decided the latency.  Only successful checks are remembered, under the same
    hash the database is searched by (the token itself is never kept), so a token removed
    from the database stops working within ``ttl_s``.
    """

    def __init__(self, ttl_s: float = 30.0, max_entries: int = 1024) -> None:
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._entries: dict[str, tuple[float, ApiToken]] = {}
        self._lock = threading.Lock()

    def check(self, token: str, db: Store) -> ApiToken | None:
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(digest)
        if entry is not None and now < entry[0] and hmac.compare_digest(
                entry[1].token_hash, digest):
            return entry[1]
        record = db.check_token(token)
        if record is not None:
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[digest] = (now + self.ttl_s, record)
        return record


def _authenticated(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    request: Request, db: Db,
) -> ApiToken:
    token = request.app.state.tokens.check(credentials.credentials, db) if credentials else None
    if token is None:
        raise HTTPException(401, "missing or invalid bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    return token


api = APIRouter(prefix="/api/v1", dependencies=[Depends(_authenticated)])
public = APIRouter()


@api.post("/jobs", status_code=202, response_model=JobOut)
def create_job(submission: JobSubmission, request: Request, settings: SettingsDep, db: Db) -> Any:
    """Validate and queue a job; 422 if a parameter or path is not acceptable."""
    job_id = submit_job(submission.type, submission.params, settings=settings)
    request.app.state.metrics.submitted.labels(submission.type).inc()
    return db.get_job(job_id)


@api.get("/jobs", response_model=JobPage)
def list_jobs(db: Db, job_type: Annotated[str | None, Query(alias="type")] = None,
              state: JobState | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0) -> Any:
    """Newest first; filter by type and state."""
    items, total = db.list_jobs(job_type=job_type, state=state, limit=limit, offset=offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@api.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, db: Db) -> Any:
    return db.get_job(job_id)


@api.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, db: Db) -> Any:
    """Cancel a queued or running job; 409 if it already finished."""
    if not db.cancel_job(job_id):
        raise Conflict(f"job {job_id} is already {db.get_job(job_id).state}")
    return db.get_job(job_id)


@api.get("/jobs/{job_id}/report", response_class=FileResponse)
def job_report(job_id: str, settings: SettingsDep, db: Db) -> Any:
    return _artifact(settings, db, job_id, REPORT_FILE)


@api.get("/jobs/{job_id}/artifacts/{name:path}", response_class=FileResponse)
def job_artifact(job_id: str, name: str, settings: SettingsDep, db: Db) -> Any:
    """A file of the job's result directory; nothing outside it can be named."""
    return _artifact(settings, db, job_id, name)


@api.get("/ensembles", response_model=list[EnsembleOut])
def list_ensembles(db: Db) -> Any:
    return db.list_ensembles()


@api.post("/ensembles", status_code=201, response_model=EnsembleOut)
def add_ensemble(body: Annotated[dict[str, Any], Body()], settings: SettingsDep, db: Db) -> Any:
    """Register an ensemble; its roots must lie under the data roots."""
    return db.add_ensemble(validate_with_settings(EnsembleSpec, body, settings, what="ensemble"))


@api.get("/models", response_model=list[ModelOut])
def list_models(db: Db) -> Any:
    return db.list_models()


@api.post("/models/{name}/{version}/promote", response_model=ModelOut)
def promote_model(name: str, version: Annotated[int, Path(ge=1, le=MAX_INT)], db: Db) -> Any:
    """Make this version the one the next scans use; 404 if it does not exist."""
    return db.promote_model(name, version)


@api.get("/alerts", response_model=list[AlertOut])
def list_alerts(db: Db, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0) -> Any:
    return db.list_alerts(limit=limit, offset=offset)


@public.get("/healthz")
def healthz(response: Response, settings: SettingsDep) -> dict[str, str]:
    """Database and broker status; 503 when the database cannot be reached."""
    try:
        get_store(settings).ping()
        database = "ok"
    except SQLAlchemyError as err:
        log.warning("healthz: database unavailable: %s", err)
        database = "unavailable"
    broker = broker_status(settings)
    response.status_code = 200 if database == "ok" else 503
    healthy = database == "ok" and broker != "degraded"
    return {"status": "ok" if healthy else "degraded", "database": database, "broker": broker,
            "version": __version__}


@public.get("/metrics", include_in_schema=False)
def prometheus_metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (default: the process settings).

    In the embedded mode the app also runs the reconciler in a background thread while it
    serves, so jobs lost to a crash are picked up again without Celery beat.
    """
    settings = settings or get_settings()
    register_all()
    app = FastAPI(title="esmwatch", version=__version__, lifespan=_lifespan(settings),
                  description="Submit analyses of CESM ensembles and follow their results.")
    app.state.settings = settings
    app.state.metrics = metrics = _Metrics(settings)
    app.state.tokens = _VerifiedTokens()
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(metrics.middleware)
    for error, status in _STATUS.items():
        app.add_exception_handler(error, _error_handler(status))
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.include_router(api)
    app.include_router(public)
    return app


def _artifact(settings: Settings, db: Store, job_id: str, name: str) -> FileResponse:
    """Serve ``name`` from the job's results only if it resolves inside them."""
    job = db.get_job(job_id)
    base = settings.job_results_dir(job.id).resolve()
    target = (base / name).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        raise NotFound(f"job {job.id} has no artifact {name!r}")
    return FileResponse(target, filename=target.name)


def _error_handler(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, err: Exception) -> JSONResponse:
        content: dict[str, Any] = {"detail": str(err)}
        if isinstance(err, InvalidParameters):
            content["errors"] = err.errors
        return JSONResponse(content, status_code=status)

    return handler


async def _database_unavailable(_request: Request, err: Exception) -> JSONResponse:
    log.error("database unavailable: %s", err)
    return JSONResponse({"detail": "database unavailable; try again later"}, status_code=503)


def _lifespan(settings: Settings) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = threading.Event()
        if settings.embedded:
            threading.Thread(target=_reconcile_until, args=(settings, stop),
                             name="esmwatch-reconciler", daemon=True).start()
        yield
        stop.set()

    return lifespan


def _reconcile_until(settings: Settings, stop: threading.Event) -> None:
    """Reconcile now and every ``reconcile_interval_s`` until ``stop`` is set."""
    while True:
        try:
            reconcile(settings)
        except Exception:  # keep the loop alive through a database outage
            log.exception("reconcile failed; retrying in %d s", settings.reconcile_interval_s)
        if stop.wait(settings.reconcile_interval_s):
            return
