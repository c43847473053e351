"""Hostile requests and unsafe formats: the safety rules of docs/design.md, each checked for real.

- the API survives schema-driven fuzzing (schemathesis) with no server error;
- oversized bodies are refused with 413 by a real uvicorn server, before they are read;
- job parameters and ensemble roots that leave the data roots (``..``, absolute paths,
  symlinks) are refused with 422 and nothing is read;
- tokens are stored only as hashes and checked by hash lookup plus a constant-time compare;
- no pickle anywhere: the Celery configuration, the messages on the broker, every file a
  job or the cache writes, and the code base (no pickle imports, ``torch.load`` only with
  ``weights_only=True``);
- model files are loaded only from inside the model store.
"""

from __future__ import annotations

import ast
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from ensembles.errors import ConfigurationError
from service import api as api_module
from service import jobs, model_registry
from service import store as store_module
from service.analyses import inputs
from service.api import create_app
from service.broker import RUN_TASK, celery_config
from service.jobs import dispatch, get_job_type
from service.settings import Settings
from service.store import ApiToken, Store, get_store, hash_token
from tests import test_api, test_jobs
from tests.faultkit import free_port, private_redis, stop_process_group, wait_until
from tests.test_jobs import _symlink, local_settings, wait_for, write_archive
from workers.celery_app import create_celery

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ensembles", "synth", "detectors", "service", "workers", "bench")
PICKLE_MAGIC = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
FUZZ_EXAMPLES = 30  # per operation and generation mode: the whole fuzz stays under ~20 s


# the API tests' fixtures: a one-file archive, embedded settings (4 KiB bodies), a token
archive, settings, store, auth = test_api.archive, test_api.settings, test_api.store, test_api.auth
outside = test_jobs.outside  # a directory beside the data root, with a file in it


# ---- fuzzing the OpenAPI schema ---------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, dict[str, str]]]:
    """An app on its own embedded store, with a token, for schemathesis to fuzz."""
    base = tmp_path_factory.mktemp("fuzz")
    archive = write_archive(base / "archive", members=("001",), months=(1,))
    settings = local_settings(base, archive, max_body_bytes=4096)
    headers = {"Authorization": f"Bearer {get_store(settings).create_token('fuzz')}"}
    app = create_app(settings)
    with TestClient(app):  # runs the lifespan (embedded reconciler) while fuzzing
        config = SchemathesisConfig.from_dict(  # valid and invalid inputs, bounded
            {"generation": {"mode": "all", "max-examples": FUZZ_EXAMPLES}, "seed": 7})
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=config), headers


schema = schemathesis.pytest.from_fixture("fuzzed_schema")


@pytest.fixture(scope="module")
def fuzzed_schema(fuzzed: tuple[object, dict[str, str]]) -> object:
    return fuzzed[0]


@pytest.fixture(scope="module")
def fuzz_headers(fuzzed: tuple[object, dict[str, str]]) -> dict[str, str]:
    return fuzzed[1]


@pytest.mark.timeout(120)
@schema.parametrize()
@hypothesis.settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                     phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrink
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_fuzzed_requests_never_cause_a_server_error(case: schemathesis.Case,
                                                    fuzz_headers: dict[str, str]) -> None:
    case.call_and_validate(headers={**(case.headers or {}), **fuzz_headers},
                           checks=[not_a_server_error])


