"""Operations commands of the ``esmwatch`` CLI: jobs, tokens, ensembles, server, workers.

:mod:`service.cli` registers these on its app; they live here so that the science commands
(:mod:`service.cli.science`) and the operations commands can change independently.  Like
the rest of the CLI, every user error is one line on stderr and a non-zero exit
(:func:`service.cli.common.user_errors`), and the database and settings stacks are imported
inside the commands, so ``esmwatch --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from ensembles.errors import EsmwatchError
from service.cli.common import user_errors as _user_errors
from service.kinds import QUEUES, EnsembleKind, JobState

if TYPE_CHECKING:
    from service.settings import Settings
    from service.store import Store

log = logging.getLogger(__name__)

jobs_app = typer.Typer(help="Inspect, cancel and recover analysis jobs.", no_args_is_help=True)
token_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
ensemble_app = typer.Typer(help="Register and list ensembles.", no_args_is_help=True)
model_app = typer.Typer(help="The model registry: versions and which one scans use.",
                        no_args_is_help=True)


def get_settings() -> Settings:
    from service.settings import get_settings as settings  # settings stack only when used

    return settings()


def _store() -> Store:
    from service.store import get_store

    return get_store(get_settings())


@jobs_app.command("list")
def jobs_list(
    job_type: Annotated[str | None, typer.Option("--type", help="Only jobs of this type.")] = None,
    state: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
) -> None:
    """The newest jobs, one line each."""
    with _user_errors():
        jobs, total = _store().list_jobs(job_type=job_type, state=state, limit=limit)
    for job in jobs:
        typer.echo(f"{job.id}  {job.type:<12} {job.state:<10} {job.progress:4.0%}  "
                   f"{job.created:%Y-%m-%d %H:%M}  {job.error or job.message}")
    typer.echo(f"{len(jobs)} of {total} job(s)")


@jobs_app.command("show")
def jobs_show(job_id: str) -> None:
    """A job's record as JSON (parameters, state, progress, error, artifacts)."""
    from service.api import JobOut  # FastAPI only when needed: keeps every CLI call quick

    with _user_errors():
        job = _store().get_job(job_id)
    typer.echo(JobOut.model_validate(job).model_dump_json(indent=2))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a queued or running job (a running one's result is discarded)."""
    with _user_errors():
        store = _store()
        if not store.cancel_job(job_id):
            raise EsmwatchError(f"job {job_id} is already {store.get_job(job_id).state}")
    typer.echo(f"cancelled {job_id}")


@jobs_app.command("reconcile")
def jobs_reconcile() -> None:
    """Dispatch again jobs whose message or worker was lost (beat does this with Celery)."""
    from service.job_types import register_all  # the job machinery only when needed
    from service.jobs import reconcile

    register_all()

    with _user_errors():
        report = reconcile(get_settings())
    typer.echo(f"dispatched {len(report.dispatched)}, failed {len(report.failed)}, "
               f"removed {len(report.removed)} abandoned attempt dir(s)")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who or what uses the token.")],
    scope: Annotated[list[str] | None, typer.Option(
        help="read, submit or admin (repeatable); default read and submit.")] = None,
    expires_days: Annotated[float | None, typer.Option(
        min=0.001, help="Refused after this many days; default never.")] = None,
) -> None:
    """Create an API token and print it; only its hash is stored, so keep it now."""
    scopes = scope or ["read", "submit"]
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    with _user_errors():
        token = _store().create_token(name, scopes, expires)  # type: ignore[arg-type]
    typer.echo(token)
    typer.secho(f"token {name!r} ({', '.join(scopes)}) created; it cannot be shown again",
                err=True)


@ensemble_app.command("add")
def ensemble_add(
    name: str,
    kind: Annotated[EnsembleKind, typer.Option(help="What the ensemble is.")],
    configuration: Annotated[str, typer.Option(help="compset + grid + code tag.")],
    root: Annotated[list[Path], typer.Option(help="A root directory (repeatable).")],
    metadata: Annotated[str, typer.Option(help="JSON object, e.g. pertlim values.")] = "{}",
) -> None:
    """Register an ensemble whose roots lie under the configured data roots."""
    with _user_errors():
        meta = _json_option("--metadata", metadata)
        from service.settings import validate_with_settings
        from service.store import EnsembleSpec

        settings = get_settings()
        spec = validate_with_settings(EnsembleSpec, {
            "name": name, "kind": kind, "configuration": configuration,
            "roots": [str(r) for r in root], "metadata": meta}, settings, what="ensemble")
        _store().add_ensemble(spec)
    typer.echo(f"registered {kind} ensemble {name} ({len(root)} root(s))")


