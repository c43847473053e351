"""HTTP API and operations CLI: auth, validation, limits, confinement, health and metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from service.api import create_app
from service.cli import ops as cli_ops
from service.settings import Settings, override_settings
from service.store import Alert, ModelVersion, Store, get_store
from tests.test_jobs import local_settings, wait_for, write_archive

runner = CliRunner()


def operations_cli() -> typer.Typer:
    """The operations commands, registered on an app the way ``service/cli.py`` does."""
    app = typer.Typer()
    app.add_typer(cli_ops.jobs_app, name="jobs")
    app.add_typer(cli_ops.token_app, name="token")
    app.add_typer(cli_ops.ensemble_app, name="ensemble")
    for command in (cli_ops.serve, cli_ops.worker, cli_ops.beat):
        app.command()(command)
    return app


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return write_archive(tmp_path / "archive", members=("001",), months=(1,))


@pytest.fixture
def settings(tmp_path: Path, archive: Path) -> Settings:
    return local_settings(tmp_path, archive, max_body_bytes=4096)


@pytest.fixture
def store(settings: Settings) -> Store:
    return get_store(settings)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def auth(store: Store) -> dict[str, str]:
    return {"Authorization": f"Bearer {store.create_token('tests')}"}


def finished_job(client: TestClient, auth: dict[str, str], archive: Path) -> dict:
    response = client.post("/api/v1/jobs", headers=auth,
                           json={"type": "features", "params": {"roots": [str(archive)]}})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    wait_for(lambda: client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["state"]
             not in ("queued", "running"))
    return client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()


# ---- authentication ---------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer esmw_wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer "},
], ids=["missing", "wrong", "basic", "empty"])
@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/ensembles", "/api/v1/models",
                                  "/api/v1/alerts"])
def test_api_needs_a_valid_token(client: TestClient, auth: dict[str, str], headers: dict,
                                 path: str) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.get(path, headers=auth).status_code == 200


def test_health_and_metrics_are_public(client: TestClient) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json() | {"version": "-"} == {"status": "ok", "database": "ok",
                                                "broker": "embedded", "version": "-"}
    assert client.get("/metrics").status_code == 200


# ---- jobs -------------------------------------------------------------------------------


def test_submit_follow_and_download(client: TestClient, auth: dict[str, str],
                                    archive: Path) -> None:
    job = finished_job(client, auth, archive)
    assert job["state"] == "succeeded", job["error"]
    assert job["artifacts"] == ["features.nc", "result.json"] and "result_path" not in job
    result = client.get(f"/api/v1/jobs/{job['id']}/artifacts/result.json", headers=auth)
    assert result.status_code == 200 and result.json()["job_id"] == job["id"]
    netcdf = client.get(f"/api/v1/jobs/{job['id']}/artifacts/features.nc", headers=auth)
    assert netcdf.content.startswith(b"\x89HDF")
    assert client.get(f"/api/v1/jobs/{job['id']}/report", headers=auth).status_code == 404


def test_report_is_served_when_present(client: TestClient, auth: dict[str, str],
                                       settings: Settings, archive: Path) -> None:
    job = finished_job(client, auth, archive)
    (settings.job_results_dir(job["id"]) / "report.html").write_text("<h1>report</h1>")
    report = client.get(f"/api/v1/jobs/{job['id']}/report", headers=auth)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")


def test_list_filters_and_pages(client: TestClient, auth: dict[str, str], store: Store) -> None:
    ids = [store.create_job("features" if i < 3 else "scan", {})[0].id for i in range(4)]
    assert store.claim_job(ids[0], "w")
    page = client.get("/api/v1/jobs", headers=auth, params={"type": "features"}).json()
    assert page["total"] == 3 and {j["id"] for j in page["items"]} == set(ids[:3])
    page = client.get("/api/v1/jobs", headers=auth, params={"state": "running"}).json()
    assert [j["id"] for j in page["items"]] == [ids[0]]
    page = client.get("/api/v1/jobs", headers=auth, params={"limit": 1, "offset": 1}).json()
    assert (page["total"], len(page["items"]), page["limit"], page["offset"]) == (4, 1, 1, 1)
    assert client.get("/api/v1/jobs", headers=auth, params={"state": "odd"}).status_code == 422
    assert client.get("/api/v1/jobs/no-such-job", headers=auth).status_code == 404


def test_cancel(client: TestClient, auth: dict[str, str], store: Store) -> None:
    job, _ = store.create_job("features", {})
    response = client.post(f"/api/v1/jobs/{job.id}/cancel", headers=auth)
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    again = client.post(f"/api/v1/jobs/{job.id}/cancel", headers=auth)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


@pytest.mark.parametrize("body", [
    {"type": "features", "params": {"roots": ["../"]}},
    {"type": "features", "params": {"roots": ["../../etc"]}},
    {"type": "features", "params": {"roots": ["/etc"]}},
    {"type": "features", "params": {"roots": ["."], "extra": 1}},
    {"type": "no-such-type", "params": {}},
    {"params": {}},
], ids=["dotdot", "dotdot-etc", "outside", "extra-param", "unknown-type", "no-type"])
def test_invalid_submissions_are_422_and_create_nothing(client: TestClient, auth: dict[str, str],
                                                        store: Store, body: dict) -> None:
    response = client.post("/api/v1/jobs", headers=auth, json=body)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert store.list_jobs()[1] == 0


def test_outside_path_error_names_the_path_and_nothing_else(
        client: TestClient, auth: dict[str, str], settings: Settings) -> None:
    response = client.post("/api/v1/jobs", headers=auth,
                           json={"type": "features", "params": {"roots": ["/etc/../etc"]}})
    detail = response.json()
    assert "'/etc/../etc' is outside the data roots" in detail["detail"]
    assert detail["errors"][0]["loc"] == "roots.0"
    assert "resolves" not in response.text and str(settings.data_roots[0]) not in response.text


def test_oversized_bodies_are_413(client: TestClient, auth: dict[str, str], store: Store) -> None:
    big = json.dumps({"type": "features", "params": {"roots": ["x" * 5000]}}).encode()
    declared = client.post("/api/v1/jobs", headers=auth, content=big)
    assert declared.status_code == 413 and "4096 bytes" in declared.json()["detail"]
    streamed = client.post("/api/v1/jobs", headers=auth,
                           content=iter([big[:3000], big[3000:]]))  # chunked, no length
    assert streamed.status_code == 413
    small = client.post("/api/v1/jobs", headers=auth,
                        content=iter([b'{"type": "features", ', b'"params": {"roots": ["/"]}}']))
    assert small.status_code == 422  # a small chunked body still reaches the application
    assert store.list_jobs()[1] == 0


def test_artifacts_cannot_escape_the_result_dir(client: TestClient, auth: dict[str, str],
                                                settings: Settings, archive: Path,
                                                tmp_path: Path) -> None:
    job = finished_job(client, auth, archive)
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    results = settings.job_results_dir(job["id"])
    (results / "escape.txt").symlink_to(secret)
    other = settings.job_results_dir("other-job")
    other.mkdir()
    (other / "result.json").write_text("{}")
    base = f"/api/v1/jobs/{job['id']}/artifacts"
    for name in ["../other-job/result.json", "..%2Fother-job%2Fresult.json",
                 "..%2F..%2F..%2Fsecret.txt", f"%2F{str(secret).lstrip('/')}",
                 "escape.txt", "no-such-file", "%2E%2E"]:
        response = client.get(f"{base}/{name}", headers=auth)
        assert response.status_code == 404, name
        assert "private" not in response.text


# ---- ensembles, models, alerts ----------------------------------------------------------


def test_ensembles(client: TestClient, auth: dict[str, str], archive: Path) -> None:
    body = {"name": "freeze-db", "kind": "freeze-database", "configuration": "B1850 ne30 t232",
            "roots": [str(archive)], "metadata": {"note": "CESM3 beta"}}
    created = client.post("/api/v1/ensembles", headers=auth, json=body)
    assert created.status_code == 201 and created.json()["metadata"] == {"note": "CESM3 beta"}
    assert client.post("/api/v1/ensembles", headers=auth, json=body).status_code == 409
    outside = client.post("/api/v1/ensembles", headers=auth, json={**body, "roots": ["/tmp"]})
    assert outside.status_code == 422
    bad_kind = client.post("/api/v1/ensembles", headers=auth, json={**body, "kind": "x"})
    assert bad_kind.status_code == 422
    listed = client.get("/api/v1/ensembles", headers=auth).json()
    assert [e["name"] for e in listed] == ["freeze-db"]


def test_models_and_alerts(client: TestClient, auth: dict[str, str], store: Store) -> None:
    with store.session() as session:
        session.add(ModelVersion(name="risk", version=1, metrics={"roc_auc": 0.8},
                                 path="/models/risk-1.pt", promoted=True))
        session.add(Alert(dedupe_key="scan:2025-01-01", payload={"frozen": ["c.001"]}, sinks=[]))
    [model] = client.get("/api/v1/models", headers=auth).json()
    assert (model["name"], model["promoted"], "path" in model) == ("risk", True, False)
    [alert] = client.get("/api/v1/alerts", headers=auth).json()
    assert alert["payload"] == {"frozen": ["c.001"]}


def test_promoting_a_model_demotes_the_others(client: TestClient, auth: dict[str, str],
                                              store: Store) -> None:
    for version in (1, 2):
        store.add_model("risk", f"/models/risk/v{version}", {})
    store.promote_model("risk", 1)
    response = client.post("/api/v1/models/risk/2/promote", headers=auth)
    assert response.status_code == 200 and response.json()["promoted"]
    assert store.promoted_model("risk").version == 2
    assert client.post("/api/v1/models/risk/9/promote", headers=auth).status_code == 404
    assert client.post("/api/v1/models/risk/2/promote").status_code == 401


def test_embedded_server_reconciles_jobs_left_queued(tmp_path: Path, archive: Path) -> None:
    settings = local_settings(tmp_path, archive, reconcile_after_s=0)
    store = get_store(settings)
    job, _ = store.create_job("features", {"roots": [str(archive)]})  # as if the server died
    with TestClient(create_app(settings)):
        wait_for(lambda: store.get_job(job.id).state == "succeeded")


# ---- health, outages, metrics -----------------------------------------------------------


def test_unreachable_broker_is_degraded(tmp_path: Path, archive: Path) -> None:
    settings = local_settings(tmp_path, archive, broker_url="redis://127.0.0.1:1/0")
    health = TestClient(create_app(settings)).get("/healthz")
    assert health.status_code == 200
    assert (health.json()["status"], health.json()["broker"]) == ("degraded", "degraded")


def test_database_outage_is_503(tmp_path: Path, archive: Path) -> None:
    settings = local_settings(tmp_path, archive,
                              database_url="postgresql://postgres@127.0.0.1:1/none")
    client = TestClient(create_app(settings))
    response = client.get("/api/v1/jobs", headers={"Authorization": "Bearer esmw_x"})
    assert response.status_code == 503
    assert response.json() == {"detail": "database unavailable; try again later"}
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["database"] == "unavailable"


def test_metrics_count_requests_by_route_and_jobs_by_state(client: TestClient,
                                                           auth: dict[str, str],
                                                           archive: Path) -> None:
    job = finished_job(client, auth, archive)
    text = client.get("/metrics").text
    assert 'esmwatch_jobs{state="succeeded"} 1.0' in text
    assert 'esmwatch_jobs_submitted_total{type="features"} 1.0' in text
    assert ('route="/api/v1/jobs/{job_id}",status="200"' in text) and job["id"] not in text


# ---- operations CLI ---------------------------------------------------------------------


def test_cli_token_jobs_and_ensembles(client: TestClient, settings: Settings, store: Store,
                                      archive: Path) -> None:
    cli = operations_cli()
    with override_settings(settings):
        created = runner.invoke(cli, ["token", "create", "alice"])
        assert created.exit_code == 0, created.output
        token = created.stdout.strip()
        assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}
                          ).status_code == 200
        job, _ = store.create_job("features", {"roots": [str(archive)]})
        listed = runner.invoke(cli, ["jobs", "list", "--state", "queued"])
        assert job.id in listed.stdout and "1 of 1 job(s)" in listed.stdout
        shown = runner.invoke(cli, ["jobs", "show", job.id])
        assert json.loads(shown.stdout)["state"] == "queued"
        assert runner.invoke(cli, ["jobs", "cancel", job.id]).exit_code == 0
        again = runner.invoke(cli, ["jobs", "cancel", job.id])
        assert again.exit_code == 1 and "already cancelled" in again.stderr
        missing = runner.invoke(cli, ["jobs", "show", "nope"])
        assert missing.exit_code == 1 and missing.stderr.strip() == "error: no job nope"
        added = runner.invoke(cli, [
            "ensemble", "add", "ppe", "--kind", "ppe-offline", "--configuration", "I2000 f09",
            "--root", str(archive), "--metadata", '{"setup": "offline"}'])
        assert added.exit_code == 0, added.output
        outside = runner.invoke(cli, [
            "ensemble", "add", "bad", "--kind", "pertlim", "--configuration", "x",
            "--root", "/etc"])
        assert outside.exit_code == 1 and "outside the data roots" in outside.stderr
        assert "ppe" in runner.invoke(cli, ["ensemble", "list"]).stdout
        updated = runner.invoke(cli, ["ensemble", "update", "ppe", "--configuration", "I2000 f19",
                                      "--metadata", '{"setup": "offline", "rev": 2}'])
        assert updated.exit_code == 0, updated.output
        row = store.get_ensemble("ppe")
        assert (row.configuration, row.meta, row.kind) == (
            "I2000 f19", {"setup": "offline", "rev": 2}, "ppe-offline")
        for bad, message in [(["--metadata", '{"x": NaN}'], "only finite numbers"),
                             (["--metadata", '{"reference": "ppe"}'], "not another registered"),
                             (["--root", "/etc"], "outside the data roots")]:
            refused = runner.invoke(cli, ["ensemble", "update", "ppe", *bad])
            assert refused.exit_code == 1 and message in refused.stderr, refused.output
        assert runner.invoke(cli, ["ensemble", "remove", "ppe"]).exit_code == 0
        gone = runner.invoke(cli, ["ensemble", "remove", "ppe"])
        assert gone.exit_code == 1 and "no ensemble named 'ppe'" in gone.stderr
        assert store.list_ensembles() == []


def test_cli_serve_worker_and_beat(settings: Settings, tmp_path: Path,
                                                    archive: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cli = operations_cli()
    with override_settings(settings):
        embedded = runner.invoke(cli, ["worker"])
    assert embedded.exit_code == 1 and "no broker configured" in embedded.stderr
    calls: list[list[str]] = []
    monkeypatch.setattr(cli_ops.os, "execv", lambda exe, args: calls.append(args))
    brokered = local_settings(tmp_path, archive, broker_url="redis://127.0.0.1:6379/15",
                              queue_prefix="site-")
    with override_settings(brokered):
        assert runner.invoke(cli, ["worker", "--queues", "gpu"]).exit_code == 0
        assert runner.invoke(cli, ["worker", "--queues", "cpu"]).exit_code == 1
        assert runner.invoke(cli, ["beat"]).exit_code == 0
    assert calls[0][-5:] == ["worker", "-Q", "site-gpu", "--concurrency=1", "--loglevel=INFO"]
    assert calls[0][1:5] == ["-m", "celery", "-A", "workers.celery_app"]
    assert calls[1][-2:] == ["beat", "--loglevel=INFO"]
    served: list[tuple] = []
    monkeypatch.setattr("uvicorn.run", lambda app, host, port: served.append((app, host, port)))
    with override_settings(settings):
        assert runner.invoke(cli, ["serve", "--port", "8123"]).exit_code == 0
    assert served[0][1:] == ("127.0.0.1", 8123) and served[0][0].title == "esmwatch"
