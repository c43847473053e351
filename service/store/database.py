"""The service database: ORM models and the few operations the service performs on them.

The database is the source of truth for jobs.  Every job state change is a single
compare-and-set ``UPDATE ... WHERE state = ...`` whose row count says whether this caller
won, so two workers handed the same job (a re-delivered message, the reconciler) can never
both run it, and only the worker holding the lease can record the outcome.  The same code
runs on SQLite (embedded mode) and PostgreSQL; the schema is created by the Alembic
migrations in ``service/migrations`` and a test keeps them equal to these models.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Engine,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import (
    IntegrityError,
)
from sqlalchemy.orm import Session, sessionmaker

from ensembles.errors import EsmwatchError
from service.kinds import SCOPES, JobState, Scope
from service.settings import InvalidParameters, Settings
from service.store.engine import make_engine, upgrade_schema
from service.store.tables import (
    Alert,
    ApiToken,
    Conflict,
    Ensemble,
    EnsembleSpec,
    EnsembleUpdate,
    Job,
    Member,
    ModelVersion,
    NotFound,
    hash_token,
    iso,
    utcnow,
)

log = logging.getLogger(__name__)
TOKEN_USE_PRECISION = timedelta(minutes=1)  # how stale ApiToken.last_used may be


class Store:
    """Repository over one database: short transactions, detached results.

    Parameters
    ----------
    engine
        Where the tables live (already migrated, see :func:`get_store`).
    lease_seconds
        How long a claim or heartbeat keeps a job to its worker.
    max_attempts
        Claims after which a job whose workers keep dying is failed instead of re-run.
    """

    def __init__(self, engine: Engine, *, lease_seconds: int = 300, max_attempts: int = 3) -> None:
        self.engine = engine
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        """Raise if the database cannot be reached."""
        with self.engine.connect() as connection:
            connection.execute(select(1))

    def _cas(self, statement: Any) -> bool:
        """Run one conditional UPDATE; True if it changed the row (this caller won)."""
        with self.session() as session:
            result = session.execute(statement.execution_options(synchronize_session=False))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # ---- jobs ---------------------------------------------------------------------------

    def create_job(self, job_type: str, params: dict[str, Any], *,
                   dedupe_key: str | None = None) -> tuple[Job, bool]:
        """Insert a queued job; with a ``dedupe_key`` already used, return that job instead.

        Returns
        -------
        (job, created)
            ``created`` is False when an existing job was returned.
        """
        job = Job(id=str(uuid.uuid4()), type=job_type, params=params, state="queued",
                  attempts=0, progress=0.0, message="queued", artifacts=[],
                  dedupe_key=dedupe_key, created=utcnow())
        try:
            with self.session() as session:
                session.add(job)
        except IntegrityError:
            if dedupe_key is None:
                raise
            with self.session() as session:
                existing = session.scalars(select(Job).where(Job.dedupe_key == dedupe_key)).one()
            return existing, False
        return job, True

    def get_job(self, job_id: str) -> Job:
        with self.session() as session:
            job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    def list_jobs(self, *, job_type: str | None = None, state: str | None = None,
                  limit: int = 50, offset: int = 0) -> tuple[list[Job], int]:
        """Newest first, with the total count matching the filters."""
        conditions = []
        if job_type:
            conditions.append(Job.type == job_type)
        if state:
            conditions.append(Job.state == state)
        with self.session() as session:
            total = session.scalar(select(func.count()).select_from(Job).where(*conditions))
            jobs = session.scalars(select(Job).where(*conditions)
                                   .order_by(Job.created.desc(), Job.id)
                                   .limit(limit).offset(offset)).all()
        return list(jobs), int(total or 0)

    def count_jobs_by_state(self) -> dict[str, int]:
        with self.session() as session:
            rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        return {state: int(count) for state, count in rows}

    def _claimable(self, now: datetime) -> Any:
        expired = and_(Job.state == "running", Job.lease_expires < now,
                       Job.attempts < self.max_attempts)
        return or_(Job.state == "queued", expired)

    def claim_job(self, job_id: str, worker_id: str) -> bool:
        """queued -> running, or take over a running job whose lease expired.

        Every claim counts as an attempt.  Exactly one of several concurrent claimers
        wins; the others get False and must not run the job.
        """
        now = utcnow()
        return self._cas(
            update(Job).where(Job.id == job_id, self._claimable(now)).values(
                state="running", worker_id=worker_id, attempts=Job.attempts + 1,
                lease_expires=now + self.lease, heartbeat=now, message="running",
                started=func.coalesce(Job.started, now)))

    def heartbeat(self, job_id: str, worker_id: str, *, progress: float | None = None,
                  message: str | None = None) -> bool:
        """Renew the lease (and report progress); False if the worker no longer holds it."""
        now = utcnow()
        values: dict[str, Any] = {"lease_expires": now + self.lease, "heartbeat": now}
        if progress is not None:
            values["progress"] = min(max(progress, 0.0), 1.0)
        if message is not None:
            values["message"] = message
        return self._cas(update(Job).where(Job.id == job_id, Job.state == "running",
                                           Job.worker_id == worker_id).values(**values))

    def finish_job(self, job_id: str, worker_id: str, state: JobState, *, message: str = "",
                   error: str | None = None, artifacts: list[str] | None = None,
                   result_path: str | None = None) -> bool:
        """running -> succeeded | failed, only by the worker holding the lease."""
        if state not in ("succeeded", "failed"):
            raise ValueError(f"a worker finishes a job as succeeded or failed, not {state}")
        values: dict[str, Any] = {"state": state, "message": message, "error": error,
                                  "finished": utcnow(), "lease_expires": None}
        if state == "succeeded":
            values.update(progress=1.0, artifacts=artifacts or [], result_path=result_path)
        return self._cas(update(Job).where(Job.id == job_id, Job.state == "running",
                                           Job.worker_id == worker_id).values(**values))

    def cancel_job(self, job_id: str) -> bool:
        """queued | running -> cancelled; False if the job had already finished."""
        return self._cas(update(Job).where(Job.id == job_id,
                                           Job.state.in_(("queued", "running"))).values(
            state="cancelled", message="cancelled", finished=utcnow(), lease_expires=None))

    def running_jobs(self, *, worker_prefix: str) -> list[Job]:
        """Running jobs whose ``worker_id`` starts with ``worker_prefix``."""
        with self.session() as session:
            return list(session.scalars(select(Job).where(
                Job.state == "running",
                Job.worker_id.startswith(worker_prefix, autoescape=True))))

    def expire_lease(self, job_id: str, worker_id: str) -> bool:
        """End the lease of a running job now, if ``worker_id`` still holds it."""
        return self._cas(update(Job).where(
            Job.id == job_id, Job.state == "running", Job.worker_id == worker_id).values(
            lease_expires=utcnow() - timedelta(seconds=1)))

    def fail_lost_job(self, job_id: str) -> bool:
        """Fail a running job whose lease expired after its last allowed attempt."""
        now = utcnow()
        return self._cas(update(Job).where(
            Job.id == job_id, Job.state == "running", Job.lease_expires < now,
            Job.attempts >= self.max_attempts).values(
            state="failed", finished=now, lease_expires=None, message="failed",
            error=f"the worker running this job was lost {self.max_attempts} times "
                  "(killed, out of memory or past the time limit); not retried"))

    def stale_jobs(self, *, queued_before: datetime) -> list[Job]:
        """Jobs the reconciler must look at: old queued jobs and running ones out of lease."""
        now = utcnow()
        with self.session() as session:
            return list(session.scalars(select(Job).where(or_(
                and_(Job.state == "queued", Job.created < queued_before),
                and_(Job.state == "running", Job.lease_expires < now))).order_by(Job.created)))

    # ---- ensembles, models, alerts -----------------------------------------------------

    def add_ensemble(self, spec: EnsembleSpec) -> Ensemble:
        """Register ``spec``; the ensemble its ``metadata.reference`` names must exist."""
        ensemble = Ensemble(name=spec.name, kind=spec.kind, configuration=spec.configuration,
                            roots=list(spec.roots), meta=spec.metadata, created=utcnow())
        try:
            with self.session() as session:
                _check_reference(session, spec.name, spec.metadata)
                session.add(ensemble)
        except IntegrityError:
            raise Conflict(f"an ensemble named {spec.name!r} is already registered") from None
        return ensemble

    def update_ensemble(self, name: str, change: EnsembleUpdate) -> Ensemble:
        """Replace the fields ``change`` gives (so a bad registration can be repaired)."""
        with self.session() as session:
            ensemble = _ensemble(session, name)
            if change.metadata is not None:
                _check_reference(session, name, change.metadata)
                ensemble.meta = change.metadata
            if change.kind is not None:
                ensemble.kind = change.kind
            if change.configuration is not None:
                ensemble.configuration = change.configuration
            if change.roots is not None:
                ensemble.roots = list(change.roots)
        return ensemble

    def remove_ensemble(self, name: str) -> None:
        """Forget an ensemble and what scans saw of its members (its files are untouched)."""
        with self.session() as session:
            session.delete(_ensemble(session, name))

    def list_ensembles(self) -> list[Ensemble]:
        with self.session() as session:
            return list(session.scalars(select(Ensemble).order_by(Ensemble.name)))

    def get_ensemble(self, name: str) -> Ensemble:
        with self.session() as session:
            return _ensemble(session, name)

    def member_states(self, ensemble_id: int) -> dict[str, dict[str, Any]]:
        """What earlier scans saw of each member of an ensemble, by member name."""
        with self.session() as session:
            rows = session.scalars(select(Member).where(Member.ensemble_id == ensemble_id))
            return {row.name: dict(row.scan_state or {}) for row in rows}

    def save_member_state(self, ensemble_id: int, name: str, state: dict[str, Any]) -> None:
        with self.session() as session:
            row = session.scalars(select(Member).where(
                Member.ensemble_id == ensemble_id, Member.name == name)).first()
            if row is None:
                session.add(Member(ensemble_id=ensemble_id, name=name, scan_state=state))
            else:
                row.scan_state = state

    # ---- model registry ----------------------------------------------------------------

    def list_models(self) -> list[ModelVersion]:
        with self.session() as session:
            return list(session.scalars(select(ModelVersion).order_by(
                ModelVersion.name, ModelVersion.version.desc())))

    def add_model(self, name: str, path: str, metrics: dict[str, Any]) -> ModelVersion:
        """Record the next version of ``name``; two writers racing get distinct versions."""
        for _ in range(5):
            try:
                with self.session() as session:
                    latest = session.scalar(select(func.max(ModelVersion.version))
                                            .where(ModelVersion.name == name))
                    row = ModelVersion(name=name, version=(latest or 0) + 1, metrics=metrics,
                                       path=path, promoted=False, created=utcnow())
                    session.add(row)
                return row
            except IntegrityError:
                continue
        raise Conflict(f"could not allocate a version of model {name!r}")

    def set_model_path(self, name: str, version: int, path: str) -> None:
        with self.session() as session:
            session.execute(update(ModelVersion).where(
                ModelVersion.name == name, ModelVersion.version == version).values(path=path))

    def promote_model(self, name: str, version: int) -> ModelVersion:
        """Make ``version`` the one scans use, in one transaction with the demotion."""
        with self.session() as session:
            row = session.scalars(select(ModelVersion).where(
                ModelVersion.name == name, ModelVersion.version == version)).first()
            if row is None:
                raise NotFound(f"model {name!r} has no version {version}")
            session.execute(update(ModelVersion).where(ModelVersion.name == name,
                                                       ModelVersion.id != row.id)
                            .values(promoted=False))
            row.promoted = True
        return row

    def promoted_model(self, name: str) -> ModelVersion | None:
        with self.session() as session:
            return session.scalars(select(ModelVersion).where(
                ModelVersion.name == name, ModelVersion.promoted.is_(True))).first()

    def list_alerts(self, *, limit: int = 100, offset: int = 0) -> list[Alert]:
        with self.session() as session:
            return list(session.scalars(select(Alert).order_by(Alert.id.desc())
                                        .limit(limit).offset(offset)))

    def get_alert(self, key: str) -> Alert:
        with self.session() as session:
            alert = session.scalars(select(Alert).where(Alert.dedupe_key == key)).first()
        if alert is None:
            raise NotFound(f"no alert {key!r}")
        return alert

    def unsent_alerts(self) -> list[Alert]:
        """Alerts some sink has not yet received, oldest first (for a retry pass)."""
        with self.session() as session:
            return list(session.scalars(select(Alert).where(Alert.sent_at.is_(None))
                                        .order_by(Alert.id)))

    def claim_alert(self, key: str, payload: dict[str, Any]) -> tuple[Alert, bool]:
        """Take the right to deliver alert ``key`` for one lease.

        The first caller inserts the row (the unique key decides between racing callers).
        Later callers re-claim an unsent alert only when no one holds it, so a sink that
        failed last night is retried, never by two senders at once.  The claim lives in
        ``payload["delivery"]`` (``claimed_until``, fixed-width UTC ISO text, which compares
        in SQL like the time it names), keeping the alerts table as migrated.

        Returns
        -------
        (alert, claimed)
            ``claimed`` False: already sent (``sent_at`` set) or held by a live sender.
        """
        now = utcnow()
        delivery = {"claimed_until": iso(now + self.lease), "failed": {}}
        alert = Alert(dedupe_key=key, payload={**payload, "delivery": delivery}, sinks=[])
        try:
            with self.session() as session:
                session.add(alert)
            return alert, True
        except IntegrityError:
            pass
        existing = self.get_alert(key)
        held_until = Alert.payload[("delivery", "claimed_until")].as_string()
        previous = existing.payload.get("delivery") or {}
        claimed = self._cas(update(Alert).where(
            Alert.dedupe_key == key, Alert.sent_at.is_(None),
            or_(held_until.is_(None), held_until < iso(now))).values(
            payload={**existing.payload,
                     "delivery": {**delivery, "failed": previous.get("failed", {})}}))
        return self.get_alert(key), claimed

    def record_alert_sinks(self, key: str, sinks: list[str]) -> None:
        """Save the sinks that have the alert so far (by the claim holder, after each one)."""
        with self.session() as session:
            session.execute(update(Alert).where(Alert.dedupe_key == key).values(sinks=sinks))

    def release_alert(self, key: str, *, sinks: list[str], failed: dict[str, str],
                      sent: bool) -> None:
        """End the claim, saving the sinks that have the alert and why others failed.

        ``sent``: every configured sink has it, so it is never sent again.
        """
        with self.session() as session:
            alert = session.scalars(select(Alert).where(Alert.dedupe_key == key)).one()
            alert.sinks = sinks
            alert.payload = {**alert.payload,
                             "delivery": {"claimed_until": None, "failed": failed}}
            if sent:
                alert.sent_at = utcnow()

    # ---- API tokens --------------------------------------------------------------------

    def create_token(self, name: str, scopes: Sequence[Scope] = SCOPES,
                     expires: datetime | None = None) -> str:
        """Store a new token's hash and return the token; it is never shown again."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise EsmwatchError(f"scopes must be some of {', '.join(SCOPES)}, not {unknown}")
        token = "esmw_" + secrets.token_urlsafe(32)
        with self.session() as session:
            session.add(ApiToken(name=name[:200], token_hash=hash_token(token),
                                 created=utcnow(), scopes=sorted(set(scopes)),
                                 expires=expires))
        return token

    def list_tokens(self) -> list[ApiToken]:
        """Every token, revoked and expired ones included (oldest first)."""
        with self.session() as session:
            return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))

    def revoke_tokens(self, name_or_id: str) -> list[ApiToken]:
        """Revoke the token with this id, or every live token with this name.

        Raises
        ------
        NotFound
            When no live token matches.
        """
        is_id = re.fullmatch("[0-9]{1,9}", name_or_id) is not None  # fits any INTEGER
        match = (ApiToken.id == int(name_or_id)) if is_id else (ApiToken.name == name_or_id)
        with self.session() as session:
            tokens = list(session.scalars(select(ApiToken).where(
                match, ApiToken.revoked.is_(None))))
            if not tokens:
                raise NotFound(f"no live token {name_or_id!r}")
            for token in tokens:
                token.revoked = utcnow()
        return tokens

    def check_token(self, token: str) -> ApiToken | None:
        """The token's record if ``token`` is valid now: known, not revoked, not expired.

        Asked on every request, so that a revoked token is refused at once: one indexed
        read on a plain connection (~0.1 ms on SQLite), no ORM session.  The hash is
        compared in constant time.  Writing ``last_used`` on every request made each API
        call a write transaction (a commit and an fsync: ~6 ms on SQLite, serialised), so
        it is written at most once per :data:`TOKEN_USE_PRECISION`.
        """
        digest = hash_token(token)
        with self.engine.connect() as connection:
            row = connection.execute(_TOKEN_BY_HASH, {"digest": digest}).first()
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                return None
            record = ApiToken(**row._asdict())
            now = utcnow()
            if record.revoked is not None or (record.expires is not None
                                              and record.expires <= now):
                return None
            if record.last_used is None or now - record.last_used > TOKEN_USE_PRECISION:
                connection.execute(update(_TOKENS).where(_TOKENS.c.id == record.id)
                                   .values(last_used=now))
                connection.commit()
                record.last_used = now
        return record


