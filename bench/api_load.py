"""API load: submit and status requests at rising rates against a real uvicorn server.

Loopback only, bounded in count and time.  The script starts, in subprocesses it owns,

- a private ``redis-server`` on a free port as the broker (no worker consumes it: submitted
  jobs are recorded and published, which is all the API does), or no broker with
  ``--no-broker`` (submissions then also run in the server process: not what we measure);
- the API: ``uvicorn service.api:create_app --factory`` on a free port, one process,
  against a fresh SQLite database (default) or ``--database-url`` (e.g. the local
  PostgreSQL; the script creates and drops its own database there);

then, for each rate, sends requests open-loop (each at its scheduled time, whether or not
earlier ones have returned, so a slow server cannot hide its queueing) for ``--seconds``:
one in ``--submit-every`` is ``POST /api/v1/jobs``, the rest ``GET /api/v1/jobs/{id}`` on
jobs submitted before.  Latency is measured from the scheduled time to the end of the
response.  It prints p50/p99 and the error rate (non-2xx, timeouts) per rate and kind.

Usage::

    python bench/api_load.py                       # 50, 100, 200, 400 req/s, 4 s each
    python bench/api_load.py --rates 200 --seconds 10 --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger("api_load")

MAX_REQUESTS = 20_000  # whatever the arguments, one run never sends more than this
MAX_SECONDS_PER_RATE = 30
REQUEST_TIMEOUT_S = 5.0


@dataclass
class Samples:
    """Latencies (ms) and errors of one kind of request at one rate."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def row(self) -> str:
        n = len(self.latencies) + self.errors
        if not self.latencies:
            return f"{n:6d} {'-':>8} {'-':>8} {100.0 if n else 0.0:7.1f}%"
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
        return (f"{n:6d} {statistics.median(ordered):8.1f} {p99:8.1f} "
                f"{100.0 * self.errors / n:7.1f}%")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (None without psutil): the server's own cost."""
    try:
        import psutil
    except ImportError:
        return None
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@contextlib.contextmanager
def owned(argv: list[str], *, env: dict[str, str] | None = None, log_path: Path,
          port: int) -> Iterator[subprocess.Popen]:
    """A subprocess in its own process group, stopped (then killed) at the end."""
    with log_path.open("w") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_listening(port, process, 60)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh database on ``server_url``'s server, dropped afterwards."""
    from sqlalchemy import create_engine, text

    from service.store import engine_url

    admin = create_engine(engine_url(server_url), isolation_level="AUTOCOMMIT")
    name = f"esmwatch_load_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


async def run_rate(client: httpx.AsyncClient, rate: float, seconds: float, submit_every: int,
                   job_ids: list[str], root: str) -> dict[str, Samples]:
    """Send ``rate`` requests/s for ``seconds``, open-loop; latencies per kind."""
    samples = {"status": Samples(), "submit": Samples()}
    count = int(rate * seconds)
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        kind = "submit" if submit_every and i % submit_every == 0 else "status"
        try:
            if kind == "submit":
                response = await client.post("/api/v1/jobs", json={
                    "type": "features", "params": {"roots": [root]}})
                if response.status_code == 202:
                    job_ids.append(response.json()["id"])
            else:
                response = await client.get(f"/api/v1/jobs/{job_ids[i % len(job_ids)]}")
            ok = response.status_code < 300
        except httpx.HTTPError:
            ok = False
        if ok:
            samples[kind].latencies.append(1000.0 * (time.perf_counter() - scheduled))
        else:
            samples[kind].errors += 1

    await asyncio.gather(*(one(i) for i in range(count)))
    return samples


async def load(base_url: str, token: str, rates: list[float], seconds: float,
               submit_every: int, root: str, server_pid: int
               ) -> tuple[dict[float, dict[str, Samples]], dict[float, float | None]]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_S,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        job_ids: list[str] = []
        for _ in range(20):  # jobs to ask about; the first loads every job type (seconds)
            response = await client.post("/api/v1/jobs", timeout=120, json={
                "type": "features", "params": {"roots": [root]}})
            response.raise_for_status()
            job_ids.append(response.json()["id"])
        await run_rate(client, 20, 1.0, submit_every, job_ids, root)  # warm up
        results, server_cpu_ms = {}, {}
        for rate in rates:
            before = cpu_seconds(server_pid)
            results[rate] = await run_rate(client, rate, seconds, submit_every, job_ids, root)
            after = cpu_seconds(server_pid)
            sent = int(rate * seconds)
            server_cpu_ms[rate] = (None if before is None or after is None
                                   else 1000.0 * (after - before) / sent)
            await asyncio.sleep(0.5)
        return results, server_cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200,400",
                        help="requests per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each rate")
    parser.add_argument("--submit-every", type=int, default=10,
                        help="one request in N is a submission (0: status only)")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL to create a database on (default SQLite)")
    parser.add_argument("--no-broker", action="store_true",
                        help="embedded mode: no Redis (submitted jobs then run in the server)")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    rates = [float(r) for r in args.rates.split(",")]
    seconds = min(args.seconds, MAX_SECONDS_PER_RATE)
    if sum(rates) * seconds > MAX_REQUESTS:
        parser.error(f"at most {MAX_REQUESTS} requests per run")

    work = Path(tempfile.mkdtemp(prefix="esmwatch-load-"))
    try:
        with contextlib.ExitStack() as stack:
            database_url = (stack.enter_context(postgres_database(args.database_url))
                            if args.database_url else f"sqlite:///{work / 'esmwatch.sqlite'}")
            env = {k: v for k, v in os.environ.items() if not k.startswith("ESMWATCH_")}
            root = work / "archive"
            root.mkdir()
            env.update(ESMWATCH_DATA_DIR=str(work), ESMWATCH_DATABASE_URL=database_url,
                       ESMWATCH_DATA_ROOTS=json.dumps([str(root)]))
            if not args.no_broker and shutil.which("redis-server"):
                redis_port = free_port()
                stack.enter_context(owned(
                    ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", str(work)],
                    log_path=work / "redis.log", port=redis_port))
                env["ESMWATCH_BROKER_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            from service.settings import Settings
            from service.store import get_store

            token = get_store(Settings(_env_file=None, data_dir=work, database_url=database_url)
                              ).create_token("load")
            port = free_port()
            server = stack.enter_context(owned(
                [sys.executable, "-m", "uvicorn", "service.api:create_app", "--factory",
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                 "--no-access-log"], env=env, log_path=work / "uvicorn.log", port=port))
            log.info("API on 127.0.0.1:%d, database %s, broker %s", port,
                     database_url.split("://")[0], env.get("ESMWATCH_BROKER_URL", "none"))
            results, server_cpu_ms = asyncio.run(load(
                f"http://127.0.0.1:{port}", token, rates, seconds, args.submit_every,
                str(root), server.pid))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'rate/s':>7} {'kind':>7} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'errors':>8} "
          f"{'server CPU ms/req':>18}")
    for rate, by_kind in results.items():
        cpu = server_cpu_ms[rate]
        for kind, samples in by_kind.items():
            print(f"{rate:7.0f} {kind:>7} {samples.row()} "
                  f"{'-' if cpu is None else f'{cpu:.2f}':>18}")
    if args.json:
        args.json.write_text(json.dumps({
            str(rate): {kind: {"n": len(s.latencies) + s.errors, "errors": s.errors,
                               "latencies_ms": sorted(s.latencies)}
                        for kind, s in by_kind.items()}
            for rate, by_kind in results.items()}))


if __name__ == "__main__":
    main()
