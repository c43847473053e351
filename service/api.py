"""The HTTP API (FastAPI): submit and follow jobs, register ensembles, read models and alerts.

Everything under ``/api/v1`` needs a bearer token (``esmwatch token create``) carrying the
scope the endpoint states (:mod:`service.auth`); ``/healthz`` and ``/metrics`` are public
so that load balancers and Prometheus need no secret.  Every answer is JSON, errors
included: ``{"detail": ...}``, esmwatch's own errors as 4xx with their one-line message,
invalid requests as 422 listing ``errors`` (never echoing the input, which may not even be
serialisable), an unreachable database as 503, anything unexpected as 500 with a
``correlation_id`` that the server log holds too.  Request bodies above ``max_body_bytes``
are refused with 413 before they are read in full, and JSON bodies are parsed strictly
(:mod:`service.limits`: finite numbers, bounded nesting and lists).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
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
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ensembles import __version__
from ensembles.errors import EsmwatchError
from service.auth import UNAVAILABLE, BearerAuth, check_scope, require
from service.broker import broker_status
from service.job_types import register_all
from service.jobs import UnknownJobType, get_job_type, reconcile, submit_job
from service.kinds import JOB_STATES, JobState
from service.limits import ENSEMBLE_NAME, bounded_metadata, parse_json
from service.paths import confined_path
from service.settings import (
    MAX_ERRORS,
    InvalidParameters,
    Settings,
    get_settings,
    validate_with_settings,
)
from service.store import (
    ApiToken,
    Conflict,
    Ensemble,
    EnsembleSpec,
    EnsembleUpdate,
    NotFound,
    Store,
    get_store,
)

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
API_PREFIX = "/api/v1"
MAX_INT = 2**31 - 1  # larger numbers overflow a database INTEGER: a 422, not a 500
JobId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
Name = Annotated[str, Path(max_length=200, pattern=ENSEMBLE_NAME)]
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

    @classmethod
    def shown(cls, ensemble: Ensemble) -> EnsembleOut:
        """The ensemble as listed.  Roots or metadata out of bounds (a row stored before the
        bounds existed) are replaced by a note, so one bad row never breaks the list."""
        roots, meta, problems = ensemble.roots, ensemble.meta, []
        if not (isinstance(roots, list) and all(isinstance(root, str) for root in roots)):
            roots, problems = [], ["roots are not a list of paths"]
        try:
            bounded_metadata(meta if isinstance(meta, dict) else {"": meta})
        except ValueError as err:
            problems.append(str(err))
        if problems:
            meta = {"invalid": f"{'; '.join(problems)}: replace them with PATCH "
                               f"/api/v1/ensembles/{ensemble.name} or `esmwatch ensemble "
                               "update`"}
        return cls(name=ensemble.name, kind=ensemble.kind, configuration=ensemble.configuration,
                   roots=roots, metadata=meta, created=ensemble.created)


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    scopes: list[str]
    created: datetime
    last_used: datetime | None
    expires: datetime | None
    revoked: datetime | None


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


class _StrictJsonRequest(Request):
    """A request whose JSON body is parsed strictly and within bounds (422 otherwise)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = parse_json(await self.body(), what="request body")
            except json.JSONDecodeError:
                raise  # FastAPI answers 422 "JSON decode error" with the position
            except ValueError as err:
                raise HTTPException(422, str(err)) from None
        return self._json


class StrictJsonRoute(APIRoute):
    """Routes that hand their handler a :class:`_StrictJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict


class CorrelationId:
    """Give every request an id, sent back as ``X-Correlation-ID`` and logged with errors."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["correlation_id"] = correlation

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"x-correlation-id", correlation.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


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
Reader = Depends(require("read"))
Admin = Depends(require("admin"))

api = APIRouter(prefix=API_PREFIX, route_class=StrictJsonRoute)
public = APIRouter()