# ---- request size, paths, tokens --------------------------------------------------------


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[int]:
    """The API under uvicorn in a subprocess (a real HTTP parser in front of the app)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESMWATCH_")}
    env.update(ESMWATCH_DATA_DIR=str(settings.data_dir),
               ESMWATCH_DATA_ROOTS=json.dumps([str(r) for r in settings.data_roots]),
               ESMWATCH_MAX_BODY_BYTES=str(settings.max_body_bytes))
    log = (tmp_path / "uvicorn.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.api:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _listening(port) or process.poll() is not None, 60)
        assert process.poll() is None, (tmp_path / "uvicorn.log").read_text()
        yield port
    finally:
        stop_process_group(process, grace_s=5)
        log.close()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _raw_request(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a hand-written HTTP/1.1 request; return the status and what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1]), reply


@pytest.mark.timeout(90)
def test_oversized_bodies_are_refused_by_the_running_server(server: int, store: Store,
                                                            auth: dict[str, str]) -> None:
    token = auth["Authorization"]
    head = ("POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: {token}\r\n")
    # a declared 10 GB body is refused at once: the server never waits for it
    started = time.monotonic()
    status, reply = _raw_request(server, head + "Content-Length: 10000000000\r\n\r\n")
    assert status == 413 and b"larger than 4096 bytes" in reply
    assert time.monotonic() - started < 5
    # a chunked body without a length is cut off once it passes the limit
    chunk = b"x" * 3000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    status, reply = _raw_request(server, head + "Transfer-Encoding: chunked\r\n\r\n", chunked)
    assert status == 413
    assert store.list_jobs()[1] == 0


@pytest.mark.parametrize("make_root", [
    pytest.param(lambda archive, outside: "../secret", id="dotdot"),
    pytest.param(lambda archive, outside: f"{archive}/../../secret", id="absolute-dotdot"),
    pytest.param(lambda archive, outside: str(outside), id="absolute"),
    pytest.param(lambda archive, outside: "%2e%2e/secret", id="encoded-is-a-name"),
    pytest.param(lambda archive, outside: _symlink(archive / "link", outside), id="symlink-dir"),
    pytest.param(lambda archive, outside: _symlink(archive / "f.nc", outside / "file.nc"),
                 id="symlink-file"),
])
def test_paths_out_of_the_data_roots_are_422_and_nothing_is_read(
        settings: Settings, store: Store, auth: dict[str, str], archive: Path, outside: Path,
        make_root, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(inputs, "build_features", lambda *a, **k: opened.append("read"))
    root = make_root(archive, outside)
    with TestClient(create_app(settings)) as client:
        job = client.post("/api/v1/jobs", headers=auth,
                          json={"type": "features", "params": {"roots": [root]}})
        ensemble = client.post("/api/v1/ensembles", headers=auth, json={
            "name": "hostile", "kind": "pertlim", "configuration": "x", "roots": [root]})
    for response in (job, ensemble):
        assert response.status_code == 422, response.text
        assert "outside the data roots" in response.text or "does not exist" in response.text
    assert store.list_jobs()[1] == 0 and store.list_ensembles() == [] and opened == []


def test_tokens_are_stored_hashed_and_compared_in_constant_time(
        settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    token = store.create_token("alice")
    with store.session() as session:
        [row] = session.query(ApiToken).all()
        assert row.token_hash == hash_token(token) != token and len(row.token_hash) == 64
    database = Path(str(settings.database_url).removeprefix("sqlite:///"))
    with sqlite3.connect(database) as raw:  # the token itself is nowhere in the database
        dump = "\n".join(raw.iterdump())
    assert token not in dump and token.removeprefix("esmw_") not in dump

    compared: list[tuple[str, str]] = []
    real = store_module.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(store_module.hmac, "compare_digest", spy)
    assert store.check_token(token) is not None
    assert store.check_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert compared and all(len(a) == len(b) == 64 for a, b in compared)  # digests only


def test_verified_tokens_are_remembered_briefly_by_hash_and_failures_never(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    token = store.create_token("bob")
    checks: list[str] = []
    real = store.check_token
    monkeypatch.setattr(store, "check_token", lambda t: checks.append(t) or real(t))
    verified = api_module._VerifiedTokens(ttl_s=0.3)
    assert verified.check(token, store) is not None and verified.check(token, store) is not None
    assert len(checks) == 1  # the second check was served from memory
    assert token not in str(verified._entries)  # remembered by hash only
    for _ in range(2):
        assert verified.check("esmw_wrong", store) is None
    assert len(checks) == 3  # a failure is never remembered
    time.sleep(0.35)
    assert verified.check(token, store) is not None and len(checks) == 4  # expired: asked again


# ---- no pickle, anywhere ----------------------------------------------------------------


def test_celery_speaks_json_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0")
    for conf in (create_celery(settings).conf, celery_config(settings)):
        get = conf.get
        assert get("task_serializer") == get("result_serializer") == "json"
        assert get("event_serializer") == "json"
        assert list(get("accept_content")) == ["json"]
        assert list(get("result_accept_content")) == ["json"]
    assert create_celery(settings).conf.beat_scheduler == "celery.beat:Scheduler"  # no shelve


@pytest.mark.services
@pytest.mark.timeout(60)
def test_messages_on_the_broker_are_json(settings: Settings, tmp_path: Path) -> None:
    with private_redis(tmp_path / "redis") as broker:
        brokered = settings.model_copy(update={"broker_url": broker.url()})
        job, _ = get_store(brokered).create_job("features", {})
        dispatch(job.id, get_job_type("features"), brokered)
        with broker.client() as client:
            wait_until(lambda: client.llen(brokered.queue_name("io")) == 1, 10)
            [raw] = client.lrange(brokered.queue_name("io"), 0, -1)
    message = json.loads(raw)
    assert message["content-type"] == "application/json"
    assert message["headers"]["id"] == job.id and message["headers"]["task"] == RUN_TASK
    body = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        import base64

        body = base64.b64decode(body)
    assert json.loads(body)[0] == [job.id]  # (args, kwargs, embed): the job id, nothing else


def test_nothing_a_job_writes_is_a_pickle(settings: Settings, archive: Path) -> None:
    job_id = jobs.submit_job("features", {"roots": [str(archive)]}, settings=settings, wait=True)
    assert get_store(settings).get_job(job_id).state == "succeeded"
    written = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.parent == settings.cache_dir for p in written)  # the cache was written too
    assert any(p.parent == settings.job_results_dir(job_id) for p in written)
    for path in written:
        with path.open("rb") as handle:
            assert not handle.read(2).startswith(PICKLE_MAGIC), path
        assert path.suffix not in {".pkl", ".pickle", ".joblib", ".db.bak"}, path


def _python_files() -> list[Path]:
    return [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]


def test_no_pickle_in_the_code_base() -> None:
    """No module that pickles is imported; no call writes or reads pickles.

    joblib's ``Parallel``/``delayed`` are allowed: they pass work between processes in
    memory, never on the broker or on disk; ``joblib.dump``/``load`` are not.
    """
    banned = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal"}
    banned_calls = {"read_pickle", "to_pickle", "dump", "load"}  # pandas, joblib
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                offenders += [f"{where} imports {alias.name}" for alias in node.names
                              if alias.name.split(".")[0] in banned]
            elif isinstance(node, ast.ImportFrom) and node.module:
                top = node.module.split(".")[0]
                if top in banned or (top == "joblib" and
                                     {a.name for a in node.names} & {"dump", "load"}):
                    offenders.append(f"{where} imports from {node.module}")
            elif isinstance(node, ast.Call):
                if _is_torch_load(node) and not _weights_only(node):
                    offenders.append(f"{where} torch.load without weights_only=True")
                owner = node.func.value if isinstance(node.func, ast.Attribute) else None
                if _name(node.func) in banned_calls and (
                        _name(node.func).endswith("pickle") or
                        (isinstance(owner, ast.Name) and owner.id == "joblib")):
                    offenders.append(f"{where} pickle I/O ({_name(node.func)})")
                if any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant)
                                                        and k.value.value is False)
                       for k in node.keywords):
                    offenders.append(f"{where} allow_pickle")
    assert offenders == []


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _is_torch_load(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load" and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch")


def _weights_only(call: ast.Call) -> bool:
    return any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
               and k.value.value is True for k in call.keywords)


def test_the_code_scan_would_catch_an_unsafe_load() -> None:
    unsafe = ast.parse("import torch\ntorch.load(path)\ntorch.load(path, weights_only=False)")
    safe = ast.parse("torch.load(path, map_location='cpu', weights_only=True)")
    assert [_weights_only(n) for n in ast.walk(unsafe) if _is_torch_load(n)] == [False, False]
    assert [_weights_only(n) for n in ast.walk(safe) if _is_torch_load(n)] == [True]


# ---- models only from the model store ---------------------------------------------------


def test_models_load_only_from_the_model_store(settings: Settings, tmp_path: Path) -> None:
    assert settings.models_dir is not None
    inside = settings.models_dir / "risk" / "v1"
    inside.mkdir(parents=True)
    assert model_registry.checked_model_path(settings, inside) == inside.resolve()
    elsewhere = tmp_path / "downloaded-model"
    elsewhere.mkdir()
    (settings.models_dir / "risk" / "v2").symlink_to(elsewhere)
    for path in (elsewhere, settings.models_dir / "risk" / "v2",
                 settings.models_dir / ".." / "downloaded-model"):
        with pytest.raises(ConfigurationError, match="outside the model store"):
            model_registry.checked_model_path(settings, path)

