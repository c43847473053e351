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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import hypothesis
import pytest
import schemathesis
from alembic import command as alembic_command
from alembic.config import Config
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from sqlalchemy import create_engine, text

from ensembles.errors import ConfigurationError
from service import jobs, model_registry
from service import store as store_module
from service.analyses import inputs
from service.api import api as api_router
from service.api import create_app
from service.broker import RUN_TASK, celery_config
from service.jobs import dispatch, get_job_type
from service.settings import Settings, override_settings
from service.store import ApiToken, Store, get_store, hash_token, utcnow
from service.store import database as store_database
from tests import test_api, test_jobs
from tests.faultkit import free_port, private_redis, stop_process_group, wait_until
from tests.test_jobs import _symlink, local_settings, wait_for, write_archive
from workers.celery_app import create_celery

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ensembles", "synth", "detectors", "service", "workers", "bench")
PICKLE_MAGIC = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
FUZZ_EXAMPLES = 25  # per operation and generation mode: the stateless fuzz stays under ~30 s


# the API tests' fixtures: a one-file archive, embedded settings (4 KiB bodies), a token
archive, settings, store, auth = test_api.archive, test_api.settings, test_api.store, test_api.auth
outside = test_jobs.outside  # a directory beside the data root, with a file in it


# ---- fuzzing the OpenAPI schema, as an attacker would ------------------------------------
# schemathesis's Python API (not its pytest plugin, whose parametrisation pytest 9 broke),
# authenticated with an admin token: every operation with valid and invalid inputs, stateful
# sequences along the schema's links (register -> list / update / remove / scan), and bodies
# and path values schemathesis never sends (NaN, Infinity, deep nesting, long strings, NUL).


@dataclass
class Fuzzed:
    schema: Any
    headers: dict[str, str]
    archive: Path
    store: Store
    answers: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def record(self, method: str, template: str, response: Any, what: str) -> None:
        """Count the answer; a server error fails the test with the request that caused it."""
        self.answers[(method, template, response.status_code)] += 1
        assert response.status_code < 500, f"{what} -> {response.status_code}: {response.text}"
        if template.endswith("/revoke") and response.status_code == 200:
            self.renew_token()  # the fuzzer revoked its own token: carry on with a new one

    def renew_token(self) -> None:
        self.headers["Authorization"] = f"Bearer {self.store.create_token('fuzz')}"

    def headers_for(self, case: schemathesis.Case) -> dict[str, str]:
        """The case's headers, with this fuzzer's token instead of any generated one."""
        generated = {k: v for k, v in (case.headers or {}).items()
                     if k.lower() != "authorization"}
        return {**generated, **self.headers}


def _quick(examples: int) -> hypothesis.settings:
    return hypothesis.settings(max_examples=examples, deadline=None, database=None,
                               derandomize=True, phases=[hypothesis.Phase.explicit,
                                                         hypothesis.Phase.generate],
                               suppress_health_check=list(hypothesis.HealthCheck))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """An app on its own embedded store, with an admin token, for fuzzing."""
    base = tmp_path_factory.mktemp("fuzz")
    archive = write_archive(base / "archive", members=("001",), months=(1,))
    settings = local_settings(base, archive, max_body_bytes=16384)
    store = get_store(settings)
    app = create_app(settings)
    with TestClient(app):  # runs the lifespan (embedded reconciler) while fuzzing
        config = SchemathesisConfig.from_dict(  # our token only, never a generated one
            {"seed": 7, "generation": {"with-security-parameters": False}})
        target = Fuzzed(schemathesis.openapi.from_asgi("/openapi.json", app, config=config),
                        {}, archive, store)
        target.renew_token()
        yield target