def _links(**links: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """OpenAPI links: what a client (or a stateful fuzzer) can do next with an answer."""
    return {"links": {name: {"operationId": target, **values}
                      for name, (target, values) in links.items()}}


@api.post("/jobs", status_code=202, response_model=JobOut, operation_id="create_job",
          responses={202: _links(
              GetJob=("get_job", {"parameters": {"job_id": "$response.body#/id"}}),
              CancelJob=("cancel_job", {"parameters": {"job_id": "$response.body#/id"}}),
              JobReport=("job_report", {"parameters": {"job_id": "$response.body#/id"}}),
              ListJobs=("list_jobs", {"parameters": {"type": "$response.body#/type"}}))})
def create_job(submission: JobSubmission, request: Request, settings: SettingsDep, db: Db,
               token: Annotated[ApiToken, Depends(require(None))]) -> Any:
    """Validate and queue a job; 422 if a parameter or path is not acceptable.

    Needs the ``submit`` scope; a scan covers every registered ensemble, so it needs
    ``admin`` instead.
    """
    check_scope(token, get_job_type(submission.type).scope)
    job_id = submit_job(submission.type, submission.params, settings=settings)
    request.app.state.metrics.submitted.labels(submission.type).inc()
    return db.get_job(job_id)


@api.get("/jobs", response_model=JobPage, dependencies=[Reader], operation_id="list_jobs")
def list_jobs(db: Db, job_type: Annotated[str | None, Query(
                  alias="type", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")] = None,
              state: JobState | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0) -> Any:
    """Newest first; filter by type and state."""
    items, total = db.list_jobs(job_type=job_type, state=state, limit=limit, offset=offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@api.get("/jobs/{job_id}", response_model=JobOut, dependencies=[Reader], operation_id="get_job")
def get_job(job_id: JobId, db: Db) -> Any:
    return db.get_job(job_id)


@api.post("/jobs/{job_id}/cancel", response_model=JobOut, operation_id="cancel_job",
          dependencies=[Depends(require("submit"))])
def cancel_job(job_id: JobId, db: Db) -> Any:
    """Cancel a queued or running job; 409 if it already finished."""
    if not db.cancel_job(job_id):
        raise Conflict(f"job {job_id} is already {db.get_job(job_id).state}")
    return db.get_job(job_id)


@api.get("/jobs/{job_id}/report", response_class=FileResponse, dependencies=[Reader],
         operation_id="job_report")
def job_report(job_id: JobId, settings: SettingsDep, db: Db) -> Any:
    return _artifact(settings, db, job_id, REPORT_FILE)


@api.get("/jobs/{job_id}/artifacts/{name:path}", response_class=FileResponse,
         dependencies=[Reader])
def job_artifact(job_id: JobId, name: str, settings: SettingsDep, db: Db) -> Any:
    """A file of the job's result directory; nothing outside it can be named."""
    return _artifact(settings, db, job_id, name)


@api.get("/ensembles", response_model=list[EnsembleOut], dependencies=[Reader],
         operation_id="list_ensembles")
def list_ensembles(db: Db) -> Any:
    return [EnsembleOut.shown(ensemble) for ensemble in db.list_ensembles()]


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """Publish ``model`` as the request body of an endpoint that validates it itself."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


_ENSEMBLE_NAME = {"name": "$response.body#/name"}


@api.post("/ensembles", status_code=201, response_model=EnsembleOut, dependencies=[Admin],
          openapi_extra=_schema(EnsembleSpec), responses={201: _links(
              ListEnsembles=("list_ensembles", {}),
              UpdateEnsemble=("update_ensemble", {"parameters": _ENSEMBLE_NAME}),
              RemoveEnsemble=("remove_ensemble", {"parameters": _ENSEMBLE_NAME}),
              ScanEnsemble=("create_job", {"requestBody": {
                  "type": "scan", "params": {"ensembles": ["$response.body#/name"],
                                             "send_alerts": False}}}))})
def add_ensemble(body: Annotated[dict[str, Any], Body()], settings: SettingsDep, db: Db) -> Any:
    """Register an ensemble; its roots must lie under the data roots, and the reference a
    candidate names (``metadata.reference``) must be registered."""
    return db.add_ensemble(validate_with_settings(EnsembleSpec, body, settings, what="ensemble"))


@api.patch("/ensembles/{name}", response_model=EnsembleOut, dependencies=[Admin],
           openapi_extra=_schema(EnsembleUpdate), operation_id="update_ensemble",
           responses={200: _links(ListEnsembles=("list_ensembles", {}))})
def update_ensemble(name: Name, body: Annotated[dict[str, Any], Body()], settings: SettingsDep,
                    db: Db) -> Any:
    """Replace the fields given (kind, configuration, roots, metadata) of an ensemble."""
    change = validate_with_settings(EnsembleUpdate, body, settings, what="ensemble update")
    return db.update_ensemble(name, change)


@api.delete("/ensembles/{name}", status_code=204, dependencies=[Admin],
            operation_id="remove_ensemble",
            responses={204: _links(ListEnsembles=("list_ensembles", {}))})
def remove_ensemble(name: Name, db: Db) -> Response:
    """Forget an ensemble (its files are untouched); 404 if it is not registered."""
    db.remove_ensemble(name)
    return Response(status_code=204)


@api.get("/models", response_model=list[ModelOut], dependencies=[Reader])
def list_models(db: Db) -> Any:
    return db.list_models()


@api.post("/models/{name}/{version}/promote", response_model=ModelOut, dependencies=[Admin])
def promote_model(name: Name, version: Annotated[int, Path(ge=1, le=MAX_INT)], db: Db) -> Any:
    """Make this version the one the next scans use; 404 if it does not exist."""
    return db.promote_model(name, version)


@api.get("/alerts", response_model=list[AlertOut], dependencies=[Reader])
def list_alerts(db: Db, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0) -> Any:
    return db.list_alerts(limit=limit, offset=offset)


@api.get("/tokens", response_model=list[TokenOut], dependencies=[Admin])
def list_tokens(db: Db) -> Any:
    """Every token (never the token itself): scopes, expiry, last use, revocation."""
    return db.list_tokens()


@api.post("/tokens/{token}/revoke", response_model=list[TokenOut], dependencies=[Admin])
def revoke_token(token: Annotated[str, Path(max_length=200, pattern=r"^[^\x00]+$",
                                            description="A token's id or name.")],
                 db: Db) -> Any:
    """Revoke a token by id, or every live token of a name; it is refused from now on."""
    return db.revoke_tokens(token)


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
    # redirect_slashes off: Starlette built the redirect's Location from the Host header
    app = FastAPI(title="esmwatch", version=__version__, lifespan=_lifespan(settings),
                  redirect_slashes=False,
                  description="Submit analyses of CESM ensembles and follow their results.")
    app.state.settings = settings
    app.state.metrics = metrics = _Metrics(settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(BearerAuth, prefix=API_PREFIX)  # outside: no body read before it
    app.add_middleware(metrics.middleware)
    app.add_middleware(CorrelationId)
    for error, status in _STATUS.items():
        app.add_exception_handler(error, _error_handler(status))
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(api)
    app.include_router(public)
    return app


def _artifact(settings: Settings, db: Store, job_id: str, name: str) -> FileResponse:
    """Serve ``name`` from the job's results only if it resolves inside them."""
    job = db.get_job(job_id)
    try:
        target = confined_path(name, [settings.job_results_dir(job.id)],
                               where="the job's results", require="file")
    except ValueError as err:
        raise NotFound(f"job {job.id} has no such artifact: {err}") from None
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
    return JSONResponse(UNAVAILABLE, status_code=503)


async def _invalid_request(_request: Request, err: Exception) -> JSONResponse:
    """422 listing where and what, never the input (it may be huge or not serialisable)."""
    assert isinstance(err, RequestValidationError)
    errors = []
    for problem in err.errors()[:MAX_ERRORS]:
        message = str(problem.get("msg", "invalid"))
        if problem.get("type") == "json_invalid":
            message += f": {(problem.get('ctx') or {}).get('error', '')}"
        errors.append({"loc": ".".join(str(part) for part in problem.get("loc", ())),
                       "msg": message[:500]})
    detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)
    return JSONResponse({"detail": f"invalid request: {detail}", "errors": errors},
                        status_code=422)


async def _internal_error(request: Request, err: Exception) -> JSONResponse:
    """A bug, not the user's fault: JSON with an id to find the traceback in the log."""
    correlation = getattr(request.state, "correlation_id", None) or uuid.uuid4().hex[:16]
    log.error("internal error [correlation id %s] on %s %s", correlation, request.method,
              request.url.path, exc_info=err)
    return JSONResponse({"detail": "internal server error; the server log has the details "
                                   f"under correlation id {correlation}",
                         "correlation_id": correlation}, status_code=500,
                        headers={"X-Correlation-ID": correlation})


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
