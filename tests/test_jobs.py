"""Job framework in the embedded mode: settings, path policy, registry, runner, reconciler.

The archive is a few tiny but faithful POP history files (``tests/cesm_files.py``); the
features job really reads them.  Test-only job types are registered for the duration of a
test to count how often a job function actually runs.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.exc import ProgrammingError

from detectors.contracts import ResultContract
from ensembles.errors import ConfigurationError, InputFileError
from service import jobs
from service.analyses import inputs
from service.job_types import FeaturesResult
from service.jobs import (
    JobContext,
    JobType,
    UnknownJobType,
    job_types,
    reconcile,
    register,
    result_schemas,
    run_job,
    submit_job,
    submit_scheduled,
    unregister,
)
from service.kinds import QUEUES
from service.settings import InvalidParameters, Settings, get_settings, override_settings
from service.store import get_store
from tests.cesm_files import write_pop
from tests.test_store import expire_lease

LAT_E = np.arange(50.0, 71.0, 2.0)
LON_E = np.arange(-70.0, -39.0, 2.0)
SHAPE = (LAT_E.size - 1, LON_E.size - 1)
CASE = "b.e21.B1850.f09_g17.svc"


def write_archive(root: Path, members: tuple[str, ...] = ("001", "002"), months=(1, 2)) -> Path:
    """``<root>/<case>/ocn/hist/<case>.pop.h.0001-0M.nc`` for each member and month."""
    for i, member in enumerate(members):
        case = f"{CASE}.{member}"
        for month in months:
            path = root / case / "ocn" / "hist" / f"{case}.pop.h.0001-{month:02d}.nc"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_pop(path, LAT_E, LON_E, {
                "SALT": np.full((1, 5, *SHAPE), 34.5 - i / 10 + month / 100),
                "HMXL": np.full((1, *SHAPE), 1.0e5 * (i + 1)),
            }, months=(month,))
    return root


def local_settings(tmp_path: Path, archive: Path, **overrides: object) -> Settings:
    """Everything under ``tmp_path``, embedded mode (no broker) unless overridden."""
    values: dict[str, object] = {"data_dir": tmp_path / "data", "database_url": None,
                                 "broker_url": None, "data_roots": [archive],
                                 "dask_scheduler": "synchronous"}
    return Settings(**{**values, **overrides})


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return write_archive(tmp_path / "archive")


@pytest.fixture
def settings(tmp_path: Path, archive: Path) -> Settings:
    return local_settings(tmp_path, archive, reconcile_after_s=0)


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Recorder:
    """A test job type whose function counts its runs and can be held or made to fail."""

    def __init__(self) -> None:
        self.runs = 0
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.error: Exception | None = None

    def run(self, params: NoParams, ctx: JobContext) -> ResultContract:
        self.runs += 1
        (ctx.workdir / "partial.txt").write_text("written before the job finished")
        self.started.set()
        assert self.release.wait(30)
        if self.error is not None:
            raise self.error
        return ResultContract(**ctx.provenance(params))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recorder = Recorder()
    register(JobType("test-recorder", NoParams, recorder.run, queue="io", result=ResultContract))
    yield recorder
    unregister("test-recorder")


def job_dirs(settings: Settings, job_id: str) -> list[str]:
    assert settings.results_dir is not None
    return sorted(p.name for p in settings.results_dir.glob(f"{job_id}*"))


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ---- settings ---------------------------------------------------------------------------


def test_settings_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=None, broker_url=None)
    assert settings.embedded and settings.database_url == f"sqlite:///{tmp_path}/esmwatch.sqlite"
    assert (settings.results_dir, settings.cache_dir, settings.data_roots) == (
        tmp_path / "results", tmp_path / "cache", [tmp_path])
    assert settings.visibility_timeout_s > settings.hard_time_limit_s > settings.task_time_limit_s
    assert settings.max_body_bytes == 1 << 20 and settings.scan_cron == "0 2 * * *"


def test_settings_from_environment_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    config = tmp_path / "site.toml"
    config.write_text(f'data_dir = "{tmp_path}"\nlease_seconds = 60\nqueue_prefix = "site-"\n')
    monkeypatch.setenv("ESMWATCH_CONFIG", str(config))
    monkeypatch.setenv("ESMWATCH_LEASE_SECONDS", "90")  # the environment wins over the file
    monkeypatch.setenv("ESMWATCH_DATA_ROOTS", json.dumps([str(tmp_path / "a"), "b"]))
    settings = Settings()
    assert (settings.lease_seconds, settings.queue_prefix) == (90, "site-")
    assert settings.data_roots == [tmp_path / "a", Path.cwd() / "b"]
    monkeypatch.setenv("ESMWATCH_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigurationError, match=r"missing\.toml"):
        Settings()
    monkeypatch.delenv("ESMWATCH_CONFIG")
    with pytest.raises(ValidationError, match="5-field cron"):
        Settings(scan_cron="daily")


def test_override_settings(settings: Settings) -> None:
    with override_settings(settings):
        assert get_settings() is settings
    assert get_settings() is not settings


# ---- the data-roots policy --------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "file.nc").write_text("not for job parameters")
    return secret


@pytest.mark.parametrize("make_path", [
    pytest.param(lambda archive, outside: "../secret", id="relative-dotdot"),
    pytest.param(lambda archive, outside: f"{archive}/../secret", id="absolute-dotdot"),
    pytest.param(lambda archive, outside: str(outside), id="outside-root"),
    pytest.param(lambda archive, outside: "/", id="filesystem-root"),
    pytest.param(lambda archive, outside: _symlink(archive / "link", outside), id="symlink-out"),
])
def test_paths_outside_the_data_roots_are_rejected_before_anything_happens(
        settings: Settings, archive: Path, outside: Path, make_path, monkeypatch) -> None:
    monkeypatch.setattr(inputs, "build_features", _must_not_be_called)
    with pytest.raises(InvalidParameters, match="outside the data roots"):
        submit_job("features", {"roots": [make_path(archive, outside)]}, settings=settings,
                   wait=True)
    assert get_store(settings).list_jobs()[1] == 0


def _symlink(link: Path, target: Path) -> str:
    link.symlink_to(target)
    return str(link)


def _must_not_be_called(*args: object, **kwargs: object) -> None:
    raise AssertionError("an input was read for a rejected job")


@pytest.mark.parametrize(("params", "message"), [
    ({"roots": ["no-such-case"]}, "does not exist"),
    ({"roots": []}, "at least 1 item"),
    ({}, "roots: Field required"),
    ({"roots": ["."], "colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"roots": ["."], "output_name": "../features.nc"}, "output_name: String should match"),
])
def test_invalid_parameters_are_reported_per_field(settings: Settings, params: dict,
                                                   message: str) -> None:
    with pytest.raises(InvalidParameters, match=message) as caught:
        submit_job("features", params, settings=settings)
    assert caught.value.errors and get_store(settings).list_jobs()[1] == 0


def test_unknown_job_type(settings: Settings) -> None:
    with pytest.raises(UnknownJobType, match=r"unknown job type 'nope'.*features"):
        submit_job("nope", {}, settings=settings)


def test_relative_paths_resolve_inside_the_first_root(settings: Settings, archive: Path) -> None:
    job_id = submit_job("features", {"roots": ["."]}, settings=settings, wait=True)
    assert get_store(settings).get_job(job_id).params["roots"] == [str(archive.resolve())]


# ---- the registry -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(job_types()))
def test_every_registered_job_type_is_well_formed(name: str) -> None:
    kind = job_types()[name]
    assert kind.queue in QUEUES and kind.description
    assert kind.params.model_config.get("extra") == "forbid"
    schema = result_schemas()[name]
    assert {"schema", "job", "job_id", "esmwatch_version", "params"} <= set(schema["properties"])


def test_registry_rejects_duplicates_and_unknown_queues(recorder: Recorder) -> None:
    with pytest.raises(ConfigurationError, match="already registered"):
        register(JobType("test-recorder", NoParams, recorder.run, queue="io",
                         result=ResultContract))
    with pytest.raises(ConfigurationError, match="queue must be one of"):
        register(JobType("test-bad", NoParams, recorder.run, queue="cpu",  # type: ignore[arg-type]
                         result=ResultContract))


# ---- running ----------------------------------------------------------------------------


def test_features_job_writes_its_result_atomically(settings: Settings, archive: Path) -> None:
    job_id = submit_job("features", {"roots": [str(archive)]}, settings=settings, wait=True)
    job = get_store(settings).get_job(job_id)
    assert job.state == "succeeded", job.error
    assert job.artifacts == ["features.nc", "result.json"]
    assert job_dirs(settings, job_id) == [job_id]  # no attempt directory left behind
    result = FeaturesResult.model_validate_json(Path(job.result_path, "result.json").read_text())
    assert (result.job_id, result.n_members, result.n_months) == (job_id, 2, 2)
    assert result.params["roots"] == [str(archive)] and result.problems == []
    assert job.message == result.summary()
    with xr.open_dataset(Path(job.result_path, "features.nc")) as features:
        assert features.sizes == {"member": 2, "time": 2}
        assert float(features["hmxl_labsea_interior"][1, 0]) == pytest.approx(2000.0)


def test_features_job_without_members_fails_with_a_clear_message(settings: Settings,
                                                                 archive: Path) -> None:
    empty = archive / "empty"
    empty.mkdir()
    job_id = submit_job("features", {"roots": [str(empty)]}, settings=settings, wait=True)
    job = get_store(settings).get_job(job_id)
    assert job.state == "failed" and job.error == f"{empty}: no CESM output: no .nc files at all"
    assert job_dirs(settings, job_id) == []


def test_a_job_delivered_twice_runs_once(settings: Settings, recorder: Recorder) -> None:
    job_id = submit_job("test-recorder", {}, settings=settings, wait=True)
    assert run_job(job_id, settings=settings) == "skipped"
    assert recorder.runs == 1 and job_dirs(settings, job_id) == [job_id]


def test_concurrent_deliveries_run_once(settings: Settings, recorder: Recorder) -> None:
    recorder.release.clear()
    job_id = get_store(settings).create_job("test-recorder", {})[0].id
    first = threading.Thread(target=run_job, args=(job_id,), kwargs={"settings": settings})
    first.start()
    assert recorder.started.wait(30)
    assert run_job(job_id, settings=settings) == "skipped"
    recorder.release.set()
    first.join(30)
    assert recorder.runs == 1 and get_store(settings).get_job(job_id).state == "succeeded"


def test_embedded_submission_runs_in_a_background_thread(settings: Settings,
                                                         recorder: Recorder) -> None:
    job_id = submit_job("test-recorder", {}, settings=settings)
    store = get_store(settings)
    wait_for(lambda: store.get_job(job_id).state == "succeeded")
    assert recorder.runs == 1


@pytest.mark.parametrize(("error", "expected"), [
    (InputFileError("/data/x.nc", "truncated"), "/data/x.nc: truncated"),
    (RuntimeError("bug near /srv/secret"), "unexpected RuntimeError; see the server log"),
    (ProgrammingError("SELECT ensembles.id FROM ensembles WHERE ensembles.name = ?", [["x"]],
                      sqlite3.ProgrammingError("Error binding parameter 1")),
     "database error (ProgrammingError); see the server log"),
])
def test_failures_are_recorded_and_leave_no_partial_result(
        settings: Settings, recorder: Recorder, error: Exception, expected: str, caplog) -> None:
    recorder.error = error
    with caplog.at_level(logging.ERROR, logger="service.jobs"):
        job_id = submit_job("test-recorder", {}, settings=settings, wait=True)
    job = get_store(settings).get_job(job_id)
    assert (job.state, job.error, job.artifacts) == ("failed", expected, [])
    assert job_dirs(settings, job_id) == []
    assert bool(caplog.records) != isinstance(error, InputFileError)  # tracebacks for bugs only


def test_cancelling_a_running_job_discards_its_result(settings: Settings,
                                                      recorder: Recorder) -> None:
    recorder.release.clear()
    store = get_store(settings)
    job, _ = store.create_job("test-recorder", {})
    outcome: list[str] = []
    runner = threading.Thread(target=lambda: outcome.append(run_job(job.id, settings=settings)))
    runner.start()
    assert recorder.started.wait(30)
    assert store.cancel_job(job.id)
    recorder.release.set()
    runner.join(30)
    assert outcome == ["lost"] and store.get_job(job.id).state == "cancelled"
    assert job_dirs(settings, job.id) == []


def test_expired_lease_is_reconciled_and_the_job_reclaimed(settings: Settings,
                                                           recorder: Recorder) -> None:
    store = get_store(settings)
    job, _ = store.create_job("test-recorder", {})
    assert store.claim_job(job.id, "a-worker-that-died")
    half_written = settings.job_results_dir(job.id).with_name(f"{job.id}.tmp-1")
    half_written.mkdir(parents=True)
    (half_written / "result.json").write_text("{")
    assert reconcile(settings, wait=True).dispatched == []  # lease still valid: hands off
    expire_lease(store, job.id)
    report = reconcile(settings, wait=True)
    assert report.dispatched == [job.id] and report.removed == [half_written.name]
    done = store.get_job(job.id)
    assert (done.state, done.attempts, recorder.runs) == ("succeeded", 2, 1)
    assert job_dirs(settings, job.id) == [job.id]
    assert json.loads(Path(done.result_path, "result.json").read_text())["job_id"] == job.id


def test_queued_job_whose_message_was_lost_is_dispatched_again(settings: Settings,
                                                               recorder: Recorder) -> None:
    store = get_store(settings)
    job, _ = store.create_job("test-recorder", {})  # written, never dispatched
    assert reconcile(settings, wait=True).dispatched == [job.id]
    assert store.get_job(job.id).state == "succeeded" and recorder.runs == 1
    assert reconcile(settings, wait=True).dispatched == []


def test_reconcile_fails_a_job_that_exhausted_its_attempts(tmp_path: Path, archive: Path,
                                                          recorder: Recorder) -> None:
    settings = local_settings(tmp_path, archive, max_attempts=1)
    store = get_store(settings)
    job, _ = store.create_job("test-recorder", {})
    assert store.claim_job(job.id, "w")
    expire_lease(store, job.id)
    assert reconcile(settings, wait=True).failed == [job.id]
    assert store.get_job(job.id).state == "failed" and recorder.runs == 0


def test_unreachable_broker_leaves_the_job_queued(tmp_path: Path, archive: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    settings = local_settings(tmp_path, archive, broker_url="redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="service.jobs"):
        job_id = submit_job("features", {"roots": ["."]}, settings=settings)
    assert get_store(settings).get_job(job_id).state == "queued"
    assert "reconciler will dispatch it again" in caplog.text


def test_scheduled_submission_once_per_slot(settings: Settings, recorder: Recorder,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert submit_scheduled("nightly-test", settings) is None  # no such job type: skipped
    register(JobType("nightly-test", NoParams, recorder.run, queue="io", result=ResultContract))
    monkeypatch.setattr(jobs, "utcnow", lambda: datetime(2025, 1, 1, 2, 0, 30, tzinfo=UTC))
    try:
        first = submit_scheduled("nightly-test", settings)
        assert first is not None and submit_scheduled("nightly-test", settings) == first
        store = get_store(settings)
        wait_for(lambda: store.get_job(first).state == "succeeded")
        assert recorder.runs == 1
    finally:
        unregister("nightly-test")
