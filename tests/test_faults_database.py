"""The database goes away for a while: the API answers 503, workers wait, nothing is lost.

The API (in-process) and a real prefork worker reach a fresh PostgreSQL database only
through a TCP proxy that the test cuts: open connections drop and new ones are refused,
as when the server restarts or the network to it fails.  Two moments are cut:

1. a long job is running and finishes its work during the outage: recording its outcome
   is retried with backoff and lands once the database is back;
2. a job's message arrives during the outage: its claim is retried the same way.

Both jobs then succeed on their first attempt, with one result each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError, OperationalError

from service.api import create_app
from service.jobs import dispatch, get_job_type, submit_job
from service.settings import Settings
from service.store import get_store, retry_db
from tests import faultkit, test_store
from tests.faultkit import (
    RedisServer,
    TcpProxy,
    WorkerProcess,
    archive_copy,
    attempt_dirs,
    long_archive,
    private_redis,
    reconcile_until_done,
    tcp_proxy,
    tmp_dirs,
    wait_until,
)
from tests.test_jobs import local_settings, write_archive

pytestmark = [pytest.mark.services, pytest.mark.timeout(150)]

UNAVAILABLE = {"detail": "database unavailable; try again later"}


@pytest.fixture(scope="module")
def proxy() -> Iterator[TcpProxy]:
    with tcp_proxy(("127.0.0.1", 5432)) as proxy:
        yield proxy


postgres_url = test_store.postgres_url  # a fresh database for the session, dropped after it


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, proxy: TcpProxy,
             postgres_url: str) -> Iterator[Settings]:
    base = tmp_path_factory.mktemp("database")
    with private_redis(base / "redis") as broker:
        settings = _settings(base, broker, proxy.url_for(postgres_url))
        get_store(settings)  # schema created through the proxy before anything is cut
        yield settings


def _settings(base: Path, broker: RedisServer, database_url: str) -> Settings:
    return local_settings(base, base / "archives", broker_url=broker.url(),
                          database_url=database_url, dask_scheduler=None, lease_seconds=10,
                          reconcile_after_s=30, db_retry_s=60, queue_prefix="faults-")


worker = faultkit.worker_fixture


def _assert_one_result(settings: Settings, job_id: str) -> None:
    assert attempt_dirs(settings, job_id) == [job_id]
    result = json.loads((settings.job_results_dir(job_id) / "result.json").read_text())
    assert result["job_id"] == job_id


def test_database_outage_while_a_job_finishes(settings: Settings, worker: WorkerProcess,
                                              proxy: TcpProxy,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    store = get_store(settings)
    client = TestClient(create_app(settings))
    auth = {"Authorization": f"Bearer {store.create_token('outage')}"}
    jobs_before = store.list_jobs()[1]
    archive = archive_copy(long_archive(tmp_path_factory), settings.data_roots[0] / "long")
    job_id = submit_job("features", {"roots": [str(archive)]}, settings=settings)
    wait_until(lambda: store.get_job(job_id).state == "running", 30)

    proxy.cut()
    cut_at = time.monotonic()
    job_response = client.get(f"/api/v1/jobs/{job_id}", headers=auth)
    assert (job_response.status_code, job_response.json()) == (503, UNAVAILABLE)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert (health.json()["database"], health.json()["broker"]) == ("unavailable", "ok")
    submitted = client.post("/api/v1/jobs", headers=auth,
                            json={"type": "features", "params": {"roots": [str(archive)]}})
    assert (submitted.status_code, submitted.json()) == (503, UNAVAILABLE)
    # the job's work is done during the outage; recording it waits for the database
    wait_until(lambda: f"job {job_id}: recording the outcome: database unavailable"
               in worker.text(), 60)
    time.sleep(1.0)
    proxy.restore()
    outage_s = time.monotonic() - cut_at

    started = time.monotonic()
    jobs, _ = reconcile_until_done(settings, [job_id], timeout=60)
    recorded_s = time.monotonic() - started
    job = jobs[job_id]
    assert (job.state, job.attempts) == ("succeeded", 1), job.error
    _assert_one_result(settings, job_id)
    assert store.list_jobs()[1] == jobs_before + 1  # the refused submission created nothing
    assert client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["state"] == "succeeded"
    assert client.get("/healthz").status_code == 200
    retries = worker.text().count(f"job {job_id}: recording the outcome: database unavailable")
    print(f"database outage of {outage_s:.1f} s over a job's end: recorded {recorded_s:.1f} s "
          f"after the database returned, {retries} retries, attempts {job.attempts}")


def test_database_outage_when_a_job_arrives(settings: Settings, worker: WorkerProcess,
                                            proxy: TcpProxy) -> None:
    store = get_store(settings)
    archive = write_archive(settings.data_roots[0] / "small", members=("001",), months=(1,))
    kind = get_job_type("features")
    params = kind.validate({"roots": [str(archive)]}, settings).model_dump(mode="json")
    job, _ = store.create_job("features", params)  # recorded; its message is sent below

    proxy.cut()
    cut_at = time.monotonic()
    dispatch(job.id, kind, settings)  # the broker is fine: the worker gets the message now
    wait_until(lambda: f"job {job.id}: claim: database unavailable" in worker.text(), 30)
    time.sleep(1.0)
    proxy.restore()
    outage_s = time.monotonic() - cut_at

    jobs, _ = reconcile_until_done(settings, [job.id], timeout=60)
    assert (jobs[job.id].state, jobs[job.id].attempts) == ("succeeded", 1), jobs[job.id].error
    _assert_one_result(settings, job.id)
    assert tmp_dirs(settings) == []
    retries = worker.text().count(f"job {job.id}: claim: database unavailable")
    print(f"database outage of {outage_s:.1f} s when a job arrived: claimed after "
          f"{retries} retries, attempts {jobs[job.id].attempts}")


def test_retry_db_retries_only_an_unreachable_database_and_gives_up_in_time() -> None:
    calls: list[float] = []

    def down_twice() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))
        return "ok"

    assert retry_db(down_twice, what="test", budget_s=5) == "ok" and len(calls) == 3
    assert calls[2] - calls[1] > calls[1] - calls[0] > 0.05  # backing off

    def constraint() -> None:
        calls.append(time.monotonic())
        raise IntegrityError("INSERT", {}, ValueError("duplicate"))

    calls.clear()
    with pytest.raises(IntegrityError):
        retry_db(constraint, what="test", budget_s=5)
    assert len(calls) == 1  # not an outage: raised at once

    def always_down() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))

    started = time.monotonic()
    with pytest.raises(OperationalError):
        retry_db(always_down, what="test", budget_s=0.5)
    assert time.monotonic() - started < 1.5
