"""Service settings and the data-roots policy every user-supplied path must pass.

Settings come from (highest first) keyword arguments, ``ESMWATCH_*`` environment variables
and an optional TOML file (``$ESMWATCH_CONFIG``, else ``esmwatch.toml`` in the working
directory).  The defaults give the embedded mode: SQLite and results under one local data
directory, no broker, jobs run in-process.  List values in the environment are JSON, e.g.
``ESMWATCH_DATA_ROOTS='["/glade/archive", "/scratch/ppe"]'``.

Paths named in job parameters or ensemble registrations are checked here, once, against
``data_roots`` *after* resolving symlinks and ``..``, so an API client can never make a
worker read outside the configured archives.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ensembles.errors import ConfigurationError
from service.kinds import QueueName
from service.limits import MAX_ROOTS, check_json_value
from service.paths import confined_path

CONFIG_ENV = "ESMWATCH_CONFIG"
DEFAULT_CONFIG_FILE = "esmwatch.toml"
HARD_LIMIT_GRACE_S = 30  # between the soft time limit (clean failure) and the hard kill
VISIBILITY_MARGIN_S = 300  # the broker re-delivers only well after the hard kill
SERVICE_UMASK = 0o077  # the server and workers create files 0600 and directories 0700
MAX_ERRORS = 20  # problems listed in one answer: enough to fix, never megabytes

Model = TypeVar("Model", bound=BaseModel)


class InvalidParameters(ConfigurationError):
    """Parameters (of a job, an ensemble registration) failed validation.

    The message lists every problem as ``field: reason``, ready for a user; the API maps it
    to HTTP 422 and keeps the structured list in ``errors``.
    """

    def __init__(self, what: str, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        details = "; ".join(f"{e['loc']}: {e['msg']}" if e["loc"] else e["msg"] for e in errors)
        super().__init__(f"invalid {what}: {details}")


class Settings(BaseSettings):
    """Everything the service, workers and CLI need to agree on."""

    model_config = SettingsConfigDict(env_prefix="ESMWATCH_", extra="forbid")

    data_dir: Path = Path("esmwatch-data")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: SQLite file esmwatch.sqlite in data_dir.")
    broker_url: str | None = Field(
        default=None,
        description="Celery broker (redis://...); None runs jobs in-process (embedded).")
    result_backend: str | None = Field(
        default=None,
        description="Optional Celery result backend; the database is the source of truth.")
    queue_prefix: str = Field(
        default="", description="Prefix of the io/gpu queue names (sites sharing a broker).")
    data_roots: list[Path] = Field(
        default_factory=list, description="Directories job inputs may name; default [data_dir].")
    results_dir: Path | None = Field(
        default=None, description="Job results; default data_dir/results.")
    cache_dir: Path | None = Field(
        default=None, description="Per-file feature cache; default data_dir/cache.")
    models_dir: Path | None = Field(
        default=None, description="Model registry files; default data_dir/models. Models are "
                                  "only ever loaded from here.")
    dask_scheduler: str | None = Field(
        default=None,
        description="dask scheduler for reading files; default: dask's choice in-process, "
                    "synchronous under Celery (one engine per mode, never nested).")
    lease_seconds: int = Field(
        default=300, ge=3, description="A running job's lease, renewed by its heartbeat.")
    max_attempts: int = Field(
        default=3, ge=1, description="Claims before a job whose worker keeps dying is failed.")
    db_retry_s: float = Field(
        default=120, ge=0,
        description="How long a job runner retries (with backoff) a claim or an outcome the "
                    "database could not take; a short outage then loses nothing.")
    task_time_limit_s: int = Field(
        default=3600, ge=10, description="Soft time limit of one job run.")
    reconcile_after_s: int = Field(
        default=600, ge=0, description="Queued this long, a job is dispatched again.")
    reconcile_interval_s: int = Field(
        default=300, ge=10, description="How often the reconciler runs.")
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest accepted API request body.")
    scan_cron: str | None = Field(
        default="0 2 * * *", description="Nightly scan (5-field cron, UTC); None disables it.")
    ingest_steal_after_s: float = Field(
        default=60, ge=0,
        description="With workers, a scan fans out one ingestion job per member (queue io) "
                    "and runs any still queued after this long itself, so it never waits on "
                    "a busy or absent io worker.")
    consistency_every_years: int = Field(
        default=5, ge=1,
        description="The scan tests a candidate against its reference once per this many new "
                    "complete model years, not every night: re-testing a growing run nightly "
                    "would let false alarms accumulate.")
    alert_risk: float = Field(
        default=0.5, gt=0, lt=1,
        description="Scan alert when a member's calibrated freeze risk reaches this.")
    alert_dir: Path | None = Field(
        default=None, description="File alert sink; default data_dir/alerts.")
    alert_webhook_url: str | None = Field(
        default=None, pattern=r"^https?://",
        description="Webhook alert sink: alerts are POSTed here as JSON.")
    alert_email_to: list[str] = Field(
        default_factory=list, description="Email alert sink: recipients (needs smtp_host).")
    alert_email_from: str | None = Field(
        default=None, description="Sender of alert emails; default esmwatch@<this host>.")
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = Field(
        default=False, description="Upgrade the SMTP connection with STARTTLS before sending.")
    smtp_user: str | None = Field(default=None, description="SMTP login, if the relay needs one.")
    smtp_password: SecretStr | None = None
    alert_github_issue: str | None = Field(
        default=None, pattern=r"^[\w.-]+/[\w.-]+#[0-9]+$",
        description="GitHub alert sink: owner/repo#number of the issue to comment on.")
    github_token: SecretStr | None = Field(
        default=None, description="Token allowed to comment on alert_github_issue.")
    github_api_url: str = Field(
        default="https://api.github.com", pattern=r"^https?://",
        description="GitHub REST API root (GitHub Enterprise: https://HOST/api/v3).")
    alert_timeout_s: float = Field(
        default=10.0, gt=0, description="Network timeout of one alert sink operation.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then environment, then the TOML file chosen at construction time."""
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, _config_file())

    @field_validator("scan_cron")
    @classmethod
    def _five_cron_fields(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a 5-field cron expression (m h dom mon dow)")
        return value

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        """Make every path absolute and fill the defaults that live under data_dir.

        Absolute paths mean the API server, workers and CLI agree whatever their working
        directory is.
        """
        self.data_dir = self.data_dir.expanduser().absolute()
        self.results_dir = _absolute(self.results_dir, self.data_dir / "results")
        self.cache_dir = _absolute(self.cache_dir, self.data_dir / "cache")
        self.models_dir = _absolute(self.models_dir, self.data_dir / "models")
        self.alert_dir = _absolute(self.alert_dir, self.data_dir / "alerts")
        self.data_roots = [root.expanduser().absolute() for root in self.data_roots] or [
            self.data_dir]
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'esmwatch.sqlite'}"
        return self

    @property
    def embedded(self) -> bool:
        """No broker: jobs run in this process."""
        return self.broker_url is None

    @property
    def file_scheduler(self) -> str | None:
        """The dask scheduler jobs read files with (None: let dask choose)."""
        if self.dask_scheduler is not None:
            return self.dask_scheduler
        return None if self.embedded else "synchronous"

    @property
    def hard_time_limit_s(self) -> int:
        """When Celery kills a job that ignored its soft time limit."""
        return self.task_time_limit_s + HARD_LIMIT_GRACE_S

    @property
    def visibility_timeout_s(self) -> int:
        """Redis re-delivers an unacknowledged message only after the longest possible run."""
        return self.hard_time_limit_s + VISIBILITY_MARGIN_S

    def queue_name(self, queue: QueueName) -> str:
        """The broker queue of ``io`` or ``gpu`` work at this site."""
        return self.queue_prefix + queue

    def job_results_dir(self, job_id: str) -> Path:
        """Where a finished job's artifacts live."""
        assert self.results_dir is not None  # filled by _derive_paths
        return self.results_dir / job_id

    def check_data_path(self, value: str | Path) -> Path:
        """Resolve ``value`` and require it to exist inside one of the data roots.

        Relative paths are taken relative to the first data root.  The check runs on the
        fully resolved path (symlinks followed, ``..`` removed) and before the path is
        opened, so neither ``..`` segments nor a symlink pointing out of a root get through
        (:func:`service.paths.confined_path`, which also says why messages never name the
        resolved path or the roots).

        Raises
        ------
        ValueError
            With a message quoting ``value``, for pydantic to report.
        """
        return confined_path(value, self.data_roots, where="the data roots")


