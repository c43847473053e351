"""A worker SIGKILLed in the middle of a long job: the job still completes, exactly once.

A real ``celery worker`` (prefork pool) on a private Redis runs a ``features`` job over 72
real POP files.  Once the job is running and its attempt directory exists, the test kills
either the pool child running it or the main worker process.  A new worker (or the pool's
replacement child) and the reconciler must then finish the job: one ``succeeded`` row, one
result directory, no attempt directory published, nothing run twice to completion.
"""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from service import jobs
from service.api import create_app
from service.jobs import reconcile, submit_job
from service.settings import Settings
from service.store import get_store, utcnow
from tests import faultkit
from tests.faultkit import (
    LONG_MEMBERS,
    LONG_MONTHS,
    RedisServer,
    WorkerProcess,
    archive_copy,
    attempt_dirs,
    celery_worker,
    gone,
    long_archive,
    reconcile_until_done,
    tmp_dirs,
    wait_until,
)
from tests.test_jobs import local_settings

pytestmark = [pytest.mark.services, pytest.mark.timeout(150)]

LEASE_S = 3


redis_server = faultkit.redis_server_fixture
worker = faultkit.worker_fixture


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Settings:
    base = tmp_path_factory.mktemp("kill")
    return local_settings(base, base / "archives", broker_url=redis_server.url(),
                          dask_scheduler=None, lease_seconds=LEASE_S, reconcile_after_s=30,
                          queue_prefix="faults-")


def _running_with_partial_attempt(settings: Settings, job_id: str) -> bool:
    job = get_store(settings).get_job(job_id)
    return job.state == "running" and attempt_dirs(settings, job_id) == [f"{job_id}.tmp-1"]


def _assert_completed_once(settings: Settings, job_id: str, auth_client: TestClient,
                           auth: dict[str, str]) -> dict:
    """One succeeded row, one complete result, no attempt directory anywhere afterwards."""
    job = get_store(settings).get_job(job_id)
    assert job.state == "succeeded", job.error
    reconcile(settings)  # a pass after success removes the killed attempt's directory
    assert attempt_dirs(settings, job_id) == [job_id] and tmp_dirs(settings) == []
    result = json.loads((settings.job_results_dir(job_id) / "result.json").read_text())
    assert result["job_id"] == job_id and result["n_members"] == LONG_MEMBERS
    assert result["files_read"] == LONG_MEMBERS * LONG_MONTHS  # the killed read cached nothing
    assert job.artifacts == ["features.nc", "result.json"]
    served = auth_client.get(f"/api/v1/jobs/{job_id}/artifacts/result.json", headers=auth)
    assert served.status_code == 200 and served.json() == result
    return result


def _kill_mid_job(settings: Settings, worker: WorkerProcess, kill: str,
                  tmp_path_factory: pytest.TempPathFactory
                  ) -> tuple[str, TestClient, dict[str, str]]:
    client = TestClient(create_app(settings))
    auth = {"Authorization": f"Bearer {get_store(settings).create_token('faults')}"}
    archive = archive_copy(long_archive(tmp_path_factory), settings.data_roots[0] / kill)
    job_id = submit_job("features", {"roots": [str(archive)]}, settings=settings)
    wait_until(lambda: _running_with_partial_attempt(settings, job_id), 30)
    # the attempt directory is not a result: nothing is served while it is being written
    assert client.get(f"/api/v1/jobs/{job_id}/artifacts/result.json",
                      headers=auth).status_code == 404
    if kill == "pool child":
        worker.kill_pool_child()
    else:
        orphans = worker.kill_main()
        assert orphans and not worker.alive
        wait_until(lambda: all(gone(pid) for pid in orphans), 5)  # died with it (PDEATHSIG)
    time.sleep(0.5)
    assert get_store(settings).get_job(job_id).state == "running"  # nobody finished it
    assert not settings.job_results_dir(job_id).exists()
    return job_id, client, auth


