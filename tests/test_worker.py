"""Celery: JSON-only configuration, and a real worker process on the local Redis.

The worker runs as a subprocess (``celery -A workers.celery_app worker --pool=solo``,
started by ``tests/faultkit.py``) on Redis database 15 with queue names unique to this test
module, shares a SQLite database with the test, and is stopped (then killed if need be)
when the module ends.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from ensembles.errors import ConfigurationError
from service import jobs
from service.api import create_app
from service.broker import RUN_TASK
from service.jobs import dispatch, get_job_type, job_types, submit_job
from service.settings import Settings, override_settings, validate_with_settings
from service.store import EnsembleSpec, get_store
from tests.faultkit import celery_worker
from tests.test_jobs import CASE, local_settings, wait_for, write_archive
from workers import celery_app
from workers.celery_app import create_celery
from workers.tasks import run_job_task, submit_scheduled_task

REDIS_URL = os.environ.get("ESMWATCH_TEST_REDIS", "redis://127.0.0.1:6379/15")


def test_celery_is_configured_json_only_with_late_acks(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url=REDIS_URL, task_time_limit_s=600,
                        queue_prefix="site-")
    conf = create_celery(settings).conf
    assert (conf.task_serializer, conf.result_serializer, conf.event_serializer) == (
        "json", "json", "json")
    assert list(conf.accept_content) == ["json"] and list(conf.result_accept_content) == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (600, 630)
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert [q.name for q in conf.task_queues] == ["site-io", "site-gpu"]
    assert conf.beat_scheduler == "celery.beat:Scheduler"  # not the shelve (pickle) file
    assert conf.beat_schedule["nightly-scan"]["args"] == ["scan"]
    assert "nightly-scan" not in create_celery(
        Settings(data_dir=tmp_path, broker_url=REDIS_URL, scan_cron=None)).conf.beat_schedule


def test_the_worker_app_has_only_thin_generic_tasks(tmp_path: Path) -> None:
    app = create_celery(Settings(data_dir=tmp_path, broker_url=REDIS_URL))
    assert sorted(name for name in app.tasks if name.startswith("esmwatch.")) == [
        "esmwatch.reconcile", RUN_TASK, "esmwatch.submit_scheduled"]
    with pytest.raises(ValueError):
        run_job_task.run("../../etc/passwd")  # only a job id is accepted


def test_the_module_app_needs_a_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with override_settings(Settings(data_dir=tmp_path, broker_url=None)), pytest.raises(
            ConfigurationError, match="no broker configured"):
        create_celery()
    monkeypatch.setattr(celery_app, "_app", lambda: "the app")
    assert celery_app.app == "the app"  # built on first access, not at import


def test_a_scheduled_job_is_submitted_once_per_minute_and_skipped_if_unknown(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "scan" in job_types() and "no-such-job" not in job_types()
    monkeypatch.setattr(jobs, "utcnow", lambda: datetime(2026, 11, 26, 2, 0, 30, tzinfo=UTC))
    settings = Settings(data_dir=tmp_path, broker_url=None)
    with override_settings(settings):
        assert submit_scheduled_task("no-such-job") is None
        first = submit_scheduled_task("scan")
        assert first is not None and submit_scheduled_task("scan") == first


# ---- a real worker ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    base = tmp_path_factory.mktemp("celery")
    archives = base / "archives"  # a/ for the API test, b/ so the other test shares no cache
    write_archive(archives / "a", members=("001", "002", "003"), months=(1,))
    write_archive(archives / "b", members=("001",), months=(1,))
    write_archive(archives / "c", members=("001", "002"), months=(1, 2))
    return local_settings(base, archives, broker_url=REDIS_URL, dask_scheduler=None,
                          lease_seconds=30, ingest_steal_after_s=2,
                          queue_prefix=f"esmwatch-test-{uuid.uuid4().hex[:8]}-")


@pytest.fixture(scope="module")
def worker(worker_settings: Settings) -> Iterator[Path]:
    """A Celery worker subprocess; yields the path of its log."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as err:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {err}")
    settings = worker_settings
    try:
        with celery_worker(settings, settings.data_dir.parent / "worker.log") as process:
            yield process.log
    finally:
        for key in client.scan_iter(f"*{settings.queue_prefix}*"):
            client.delete(key)
        client.close()


