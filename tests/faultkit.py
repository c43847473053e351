"""Fault-injection kit: servers the tests own, a TCP proxy they can cut, real worker processes.

Faults are injected only into what a test starts itself: a private ``redis-server`` on a free
loopback port (no persistence, so a restart really loses every message), a TCP proxy in front
of the local PostgreSQL that a test can cut and restore, and Celery worker subprocesses that a
test can SIGKILL.  No fault ever reaches the machine's shared Redis (6379) or PostgreSQL
(5432): the database tests only create and drop a database of their own there
(``tests/test_store.py``'s ``postgres_url``) and reach it through the proxy.

Everything here is a context manager that cleans up by process group, so that a failing test
leaves no stray process behind on a 2-core CI machine; the test modules wrap them in small
fixtures.  Missing servers skip, saying which and why.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import redis

from service.jobs import TMP_MARK, reconcile
from service.kinds import QUEUES, TERMINAL_STATES
from service.settings import Settings
from service.store import Job, get_store
from tests.cesm_files import write_pop
from tests.test_jobs import CASE, wait_for

WORKER_START_S = 45

# A "long" archive: enough real POP files on a grid of the size docs/design.md allows
# (100 x 116) that a features job reads for a few seconds, long enough to be killed or cut
# off in the middle.
LONG_MEMBERS = 6
LONG_MONTHS = 12
_LONG_LAT_E = np.linspace(45.0, 75.0, 101)
_LONG_LON_E = np.linspace(-75.0, -40.0, 117)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process_group(process: subprocess.Popen, *, grace_s: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left; never leaves a zombie."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived their leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


# ---- a private Redis ----------------------------------------------------------------------


class RedisServer:
    """A ``redis-server`` of this test alone, on a free port, keeping nothing on disk.

    ``kill`` and ``start`` on the same port model a broker crash and restart; as there is no
    persistence, every queued and unacknowledged message is gone afterwards.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(self._answers, 10)

    def _answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, "redis-server exited"
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: the broker vanishes with everything it held."""
        if self.process is not None:
            stop_process_group(self.process, grace_s=0)
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()


@contextlib.contextmanager
def private_redis(workdir: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: broker faults need a private Redis")
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# ---- a TCP proxy that can be cut ----------------------------------------------------------


class TcpProxy:
    """Forwards a loopback port to ``target``; ``cut`` makes the target unreachable.

    ``cut`` closes every open connection and stops listening, so clients see their
    connections drop and new ones refused, as when a database server goes away; ``restore``
    listens again on the same port.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cut_count = 0

    def url_for(self, database_url: str) -> str:
        """``database_url`` with its host and port replaced by this proxy's."""
        scheme, rest = database_url.split("://", 1)
        credentials, _, location = rest.rpartition("@")
        path = location.split("/", 1)[1] if "/" in location else ""
        auth = f"{credentials}@" if credentials else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/{path}"

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.1)
        self._stop.clear()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def cut(self) -> None:
        self.cut_count += 1
        self._stop_listening()
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def restore(self) -> None:
        self.start()

    def close(self) -> None:
        self.cut()

    def _stop_listening(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        """Copy bytes both ways until either side closes (one thread per connection)."""
        client, upstream = pair
        for sock in pair:
            sock.settimeout(None)
            sock.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while True:
                for key, _ in selector.select(timeout=0.5):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.setblocking(True)
                    key.data.sendall(data)
                    key.data.setblocking(False)
                with self._lock:
                    if pair not in self._pairs:
                        return
        except OSError:
            return
        finally:
            selector.close()
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair:
                sock.close()


@contextlib.contextmanager
def tcp_proxy(target: tuple[str, int] = ("127.0.0.1", 5432)) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()


# ---- Celery worker processes --------------------------------------------------------------


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a worker process agree with ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESMWATCH_")}
    roots = ", ".join(f'"{root}"' for root in settings.data_roots)
    env.update(ESMWATCH_DATA_DIR=str(settings.data_dir),
               ESMWATCH_DATABASE_URL=str(settings.database_url),
               ESMWATCH_BROKER_URL=str(settings.broker_url),
               ESMWATCH_DATA_ROOTS=f"[{roots}]",
               ESMWATCH_QUEUE_PREFIX=settings.queue_prefix,
               ESMWATCH_LEASE_SECONDS=str(settings.lease_seconds),
               ESMWATCH_MAX_ATTEMPTS=str(settings.max_attempts),
               ESMWATCH_DB_RETRY_S=str(settings.db_retry_s),
               ESMWATCH_INGEST_STEAL_AFTER_S=str(settings.ingest_steal_after_s))
    return env


@dataclass
class WorkerProcess:
    """A ``celery worker`` subprocess (its own process group) on ``settings``' queues.

    ``start`` may be called again after a kill: the new process appends to the same log.
    """

    settings: Settings
    log: Path
    pool: str = "solo"
    concurrency: int = 1
    process: subprocess.Popen | None = None
    starts: int = 0
    name: str | None = None  # the node name (-n); None: a new one at every start

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def start(self) -> None:
        """Start the worker and wait until it consumes; the old one must be gone."""
        assert not self.alive, "the worker is still running"
        queues = ",".join(self.settings.queue_name(queue) for queue in QUEUES)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        ready_before = self.text().count(" ready.") if self.log.exists() else 0
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                 "-Q", queues, f"--pool={self.pool}", f"--concurrency={self.concurrency}",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "-n", self.name or f"{self.settings.queue_prefix or 'esmwatch-'}"
                                    f"{uuid.uuid4().hex[:6]}@%h",
                 "--loglevel=INFO"],
                cwd=self.settings.data_dir.parent, env=worker_env(self.settings),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        try:
            wait_for(lambda: self.text().count(" ready.") > ready_before or not self.alive,
                     WORKER_START_S)
        except AssertionError:
            self.stop()
            raise
        if not self.alive:
            self.stop()
            raise AssertionError(f"worker exited at start:\n{self.text()}")

    def pool_children(self) -> list[psutil.Process]:
        """The prefork pool's child processes (empty for the solo pool)."""
        try:
            return psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []

    def kill_pool_child(self) -> int:
        """SIGKILL the pool process running the job; the main process lives on."""
        [child] = self.pool_children()
        os.kill(child.pid, signal.SIGKILL)
        return child.pid

    def kill_main(self) -> list[int]:
        """SIGKILL the main worker process only; return the pids of its pool children.

        Celery sets PR_SET_PDEATHSIG on prefork children, so they should die with it.
        """
        assert self.process is not None
        children = [child.pid for child in self.pool_children()]
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)
        return children

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)