_TOKENS = ApiToken.__table__
# built once: compiling the statement per request cost as much as running it
_TOKEN_BY_HASH = select(_TOKENS).where(_TOKENS.c.token_hash == bindparam("digest"))


def _ensemble(session: Session, name: str) -> Ensemble:
    ensemble = session.scalars(select(Ensemble).where(Ensemble.name == name)).first()
    if ensemble is None:
        raise NotFound(f"no ensemble named {name!r} is registered")
    return ensemble


def _check_reference(session: Session, name: str, metadata: dict[str, Any]) -> None:
    """A candidate's ``metadata.reference`` must name another registered ensemble."""
    reference = metadata.get("reference")
    if reference is None:
        return
    if reference == name or session.scalars(select(Ensemble.id).where(
            Ensemble.name == reference)).first() is None:
        raise InvalidParameters("ensemble", [{
            "loc": "metadata.reference",
            "msg": f"{reference!r} is not another registered ensemble; register the "
                   "reference first"}])


_stores: dict[tuple[str, int, int], Store] = {}
_stores_lock = threading.Lock()


def get_store(settings: Settings) -> Store:
    """The process's store for ``settings``, migrated to the current schema on first use.

    A failed migration (database down) is not cached, so the next call tries again.
    """
    key = (settings.database_url or "", settings.lease_seconds, settings.max_attempts)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            engine = make_engine(key[0])
            try:
                upgrade_schema(engine)
            except Exception:
                engine.dispose()
                raise
            store = _stores[key] = Store(engine, lease_seconds=settings.lease_seconds,
                                         max_attempts=settings.max_attempts)
        return store
