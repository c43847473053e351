"""Reaching the database: engines, schema migrations, retries, messages safe to show.

The same code runs on SQLite (embedded mode) and PostgreSQL.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Engine,
    create_engine,
    event,
    text,
)
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)

from ensembles.errors import EsmwatchError
from service.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parents[1] / "migrations"
_PG_MIGRATION_LOCK = 0x65736D77  # "esmw": serialises concurrent upgrades of one database
T = TypeVar("T")


def engine_url(url: str) -> str:
    """Use psycopg 3 for a plain ``postgresql://`` URL (psycopg2 is not a dependency)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str) -> Engine:
    """An engine for SQLite (WAL, foreign keys, waits on locks) or PostgreSQL."""
    url = engine_url(url)
    if not url.startswith("sqlite"):
        # a database that hangs (not refuses) must fail in seconds, so retries and 503s happen
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        # the database holds token hashes and job parameters: readable by the service only
        # (SQLite gives its -wal and -shm files the database file's permissions)
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def upgrade_schema(engine: Engine) -> None:
    """Run ``alembic upgrade head`` on ``engine`` in-process (no alembic.ini, no network).

    On PostgreSQL an advisory lock makes an API server and workers starting together take
    turns instead of racing to create the same tables; on SQLite, which has no such lock,
    an exclusive lock on a file beside the database does the same.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _sqlite_migration_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": _PG_MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(os.open(f"{database}.migrate-lock", os.O_CREAT | os.O_RDWR, 0o600)) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def init_db(settings: Settings) -> None:
    """Bring the configured database to the current schema."""
    engine = make_engine(settings.database_url or "")
    try:
        upgrade_schema(engine)
    finally:
        engine.dispose()


def unavailable(err: BaseException) -> bool:
    """Whether ``err`` means "the database cannot be reached now" (worth retrying)."""
    if isinstance(err, DBAPIError):
        return isinstance(err, OperationalError | InterfaceError) or err.connection_invalidated
    return False


def public_message(err: BaseException) -> str:
    """What a user may read about ``err``: esmwatch's own message, else only its kind.

    A database error's text holds the SQL statement and its parameters, and other
    exceptions may name server paths; the log keeps the details.
    """
    if isinstance(err, EsmwatchError):
        return str(err)
    if isinstance(err, SQLAlchemyError):
        return f"database error ({type(err.orig or err).__name__}); see the server log"
    return f"unexpected {type(err).__name__}; see the server log"


def retry_db(call: Callable[[], T], *, what: str, budget_s: float) -> T:
    """``call()``, retried with exponential backoff while the database is unreachable.

    Job runners use this so that a short outage delays a claim or an outcome instead of
    losing it; after ``budget_s`` seconds the error is raised and the lease and the
    reconciler take over.  Other errors (a constraint, a bug) are raised at once.
    """
    deadline = time.monotonic() + budget_s
    delay = 0.1
    while True:
        try:
            return call()
        except DBAPIError as err:
            if not unavailable(err) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: database unavailable (%s); retrying in %.1f s", what,
                        str(err.orig).strip().splitlines()[0] if err.orig else err, delay)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


