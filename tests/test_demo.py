"""``esmwatch demo`` end to end: the main job a new user runs, through the real job machinery."""

from __future__ import annotations

import json

import jsonschema
import pytest
from typer.testing import CliRunner

from service.cli import app
from service.demo import FREEZE_DB, demo_settings
from service.jobs import result_schemas
from service.store import get_store


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_every_job_and_recovers_the_planted_causes(tmp_path) -> None:
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert f"report: {workdir / 'report.html'}" in result.output
    announced = int(result.output.split("writes about ")[1].split(" MB")[0])
    written = sum(p.stat().st_size for p in workdir.rglob("*") if p.is_file()) / 1e6
    assert written < 500 and abs(written - announced) < 0.2 * announced, (written, announced)
    settings = demo_settings(workdir)
    store = get_store(settings)
    jobs, _ = store.list_jobs(limit=10)
    assert sorted(j.type for j in jobs) == ["precursors", "scan", "sensitivity"]
    assert all(j.state == "succeeded" for j in jobs)
    schemas = result_schemas()
    results = {}
    for job in jobs:
        document = json.loads((settings.job_results_dir(job.id) / "result.json").read_text())
        jsonschema.validate(document, schemas[job.type])
        results[job.type] = document
    truth = json.loads((workdir / "data" / "freeze" / "truth.json").read_text())
    drivers = [p for p in results["precursors"]["processes"] if p["view"] == "drivers"]
    assert drivers[0]["process"] == truth["main_driver"] and drivers[0]["significant"]
    ppe_truth = json.loads((workdir / "data" / "ppe" / "truth.json").read_text())
    planted = {row["parameter"]: row["class"] for row in ppe_truth["parameters"]}
    found = {p["parameter"]: p["class"] for p in results["sensitivity"]["parameters"]}
    assert found["medlynslope"] == planted["medlynslope"] == "sign-flip"
    assert all(c != "sign-flip" for name, c in found.items() if planted[name] != "sign-flip")
    scan = results["scan"]
    assert scan["risk_model"] == "risk v1" and scan["findings"]
    assert scan["alert"]["delivered"] == ["file"]
    assert store.promoted_model("risk").version == 1
    assert FREEZE_DB in {e.name for e in store.list_ensembles()}
    index = (workdir / "report.html").read_text()
    assert all(f"{job.id}/report.html" in index for job in jobs)