def test_pool_child_killed_mid_job(settings: Settings, worker: WorkerProcess,
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    job_id, client, auth = _kill_mid_job(settings, worker, "pool child", tmp_path_factory)
    started = time.monotonic()
    jobs, passes = reconcile_until_done(settings, [job_id], timeout=60)
    recovered_s = time.monotonic() - started
    _assert_completed_once(settings, job_id, client, auth)
    assert worker.alive  # the main process lived on and replaced its child
    log = worker.text()
    assert "WorkerLostError" in log and "signal 9 (SIGKILL)" in log
    assert jobs[job_id].attempts == 2
    print(f"pool child SIGKILL: recovered in {recovered_s:.1f} s, attempts "
          f"{jobs[job_id].attempts}, reconcile passes {passes}, redelivered and skipped "
          f"{log.count(f'job {job_id} not claimable')}")


def test_main_worker_process_killed_mid_job(settings: Settings, worker: WorkerProcess,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    job_id, client, auth = _kill_mid_job(settings, worker, "main", tmp_path_factory)
    worker.stop()  # nothing left in its process group
    started = time.monotonic()
    worker.start()  # a new worker process, as a supervisor would start
    jobs, passes = reconcile_until_done(settings, [job_id], timeout=60)
    recovered_s = time.monotonic() - started
    _assert_completed_once(settings, job_id, client, auth)
    assert f"job {job_id} (features) attempt 2 claimed" in worker.text()
    assert jobs[job_id].attempts == 2
    print(f"main process SIGKILL: recovered in {recovered_s:.1f} s (worker restart included), "
          f"attempts {jobs[job_id].attempts}, reconcile passes {passes}")


@pytest.fixture(scope="module")
def restart_settings(tmp_path_factory: pytest.TempPathFactory,
                     redis_server: RedisServer) -> Settings:
    """A default-length lease and no reconcile pass: only the restart can recover the job."""
    base = tmp_path_factory.mktemp("restart")
    return local_settings(base, base / "archives", broker_url=redis_server.url(),
                          dask_scheduler=None, lease_seconds=300, reconcile_after_s=600,
                          queue_prefix="restart-")


@pytest.mark.timeout(240)
def test_restarted_worker_requeues_its_own_interrupted_job_at_once(
        restart_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = restart_settings
    log = settings.data_dir.parent / "named-worker.log"
    with celery_worker(settings, log, pool="prefork", name="restart-node@%h") as named:
        job_id, client, auth = _kill_mid_job(settings, named, "main", tmp_path_factory)
        named.stop()
        started = time.monotonic()
        named.start()  # the same node name, as a supervisor restarts it
        ready_s = time.monotonic() - started
        claimed_s = wait_until(lambda: get_store(settings).get_job(job_id).attempts == 2, 10)
        wait_until(lambda: get_store(settings).get_job(job_id).state == "succeeded", 60)
        done_s = time.monotonic() - started
    _assert_completed_once(settings, job_id, client, auth)
    assert "still leased to its previous run" in named.text()
    print(f"worker restart: ready {ready_s:.1f} s after start, job claimed again "
          f"{claimed_s:.1f} s after ready, succeeded {done_s:.1f} s after start "
          f"(lease 300 s, no reconcile pass)")


def test_a_worker_leaves_other_workers_jobs_and_its_own_current_ones(
        restart_settings: Settings) -> None:
    store = get_store(restart_settings)
    node = "esmwatch@host-a"
    ids = {}
    for holder in (f"{node}/0ld1ncar:11/1", f"{node}/{jobs.INCARNATION}:12/2",
                   "other@host-b/0ld1ncar:11/3", f"{node}x/0ld1ncar:11/4"):
        job, _ = store.create_job("features", {"roots": []})
        assert store.claim_job(job.id, holder)
        ids[holder] = job.id
    recovered = jobs.recover_own_jobs(node, restart_settings)
    assert recovered == [ids[f"{node}/0ld1ncar:11/1"]]
    leases = {holder: store.get_job(job_id).lease_expires for holder, job_id in ids.items()}
    assert leases[f"{node}/0ld1ncar:11/1"] < utcnow() < min(
        leases[h] for h in ids if h != f"{node}/0ld1ncar:11/1")