@ensemble_app.command("list")
def ensemble_list() -> None:
    """Registered ensembles, one line each."""
    with _user_errors():
        ensembles = _store().list_ensembles()
    for ensemble in ensembles:
        typer.echo(f"{ensemble.name:<24} {ensemble.kind:<16} {ensemble.configuration}  "
                   f"{', '.join(ensemble.roots)}")


@model_app.command("list")
def model_list() -> None:
    """Registered model versions, newest first; * marks the promoted one."""
    with _user_errors():
        models = _store().list_models()
    for model in models:
        mark = "*" if model.promoted else " "
        typer.echo(f"{mark} {model.name} v{model.version:<4} {model.created:%Y-%m-%d %H:%M}  "
                   f"{model.metrics.get('reliability', '')}")
    if not models:
        typer.echo("no models yet: a precursors job registers its risk model")


@model_app.command("promote")
def model_promote(name: str, version: int) -> None:
    """Make VERSION of NAME the model the next scans use."""
    with _user_errors():
        _store().promote_model(name, version)
    typer.echo(f"promoted {name} v{version}")


def submit_and_report(job_type: str, params: dict[str, object]) -> dict[str, object] | None:
    """Run a job (embedded: here and now; with a broker: queued) and return its result.

    With a broker, the job id is printed and None returned: ``esmwatch jobs show ID``
    follows it.
    """
    from service.job_types import register_all
    from service.jobs import finished_result, submit_job

    register_all()
    settings = get_settings()
    job_id = submit_job(job_type, params, settings=settings, wait=settings.embedded)
    if not settings.embedded:
        typer.echo(f"submitted {job_type} job {job_id}; follow it with esmwatch jobs show")
        return None
    return finished_result(job_id, settings)


def scan(
    ensemble: Annotated[list[str] | None, typer.Option(
        help="Registered ensemble to scan (repeatable); all when omitted.")] = None,
    alerts: Annotated[bool, typer.Option(help="Send new findings to the alert sinks.")] = True,
) -> None:
    """Scan registered ensembles now: new files, risk, freezes, consistency, alerts."""
    with _user_errors():
        result = submit_and_report("scan", {"ensembles": ensemble or [],
                                            "send_alerts": alerts})
    if result is None:
        return
    typer.echo(f"{result['files_read']} files read, {result['files_cached']} cached; "
               f"{len(result['findings'])} new finding(s); report: "
               f"{get_settings().job_results_dir(str(result['job_id'])) / 'report.html'}")
    for finding in result["findings"]:
        typer.echo(f"  {finding['message']}")
    for note in result["notes"]:
        typer.echo(f"  note: {note}")