@contextlib.contextmanager
def celery_worker(settings: Settings, log: Path, *, pool: str = "solo", concurrency: int = 1,
                  name: str | None = None) -> Iterator[WorkerProcess]:
    """A started worker; its process group is stopped at the end whatever happened."""
    worker = WorkerProcess(settings, log, pool, concurrency, name=name)
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()


# ---- fixtures the fault modules share -----------------------------------------------------
# A module binds them by assignment (``redis_server = faultkit.redis_server_fixture``) and
# defines its own ``settings`` fixture on ``redis_server.url()``.


@pytest.fixture(scope="module", name="redis_server")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private Redis for the module (skips when redis-server is not installed)."""
    with private_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module", name="worker")
def worker_fixture(settings: Settings) -> Iterator[WorkerProcess]:
    """One prefork worker (the production pool) on the module's ``settings``."""
    with celery_worker(settings, settings.data_dir.parent / "worker.log",
                       pool="prefork") as worker:
        yield worker


# ---- archives and observations ------------------------------------------------------------


def long_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared read-only "long" archive of this pytest session, written once.

    ``LONG_MEMBERS`` x ``LONG_MONTHS`` POP history files on a 100 x 116 grid: a features
    job over it reads 72 real files, for one to a few seconds on 2 cores.
    """
    root = tmp_path_factory.getbasetemp() / "long-archive"
    done = root / ".complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    shape = (_LONG_LAT_E.size - 1, _LONG_LON_E.size - 1)
    for i in range(LONG_MEMBERS):
        case = f"{CASE}.{i + 1:03d}"
        hist = root / case / "ocn" / "hist"
        hist.mkdir(parents=True)
        for month in range(1, LONG_MONTHS + 1):
            write_pop(hist / f"{case}.pop.h.0001-{month:02d}.nc", _LONG_LAT_E, _LONG_LON_E, {
                "SALT": np.full((1, 5, *shape), 34.5 - i / 10 + month / 100, dtype="f4"),
                "HMXL": np.full((1, *shape), 1.0e5 * (i + 1), dtype="f4"),
            }, months=(month,))
    done.touch()
    return root


def archive_copy(source: Path, target: Path) -> Path:
    """``source`` hard-linked under a new path: the same files, but not in any cache yet.

    The feature cache is keyed by path, so each job that must really read its files gets
    its own copy at no cost in disk or time.
    """
    shutil.copytree(source, target, copy_function=os.link,
                    ignore=shutil.ignore_patterns(".complete"))
    return target


def gone(pid: int) -> bool:
    """Whether a process has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def attempt_dirs(settings: Settings, job_id: str) -> list[str]:
    """Names of the job's result and attempt directories, sorted."""
    assert settings.results_dir is not None
    return sorted(p.name for p in settings.results_dir.glob(f"{job_id}*"))


def tmp_dirs(settings: Settings) -> list[str]:
    assert settings.results_dir is not None
    return sorted(p.name for p in settings.results_dir.glob(f"*{TMP_MARK}*"))


def reconcile_until_done(settings: Settings, job_ids: list[str], timeout: float,
                         every: float = 0.5) -> tuple[dict[str, Job], int]:
    """Run the reconciler every ``every`` s until all jobs are finished; jobs and passes.

    This stands in for Celery beat (which would run it every ``reconcile_interval_s``),
    so the test decides when recovery is attempted and can count the passes.
    """
    store = get_store(settings)
    passes = 0
    deadline = time.monotonic() + timeout
    while True:
        jobs = {job_id: store.get_job(job_id) for job_id in job_ids}
        if all(job.state in TERMINAL_STATES for job in jobs.values()):
            return jobs, passes
        assert time.monotonic() < deadline, {j: (job.state, job.attempts, job.error)
                                             for j, job in jobs.items()}
        reconcile(settings)
        passes += 1
        time.sleep(every)


def wait_until(condition: Callable[[], bool], timeout: float) -> float:
    """``wait_for`` that also says how long it took (seconds)."""
    started = time.monotonic()
    wait_for(condition, timeout)
    return time.monotonic() - started
