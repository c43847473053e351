"""The service database's records: ORM tables, the specs that create them, the errors.

The schema is created by the Alembic migrations in ``service/migrations``; a test keeps
them equal to these models.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ensembles.errors import EsmwatchError
from service.kinds import JOB_STATES, SCOPES, EnsembleKind, Scope
from service.limits import EnsembleName, Metadata
from service.settings import DataPaths

log = logging.getLogger(__name__)


class NotFound(EsmwatchError):
    """A job, ensemble or other record named by the user does not exist (HTTP 404)."""


class Conflict(EsmwatchError):
    """The request contradicts the current state: a duplicate name, a finished job (HTTP 409)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zones, so values are stored there as naive UTC; they come back
    aware everywhere, and lease comparisons in SQL compare like with like.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use service.store.utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class Ensemble(Base):
    __tablename__ = "ensembles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    configuration: Mapped[str] = mapped_column(String(500))
    roots: Mapped[list[str]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Member(Base):
    """One CESM case of an ensemble, with what the nightly scan has already seen of it."""

    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("ensemble_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ensemble_id: Mapped[int] = mapped_column(ForeignKey("ensembles.id", ondelete="CASCADE"),
                                             index=True)
    name: Mapped[str] = mapped_column(String(500))
    scan_state: Mapped[dict[str, Any]] = mapped_column(JSON)  # files_seen, last_month, errors


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (CheckConstraint(
        "state IN (" + ", ".join(f"'{state}'" for state in JOB_STATES) + ")", name="state"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    lease_expires: Mapped[datetime | None] = mapped_column(UtcDateTime)
    heartbeat: Mapped[datetime | None] = mapped_column(UtcDateTime)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    artifacts: Mapped[list[str]] = mapped_column(JSON, default=list)
    result_path: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    started: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished: Mapped[datetime | None] = mapped_column(UtcDateTime)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)


class ModelVersion(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    path: Mapped[str] = mapped_column(Text)
    promoted: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sinks: Mapped[list[str]] = mapped_column(JSON, default=list)


class ApiToken(Base):
    """A bearer token: its hash, what it may do, until when, and whether it was revoked."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(UtcDateTime)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=lambda: list(SCOPES))
    expires: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked: Mapped[datetime | None] = mapped_column(UtcDateTime)

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes


Configuration = Annotated[str, Field(min_length=1, max_length=500,
                                     description="compset + grid + code tag shared by the "
                                                 "members")]


class EnsembleSpec(BaseModel):
    """An ensemble registration as a user gives it (API body, CLI options)."""

    model_config = ConfigDict(extra="forbid")
    name: EnsembleName
    kind: EnsembleKind
    configuration: Configuration
    roots: DataPaths
    metadata: Metadata = Field(default_factory=dict)


class EnsembleUpdate(BaseModel):
    """A change to a registered ensemble: only the fields given are replaced."""

    model_config = ConfigDict(extra="forbid")
    kind: EnsembleKind | None = None
    configuration: Configuration | None = None
    roots: DataPaths | None = None
    metadata: Metadata | None = None


def iso(moment: datetime) -> str:
    """Fixed-width UTC ISO text, so string order in SQL is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hash_token(token: str) -> str:
    """sha256 of a token: enough for high-entropy random tokens, and the lookup key."""
    return hashlib.sha256(token.encode()).hexdigest()