def _operations(fuzzed: Fuzzed) -> list[Any]:
    return [result.ok() for result in fuzzed.schema.get_all_operations()]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_cause_a_server_error(fuzzed: Fuzzed, mode: GenerationMode
                                                    ) -> None:
    operations = [o for o in _operations(fuzzed) if mode == GenerationMode.POSITIVE
                  or len(o.path_parameters) + len(o.query) + len(o.body)]  # else nothing to break
    unsatisfiable = []  # operations schemathesis could generate no case for (said, not hidden)
    for operation in operations:

        @_quick(FUZZ_EXAMPLES)
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers=fuzzed.headers_for(case))
            fuzzed.record(case.method, case.path, response,
                          f"{case.method} {case.formatted_path} {case.body!r:.300}")

        try:
            call()
        except hypothesis.errors.Unsatisfiable:  # seen once, negative mode, in a full run only
            unsatisfiable.append(operation.label)
    print(f"{mode.value}: no case could be generated for {unsatisfiable}")
    assert len(unsatisfiable) <= 1, unsatisfiable
    fuzzed_paths = {(method, path) for method, path, _ in fuzzed.answers}
    assert {(o.method.upper(), o.path) for o in operations} <= fuzzed_paths  # every one
    print(f"{mode.value} fuzzing of {len(operations)} operations: "
          f"{sum(fuzzed.answers.values())} requests so far, by status "
          f"{dict(Counter(status for *_, status in fuzzed.answers.elements()))}")


@pytest.mark.timeout(300)
def test_stateful_fuzzing_along_the_links_never_causes_a_server_error(fuzzed: Fuzzed) -> None:
    """Register -> list / update / remove / scan, as the schema's links chain them."""
    answers_before = Counter(fuzzed.answers)

    class Authenticated(fuzzed.schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:  # each scenario starts with no ensemble, so it replays alike
            for ensemble in fuzzed.store.list_ensembles():
                fuzzed.store.remove_ensemble(ensemble.name)

        def before_call(self, case: schemathesis.Case) -> None:
            # generated roots never exist (the stateless fuzz sends those): registrations get
            # a real one, so that the links after a successful registration are followed
            if (case.method, case.path) == ("POST", "/api/v1/ensembles") and isinstance(
                    case.body, dict):
                case.body["roots"] = [str(fuzzed.archive)]

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": fuzzed.headers_for(case)}

        def validate_response(self, response: Any, case: schemathesis.Case,
                              *args: Any, **kwargs: Any) -> None:
            fuzzed.record(case.method, case.path, response,
                          f"{case.method} {case.formatted_path} {case.body!r:.300}")

    Authenticated.run(settings=hypothesis.settings(
        _quick(2 * FUZZ_EXAMPLES), stateful_step_count=8))
    new = fuzzed.answers - answers_before
    registered = new[("POST", "/api/v1/ensembles", 201)]
    followed = sum(n for (method, path, status), n in new.items()
                   if status < 400 and path in ("/api/v1/ensembles/{name}", "/api/v1/jobs")
                   and method in ("PATCH", "DELETE", "POST"))
    print(f"stateful fuzzing: {sum(new.values())} requests, {registered} registrations, "
          f"{followed} linked calls answered 2xx; by status {dict(sorted(new.items()))}")
    assert registered > 0 and followed > 0  # the chain was really exercised


HOSTILE_LEAF = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**40, 10**40),
    st.text(max_size=20), st.text(min_size=300, max_size=3000), st.just("\x00"),
    st.booleans(), st.none())
