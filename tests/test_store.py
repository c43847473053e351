"""The job store on SQLite and on the real local PostgreSQL: schema, CAS transitions, tokens.

PostgreSQL tests create one uniquely named database for the session and drop it afterwards;
they are skipped, saying why, only when the server cannot be reached.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text, update
from sqlalchemy.exc import OperationalError

from service.settings import InvalidParameters, Settings, validate_with_settings
from service.store import (
    ApiToken,
    Base,
    Conflict,
    EnsembleSpec,
    Job,
    NotFound,
    Store,
    get_store,
    hash_token,
    init_db,
    utcnow,
)

PG_SERVER = os.environ.get("ESMWATCH_TEST_POSTGRES",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the local server for this session, dropped at the end."""
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    name = f"esmwatch_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as err:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER}: {err.orig}")
    yield PG_SERVER.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    sqlite = request.param == "sqlite"
    url = (f"sqlite:///{tmp_path / 'db.sqlite'}" if sqlite
           else request.getfixturevalue("postgres_url"))
    settings = Settings(data_dir=tmp_path, database_url=url, broker_url=None, max_attempts=2)
    yield settings
    if not sqlite:  # one database per session: empty it for the next test
        with get_store(settings).session() as session:
            tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
            session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def store(settings: Settings) -> Store:
    return get_store(settings)


def expire_lease(store: Store, job_id: str) -> None:
    """Make a running job's lease lapse, as if its worker died a while ago."""
    with store.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(
            lease_expires=utcnow() - timedelta(seconds=1)))


def test_migrations_build_the_orm_schema(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert compare_metadata(context, Base.metadata) == []
        assert context.get_current_revision() == "0002"
    assert set(inspect(store.engine).get_table_names()) >= {
        "ensembles", "members", "jobs", "models", "alerts", "api_tokens"}


def test_init_db_is_idempotent(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh", database_url=None)
    init_db(settings)
    init_db(settings)
    engine = create_engine(settings.database_url)
    assert {"jobs", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_job_lifecycle(store: Store) -> None:
    job, created = store.create_job("features", {"roots": ["/x"]})
    assert created and job.state == "queued" and job.attempts == 0
    assert store.claim_job(job.id, "w1")
    assert store.heartbeat(job.id, "w1", progress=0.5, message="half way")
    running = store.get_job(job.id)
    assert (running.state, running.attempts, running.progress) == ("running", 1, 0.5)
    assert running.lease_expires > utcnow() and running.started.tzinfo is not None
    assert not store.heartbeat(job.id, "w2")
    assert not store.finish_job(job.id, "w2", "succeeded")
    assert store.finish_job(job.id, "w1", "succeeded", message="done", artifacts=["a.nc"],
                            result_path="/r")
    done = store.get_job(job.id)
    assert (done.state, done.progress, done.artifacts, done.lease_expires) == (
        "succeeded", 1.0, ["a.nc"], None)
    assert not store.claim_job(job.id, "w3")
    assert not store.cancel_job(job.id)
    with pytest.raises(NotFound):
        store.get_job(str(uuid.uuid4()))


def test_two_claimers_one_wins(store: Store) -> None:
    job, _ = store.create_job("features", {})
    start = threading.Barrier(6)
    wins: list[str] = []

    def claim(worker: str) -> None:
        start.wait()
        if store.claim_job(job.id, worker):
            wins.append(worker)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(wins) == 1
    assert store.get_job(job.id).worker_id == wins[0]


def test_expired_lease_is_taken_over_and_the_old_holder_is_locked_out(store: Store) -> None:
    job, _ = store.create_job("features", {})
    assert store.claim_job(job.id, "dead")
    assert not store.claim_job(job.id, "other")  # the lease is still valid
    expire_lease(store, job.id)
    assert store.claim_job(job.id, "other")
    assert store.get_job(job.id).attempts == 2
    assert not store.heartbeat(job.id, "dead")
    assert not store.finish_job(job.id, "dead", "succeeded")
    assert store.finish_job(job.id, "other", "failed", error="boom")
    assert store.get_job(job.id).error == "boom"


def test_a_job_whose_workers_keep_dying_is_failed(store: Store) -> None:
    job, _ = store.create_job("features", {})
    for worker in ("w1", "w2"):  # max_attempts=2
        assert store.claim_job(job.id, worker)
        expire_lease(store, job.id)
    assert not store.claim_job(job.id, "w3")
    assert [j.id for j in store.stale_jobs(queued_before=utcnow())] == [job.id]
    assert store.fail_lost_job(job.id)
    failed = store.get_job(job.id)
    assert failed.state == "failed" and "lost 2 times" in failed.error


def test_cancel(store: Store) -> None:
    queued, _ = store.create_job("features", {})
    assert store.cancel_job(queued.id)
    assert not store.claim_job(queued.id, "w")
    running, _ = store.create_job("features", {})
    assert store.claim_job(running.id, "w")
    assert store.cancel_job(running.id)
    assert not store.heartbeat(running.id, "w")
    assert not store.finish_job(running.id, "w", "succeeded")
    assert store.get_job(running.id).state == "cancelled"
    with pytest.raises(ValueError, match="succeeded or failed"):
        store.finish_job(running.id, "w", "cancelled")


def test_dedupe_key_gives_one_job(store: Store) -> None:
    first, created = store.create_job("scan", {}, dedupe_key="nightly:2025-01-01")
    again, created_again = store.create_job("scan", {}, dedupe_key="nightly:2025-01-01")
    assert created and not created_again and again.id == first.id


def test_list_jobs_filters_and_pages(store: Store) -> None:
    ids = [store.create_job("features" if i % 2 else "scan", {"i": i})[0].id for i in range(5)]
    assert store.claim_job(ids[1], "w")
    jobs, total = store.list_jobs(job_type="features")
    assert total == 2 and {j.id for j in jobs} == {ids[1], ids[3]}
    jobs, total = store.list_jobs(state="running")
    assert total == 1 and jobs[0].id == ids[1]
    page, total = store.list_jobs(limit=2, offset=2)
    assert total == 5 and len(page) == 2
    assert store.count_jobs_by_state() == {"queued": 4, "running": 1}


def test_tokens_are_stored_hashed(store: Store) -> None:
    token = store.create_token("ci")
    with store.session() as session:
        record = session.scalars(select(ApiToken)).one()
    assert record.token_hash == hash_token(token) and token not in record.token_hash
    assert len(token) > 40
    assert store.check_token(token).name == "ci"
    assert store.check_token(token + "x") is None
    assert store.check_token("") is None
    with store.session() as session:
        assert session.scalars(select(ApiToken)).one().last_used is not None


def test_ensembles(store: Store, settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    spec = validate_with_settings(EnsembleSpec, {
        "name": "pertlim-1", "kind": "pertlim", "configuration": "B1850 f09_g17 cesm3_0_beta04",
        "roots": ["archive"], "metadata": {"pertlim": [1e-14]}}, settings, what="ensemble")
    assert spec.roots == [str(tmp_path / "archive")]
    store.add_ensemble(spec)
    with pytest.raises(Conflict, match="already registered"):
        store.add_ensemble(spec)
    [ensemble] = store.list_ensembles()
    assert (ensemble.name, ensemble.meta, ensemble.created.tzinfo is not None) == (
        "pertlim-1", {"pertlim": [1e-14]}, True)
    with pytest.raises(InvalidParameters, match="outside the data roots"):
        validate_with_settings(EnsembleSpec, {**spec.model_dump(), "roots": ["/"]}, settings,
                               what="ensemble")