def report(job_id: str) -> None:
    """Print the path of a finished job's report.html."""
    with _user_errors():
        job = _store().get_job(job_id)
        path = get_settings().job_results_dir(job.id) / "report.html"
        if not path.is_file():
            raise EsmwatchError(f"job {job_id} is {job.state} and has no report")
    typer.echo(path)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the HTTP API (jobs run in-process unless a broker is configured)."""
    import uvicorn

    from service.api import create_app
    from service.settings import SERVICE_UMASK

    os.umask(SERVICE_UMASK)
    uvicorn.run(create_app(get_settings()), host=host, port=port)


def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated: io, gpu or both.")] = ",".join(
        QUEUES),
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 1,
    loglevel: Annotated[str, typer.Option()] = "INFO",
) -> None:
    """Run a Celery worker for the io and/or gpu queues (needs a broker)."""
    settings = get_settings()
    names = [q.strip() for q in queues.split(",") if q.strip()]
    chosen = [q for q in QUEUES if q in names]
    if not names or len(chosen) != len(set(names)):
        typer.secho(f"error: unknown queue(s) in {queues!r}; use {', '.join(QUEUES)}",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)
    _exec_celery("worker", "-Q", ",".join(settings.queue_name(q) for q in chosen),
                 f"--concurrency={concurrency}", f"--loglevel={loglevel}")


def beat(loglevel: Annotated[str, typer.Option()] = "INFO") -> None:
    """Run Celery beat: the reconciler and the nightly scan schedule (needs a broker)."""
    _exec_celery("beat", f"--loglevel={loglevel}")


def _exec_celery(*args: str) -> NoReturn:
    """Become ``celery -A workers.celery_app ...`` so signals reach Celery directly.

    Started as a command rather than imported, so the service layer does not import workers.
    """
    from service.broker import celery_config
    from service.settings import SERVICE_UMASK

    with _user_errors():
        celery_config(get_settings())  # a clear error now if no broker is configured
    command = [sys.executable, "-m", "celery", "-A", "workers.celery_app", *args]
    log.info("exec %s", " ".join(command))
    os.umask(SERVICE_UMASK)  # kept across exec (the Celery app sets it too)
    os.execv(sys.executable, command)


# ---- token list|revoke, ensemble remove|update ----------------------------------------


def _json_option(option: str, text: str) -> Any:
    """An option's JSON, parsed as strictly as an API body."""
    from service.limits import parse_json

    try:
        return parse_json(text, what=option)
    except ValueError as err:  # json.JSONDecodeError included
        raise EsmwatchError(f"{option} is not acceptable JSON: {err}") from None


@token_app.command("list")
def token_list() -> None:
    """Every token: id, name, scopes, expiry, last use, and whether it is revoked."""
    with _user_errors():
        tokens = _store().list_tokens()
    for token in tokens:
        state = (f"revoked {token.revoked:%Y-%m-%d %H:%M}" if token.revoked else
                 f"expires {token.expires:%Y-%m-%d %H:%M}" if token.expires else "no expiry")
        used = f"{token.last_used:%Y-%m-%d %H:%M}" if token.last_used else "never"
        typer.echo(f"{token.id:>4}  {token.name:<20} {','.join(token.scopes):<18} {state:<24} "
                   f"last used {used}")
    typer.echo(f"{len(tokens)} token(s)")


@token_app.command("revoke")
def token_revoke(which: Annotated[str, typer.Argument(
        help="A token's id (see token list), or a name: every live token of that name.")]
                 ) -> None:
    """Revoke tokens: the API refuses them from the next request on."""
    with _user_errors():
        revoked = _store().revoke_tokens(which)
    typer.echo(f"revoked {len(revoked)} token(s): "
               + ", ".join(f"{t.id} ({t.name})" for t in revoked))


@ensemble_app.command("remove")
def ensemble_remove(name: str) -> None:
    """Forget a registered ensemble and its scan state (its files are not touched)."""
    with _user_errors():
        _store().remove_ensemble(name)
    typer.echo(f"removed ensemble {name}")


@ensemble_app.command("update")
def ensemble_update(
    name: str,
    kind: Annotated[EnsembleKind | None, typer.Option(help="What the ensemble is.")] = None,
    configuration: Annotated[str | None, typer.Option(help="compset + grid + code tag.")] = None,
    root: Annotated[list[Path] | None, typer.Option(
        help="A root directory (repeatable); replaces all roots.")] = None,
    metadata: Annotated[str | None, typer.Option(help="JSON object; replaces it.")] = None,
) -> None:
    """Change a registered ensemble: only the options given are replaced."""
    from service.settings import validate_with_settings
    from service.store import EnsembleUpdate, get_store

    with _user_errors():
        settings = get_settings()
        change = {"kind": kind, "configuration": configuration,
                  "roots": [str(r) for r in root] if root else None,
                  "metadata": None if metadata is None else _json_option("--metadata", metadata)}
        update = validate_with_settings(
            EnsembleUpdate, {k: v for k, v in change.items() if v is not None}, settings,
            what="ensemble update")
        get_store(settings).update_ensemble(name, update)
    typer.echo(f"updated ensemble {name}")