def _comparable(result: dict) -> dict:
    """A result without what differs between two runs of the same job: its id."""
    return {key: value for key, value in result.items() if key != "job_id"}


@pytest.mark.services
@pytest.mark.timeout(120)
def test_worker_runs_an_api_job_like_the_embedded_mode(worker: Path, worker_settings: Settings,
                                                       tmp_path: Path) -> None:
    settings = worker_settings
    archive = settings.data_roots[0] / "a"
    with TestClient(create_app(settings)) as client:
        auth = {"Authorization": f"Bearer {get_store(settings).create_token('worker-test')}"}
        response = client.post("/api/v1/jobs", headers=auth,
                               json={"type": "features", "params": {"roots": [str(archive)]}})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]

        def finished() -> bool:
            return client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["state"] in (
                "succeeded", "failed", "cancelled")

        wait_for(finished, 60)
        job = client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()
        assert job["state"] == "succeeded", f"{job['error']}\n{worker.read_text()}"
        celery_result = client.get(f"/api/v1/jobs/{job_id}/artifacts/result.json",
                                   headers=auth).json()
    assert f"{job_id}" in worker.read_text() and celery_result["n_members"] == 3

    embedded = local_settings(tmp_path, settings.data_roots[0])
    embedded_id = submit_job("features", {"roots": [str(archive)]}, settings=embedded, wait=True)
    embedded_result = json.loads(
        (embedded.job_results_dir(embedded_id) / "result.json").read_text())
    assert _comparable(celery_result) == _comparable(embedded_result)


@pytest.mark.services
@pytest.mark.timeout(120)
def test_a_message_delivered_twice_runs_once(worker: Path, worker_settings: Settings) -> None:
    settings = worker_settings
    store = get_store(settings)
    job_id = submit_job("features", {"roots": ["b"]}, settings=settings)
    dispatch(job_id, get_job_type("features"), settings)  # the same job id, a second message
    wait_for(lambda: worker.read_text().count(job_id) >= 2 and
             store.get_job(job_id).state == "succeeded" and
             f"job {job_id} not claimable" in worker.read_text(), 60)
    job = store.get_job(job_id)
    assert job.attempts == 1
    assert sorted(p.name for p in settings.results_dir.glob(f"{job_id}*")) == [job_id]


@pytest.mark.services
@pytest.mark.timeout(180)
def test_a_scan_fans_out_one_ingestion_job_per_member(worker: Path,
                                                      worker_settings: Settings) -> None:
    """The scan (queue gpu) waits on ingest jobs (queue io); with one solo worker busy with
    the scan it runs the queued ones itself, so nothing deadlocks and every file is read
    once, by an ingestion job."""
    settings = worker_settings
    store = get_store(settings)
    store.add_ensemble(validate_with_settings(EnsembleSpec, {
        "name": "fan-out", "kind": "pertlim", "configuration": "test",
        "roots": [str(settings.data_roots[0] / "c")]}, settings, what="ensemble"))
    job_id = submit_job("scan", {"ensembles": ["fan-out"], "send_alerts": False},
                        settings=settings)
    wait_for(lambda: store.get_job(job_id).state in ("succeeded", "failed"), 150)
    job = store.get_job(job_id)
    assert job.state == "succeeded", f"{job.error}\n{worker.read_text()}"
    ingests, _ = store.list_jobs(job_type="ingest", limit=50)
    mine = [j for j in ingests if j.params["roots"] == [str(settings.data_roots[0] / "c")]]
    assert sorted(j.params["case"] for j in mine) == [f"{CASE}.{m}" for m in ("001", "002")]
    assert all(j.state == "succeeded" for j in mine)
    result = json.loads((settings.job_results_dir(job_id) / "result.json").read_text())
    assert result["files_read"] == 0 and result["files_cached"] > 0  # all read by ingestion