def _absolute(value: Path | None, default: Path) -> Path:
    return (value if value is not None else default).expanduser().absolute()


def _config_file() -> Path:
    named = os.environ.get(CONFIG_ENV)
    if named is None:
        return Path(DEFAULT_CONFIG_FILE)
    if not Path(named).is_file():
        raise ConfigurationError(f"{named}: {CONFIG_ENV} names a settings file that does not exist")
    return Path(named)


def _inside_data_roots(value: str, info: ValidationInfo) -> str:
    settings = (info.context or {}).get("settings")
    if not isinstance(settings, Settings):
        raise ValueError("paths can only be validated against configured data roots "
                         "(use validate_with_settings)")
    return str(settings.check_data_path(value))


DataPath = Annotated[str, AfterValidator(_inside_data_roots)]
"""A path under the configured data roots, stored fully resolved."""
DataPaths = Annotated[list[DataPath], Field(min_length=1, max_length=MAX_ROOTS)]
"""One or more such paths (the roots of a job or an ensemble)."""


def validate_with_settings(model: type[Model], data: Mapping[str, Any] | None,
                           settings: Settings, *, what: str) -> Model:
    """Validate ``data`` into ``model``, checking every :data:`DataPath` against ``settings``.

    Raises
    ------
    InvalidParameters
        With one ``field: reason`` entry per problem; nothing has been read yet.
    """
    values = dict(data or {})
    try:
        check_json_value(values, what=what)
    except ValueError as err:
        raise InvalidParameters(what, [{"loc": "", "msg": str(err)}]) from None
    try:
        return model.model_validate(values, context={"settings": settings})
    except ValidationError as err:
        errors = [{"loc": ".".join(str(part) for part in e["loc"]),
                   "msg": e["msg"].removeprefix("Value error, ")}
                  for e in err.errors(include_url=False)[:MAX_ERRORS]]
        raise InvalidParameters(what, errors) from None


_override: Settings | None = None


@lru_cache(maxsize=1)
def _load_settings() -> Settings:
    return Settings()


def get_settings() -> Settings:
    """The process-wide settings: loaded once, or the ones set by :func:`override_settings`."""
    return _override if _override is not None else _load_settings()


@contextmanager
def override_settings(settings: Settings) -> Iterator[Settings]:
    """Make ``settings`` what :func:`get_settings` returns inside the block (for tests)."""
    global _override
    previous, _override = _override, settings
    try:
        yield settings
    finally:
        _override = previous
