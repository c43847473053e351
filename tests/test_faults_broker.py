"""Broker loss with jobs queued and running: every job still completes, exactly once.

A private ``redis-server`` (no persistence) is the broker of a real prefork worker.  With one
long job running and two more waiting in the queue, the test either kills and restarts
Redis (all messages gone, clients disconnected) or FLUSHALLs it (messages and kombu's
routing tables gone, connections kept).  While Redis is down the API keeps answering,
``/healthz`` says the broker is ``degraded`` and a new submission is still recorded.  The
reconciler (run here as beat would run it) then re-dispatches what lost its message.
"""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.settings import Settings
from service.store import get_store
from tests import faultkit
from tests.faultkit import (
    RedisServer,
    WorkerProcess,
    archive_copy,
    attempt_dirs,
    long_archive,
    reconcile_until_done,
    tmp_dirs,
    wait_until,
)
from tests.test_jobs import local_settings, write_archive

pytestmark = [pytest.mark.services, pytest.mark.timeout(150)]


redis_server = faultkit.redis_server_fixture
worker = faultkit.worker_fixture


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Settings:
    base = tmp_path_factory.mktemp("broker")
    return local_settings(base, base / "archives", broker_url=redis_server.url(),
                          dask_scheduler=None, lease_seconds=3, reconcile_after_s=2,
                          queue_prefix="faults-")


def _submit(client: TestClient, auth: dict[str, str], root: str) -> str:
    response = client.post("/api/v1/jobs", headers=auth,
                           json={"type": "features", "params": {"roots": [root]}})
    assert response.status_code == 202, response.text
    return response.json()["id"]


@pytest.mark.parametrize("fault", ["restart", "flushall"])
def test_broker_lost_with_jobs_queued_and_running(
        fault: str, settings: Settings, worker: WorkerProcess, redis_server: RedisServer,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    roots = settings.data_roots[0]
    long = archive_copy(long_archive(tmp_path_factory), roots / f"{fault}-long")
    small = [write_archive(roots / f"{fault}-{n}", members=("001",), months=(1,))
             for n in ("b", "c", "d")]
    store = get_store(settings)
    client = TestClient(create_app(settings))
    auth = {"Authorization": f"Bearer {store.create_token(fault)}"}
    running = _submit(client, auth, str(long))
    wait_until(lambda: store.get_job(running).state == "running", 30)
    queued = [_submit(client, auth, str(root)) for root in small[:2]]
    with redis_server.client() as broker:
        assert broker.llen(settings.queue_name("io")) == 2  # really waiting in the broker

    down_s = 0.0
    if fault == "restart":
        redis_server.kill()
        went_down = time.monotonic()
        assert store.get_job(running).state == "running"  # the fault hit a running job
        health = client.get("/healthz")
        assert health.status_code == 200  # the API is up; only the broker is missing
        assert health.json() | {"version": "-"} == {
            "status": "degraded", "database": "ok", "broker": "degraded", "version": "-"}
        assert client.get("/api/v1/jobs", headers=auth).status_code == 200
        late = _submit(client, auth, str(small[2]))  # recorded now, dispatched later
        assert store.get_job(late).state == "queued"
        redis_server.start()  # same port, empty: every message is gone
        down_s = time.monotonic() - went_down
    else:
        redis_server.flushall()
        assert store.get_job(running).state == "running"
        late = _submit(client, auth, str(small[2]))
    with redis_server.client() as broker:
        assert broker.llen(settings.queue_name("io")) <= 1  # the two queued messages are gone

    started = time.monotonic()
    jobs, passes = reconcile_until_done(settings, [running, *queued, late], timeout=90)
    recovered_s = time.monotonic() - started
    assert client.get("/healthz").json()["broker"] == "ok"
    for job_id, job in jobs.items():
        assert job.state == "succeeded", (job_id, job.error, worker.text()[-3000:])
        assert attempt_dirs(settings, job_id) == [job_id]
        result = json.loads((settings.job_results_dir(job_id) / "result.json").read_text())
        assert result["job_id"] == job_id
    assert jobs[running].attempts <= 2 and all(jobs[j].attempts == 1 for j in [*queued, late])
    assert tmp_dirs(settings) == [] and worker.alive
    print(f"broker {fault}: down {down_s:.1f} s, all 4 jobs done {recovered_s:.1f} s later, "
          f"reconcile passes {passes}, attempts "
          f"{[jobs[j].attempts for j in [running, *queued, late]]}")