HOSTILE = st.recursive(HOSTILE_LEAF, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
DEEP = st.builds(lambda n, opener: opener[0] * n + "1" + opener[1] * n,
                 st.integers(20, 3000), st.sampled_from([("[", "]"), ('{"a":', "}")]))


def _hostile_json(value: object) -> str:
    return json.dumps(value, allow_nan=True)  # NaN, Infinity: not JSON, sent anyway


HOSTILE_TEMPLATES = [  # @V@: the hostile value, @R@: a valid list of roots
    ("POST", "/api/v1/jobs", "@V@"),
    ("POST", "/api/v1/jobs", '{"type": "features", "params": @V@}'),
    ("POST", "/api/v1/jobs", '{"type": "features", "params": {"roots": @V@}}'),
    ("POST", "/api/v1/jobs", '{"type": "consistency", "params": {"reference": @R@, "case": @R@, '
                             '"settings": {"sigma": @V@}}}'),
    ("POST", "/api/v1/ensembles", '{"name": "h", "kind": "candidate", "configuration": "x", '
                                  '"roots": @R@, "metadata": @V@}'),
    ("POST", "/api/v1/ensembles", '{"name": "h", "kind": "pertlim", "configuration": @V@, '
                                  '"roots": @R@}'),
    ("PATCH", "/api/v1/ensembles/h", '{"metadata": {"reference": @V@}}'),
    ("PATCH", "/api/v1/ensembles/h", '{"roots": @V@}'),
]


@st.composite
def hostile_bodies(draw: st.DrawFn, archive: str) -> tuple[str, str, str]:
    """(method, path, body): a plausible request with one hostile value somewhere."""
    value = draw(st.one_of(HOSTILE.map(_hostile_json), DEEP))
    method, path, template = draw(st.sampled_from(HOSTILE_TEMPLATES))
    return method, path, template.replace("@R@", json.dumps([archive])).replace("@V@", value)


@pytest.mark.timeout(240)
def test_hostile_bodies_and_path_values_never_cause_a_server_error(fuzzed: Fuzzed) -> None:
    client = TestClient(fuzzed.schema.app, raise_server_exceptions=False)

    @_quick(4 * FUZZ_EXAMPLES)
    @hypothesis.given(request=hostile_bodies(str(fuzzed.archive)))
    def send_body(request: tuple[str, str, str]) -> None:
        method, path, body = request
        response = client.request(method, path, content=body, headers={
            **fuzzed.headers, "Content-Type": "application/json"})
        fuzzed.record(method, path, response, f"{method} {path} {body:.300}")
        assert response.status_code != 201 or response.json()["name"] == "h"

    send_body()
    operations = _operations(fuzzed)

    @_quick(2 * FUZZ_EXAMPLES)
    @hypothesis.given(operation=st.sampled_from(operations),
                      text=st.one_of(st.text(), st.text(min_size=300, max_size=5000),
                                     st.just("\x00"), st.just("..%2F..%2F")))
    def send_path(operation: Any, text: str) -> None:
        path = operation.path
        for name in operation.path_parameters:
            path = path.replace(f"{{{name.name}}}", quote(text, safe="") or "x")
        query = {p.name: text for p in operation.query}
        response = client.request(operation.method.upper(), path, params=query,
                                  headers=fuzzed.headers)
        fuzzed.record(operation.method.upper(), operation.path, response, f"{path} {query}")
        assert response.headers["content-type"].startswith("application/json") or (
            response.status_code == 200)

    send_path()
    print(f"hostile bodies and path values: {sum(fuzzed.answers.values())} requests so far, "
          f"by status {dict(Counter(status for *_, status in fuzzed.answers.elements()))}")


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
    real = store_database.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(store_database.hmac, "compare_digest", spy)
    assert store.check_token(token) is not None
    assert store.check_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert compared and all(len(a) == len(b) == 64 for a, b in compared)  # digests only


def test_scopes_are_checked_per_endpoint(settings: Settings, store: Store, archive: Path
                                         ) -> None:
    job, _ = store.create_job("features", {"roots": [str(archive)]})
    store.add_model("risk", "/models/risk/v1", {})
    submit = {"type": "features", "params": {"roots": [str(archive)]}}
    ensemble = {"name": "e", "kind": "pertlim", "configuration": "x", "roots": [str(archive)]}
    calls = [("GET", "/api/v1/jobs", None, "read"), ("GET", f"/api/v1/jobs/{job.id}", None, "read"),
             ("GET", "/api/v1/ensembles", None, "read"), ("GET", "/api/v1/alerts", None, "read"),
             ("POST", "/api/v1/jobs", submit, "submit"),
             ("POST", f"/api/v1/jobs/{job.id}/cancel", None, "submit"),
             ("POST", "/api/v1/jobs", {"type": "scan", "params": {}}, "admin"),
             ("POST", "/api/v1/ensembles", ensemble, "admin"),
             ("PATCH", "/api/v1/ensembles/e", {"configuration": "y"}, "admin"),
             ("DELETE", "/api/v1/ensembles/e", None, "admin"),
             ("POST", "/api/v1/models/risk/1/promote", None, "admin"),
             ("GET", "/api/v1/tokens", None, "admin")]
    with TestClient(create_app(settings)) as client:
        for scope in ("read", "submit", "admin"):
            headers = {"Authorization": f"Bearer {store.create_token(scope, [scope])}"}
            for method, path, body, needed in calls:
                response = client.request(method, path, json=body, headers=headers)
                if needed != scope:
                    assert response.status_code == 403, (scope, method, path)
                    assert f"lacks the {needed!r} scope" in response.json()["detail"]
                else:
                    assert response.status_code < 300, (scope, method, path, response.text)
    assert store.get_job(job.id).state == "cancelled"


def test_every_api_route_states_the_scope_it_needs() -> None:
    """A route added later without a scope would be open to any valid token."""
    routes = [route for route in api_router.routes if isinstance(route, APIRoute)]
    unscoped = [route.path for route in routes if "require.<locals>.scoped" not in {
        dependency.call.__qualname__ for dependency in route.dependant.dependencies}]
    assert unscoped == [] and len(routes) == 15
    assert all(route.path.startswith("/api/v1/") for route in routes)  # behind BearerAuth


def test_a_revoked_or_expired_token_is_refused_at_once(settings: Settings, store: Store
                                                       ) -> None:
    from tests.test_api import operations_cli, runner

    alice, bob = store.create_token("alice"), store.create_token("bob", ["read"])
    late = store.create_token("late", expires=utcnow() + timedelta(seconds=1))
    with TestClient(create_app(settings)) as client:
        def status(token: str) -> int:
            return client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}
                              ).status_code

        assert status(alice) == status(bob) == status(late) == 200
        revoked = client.post("/api/v1/tokens/bob/revoke",
                              headers={"Authorization": f"Bearer {alice}"})
        assert revoked.status_code == 200 and revoked.json()[0]["revoked"]
        assert status(bob) == 401  # the very next request
        with override_settings(settings):  # another process's CLI: no cache to wait out
            listed = runner.invoke(operations_cli(), ["token", "list"])
            assert "alice" in listed.stdout and "revoked" in listed.stdout, listed.output
            [row] = [line for line in listed.stdout.splitlines() if " alice " in line]
            assert "admin,read,submit" in row and "last used 20" in row
            assert runner.invoke(operations_cli(), ["token", "revoke", "alice"]).exit_code == 0
            again = runner.invoke(operations_cli(), ["token", "revoke", "alice"])
            assert again.exit_code == 1 and "no live token 'alice'" in again.stderr
            created = runner.invoke(operations_cli(), ["token", "create", "carol", "--scope",
                                                       "read", "--expires-days", "1"])
            assert created.exit_code == 0, created.output
            wrong = runner.invoke(operations_cli(), ["token", "create", "d", "--scope", "root"])
            assert wrong.exit_code == 1 and "scopes must be some of" in wrong.stderr
        assert status(alice) == 401
        carol = created.stdout.strip()
        assert status(carol) == 200
        assert client.post("/api/v1/jobs", json={"type": "features"}, headers={
            "Authorization": f"Bearer {carol}"}).status_code == 403  # default: no submit
        time.sleep(1.1)
        assert status(late) == 401


def test_tokens_made_before_scopes_keep_every_scope(tmp_path: Path) -> None:
    """Migration 0002 on a database with a token of 0001: it still works, fully."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(store_module.MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        alembic_command.upgrade(config, "0001")
        connection.execute(text(
            "INSERT INTO api_tokens (name, token_hash, created) VALUES ('old', :digest, "
            "'2025-01-01 00:00:00')"), {"digest": hash_token("esmw_old")})
    engine.dispose()
    store = get_store(Settings(data_dir=tmp_path, database_url=url))
    record = store.check_token("esmw_old")
    assert record is not None and sorted(record.scopes) == ["admin", "read", "submit"]
    assert record.expires is None and record.revoked is None


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

