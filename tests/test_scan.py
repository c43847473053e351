"""The nightly scan end to end, embedded: new files only, findings alerted once, promoted model.

One synthetic freeze database is written once for the module.  One frozen member's files
from the third winter of its freeze on are held back, so the member does not look frozen
yet; adding one year back must make the next scan read exactly those files and raise one
alert about that member, and the scan after must raise nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from detectors.labels import label_freezes
from detectors.risk import RiskSettings, train_risk
from ensembles.features import build_features
from ensembles.filenames import discover
from service.jobs import RESULT_FILE, submit_job
from service.model_registry import RISK_MODEL, checked_model_path, register_model
from service.settings import Settings, validate_with_settings
from service.store import EnsembleSpec, get_store
from synth.ensemble import simulate_ensemble, synthesize
from synth.table import feature_table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Data root, settings, the held-back member and its held-back files by year."""
    base = tmp_path_factory.mktemp("scan")
    root = base / "archive" / "freeze"
    synthesize(root, kind="freeze-database", scenario="greenland_runoff", members=6, years=18,
               size="small", flavour="cesm3", seed=1)
    settings = Settings(data_dir=base / "service", data_roots=[base / "archive"],
                        dask_scheduler="synchronous")
    full = build_features([root], cache_dir=base / "warm-up-cache").dataset
    labels = label_freezes(full)
    onsets = {str(m): str(o) for m, o in zip(labels.onset.member.values, labels.onset.values,
                                             strict=True) if o}
    assert len(onsets) >= 2, onsets
    member, onset = max(onsets.items(), key=lambda item: item[1])
    third = int(onset[:4]) + 2  # the winter that makes three in a row
    files, _ = discover([root])
    held = base / "held"
    by_year: dict[int, list[Path]] = {}
    for f in files:
        if f.case == member and f.start and int(f.start[:4]) >= third:
            target = held / Path(f.path).relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(f.path, target)
            by_year.setdefault(int(f.start[:4]), []).append(target)
    store = get_store(settings)
    store.add_ensemble(validate_with_settings(EnsembleSpec, {
        "name": "freeze-db", "kind": "freeze-database", "configuration": "B1850C_MTso ne30",
        "roots": [str(root)]}, settings, what="ensemble"))
    # the risk model is trained on another (feature-level) freeze database, as in production
    sim = simulate_ensemble("freeze-database", "greenland_runoff", members=16, years=24, seed=7)
    training = feature_table(sim, [f"train.{i:03d}" for i in range(16)], ensemble="train")
    training = training[[n for n in training.data_vars if n in full]]  # this flavour's names
    model = train_risk(training, label_freezes(training), RiskSettings(seed=0))
    model.save(base / "risk_model", ["freeze-db"])
    for _ in range(2):  # v1 (promoted as the first) and v2
        register_model(store, settings, RISK_MODEL, base / "risk_model", {"top_processes": [
            {"process": "greenland_runoff", "importance": 0.3, "ci": [0.2, 0.4],
             "significant": True, "direction": "+"}]})
    return {"settings": settings, "root": root, "held": held, "member": member,
            "onset": onset, "third": third, "by_year": by_year, "onsets": onsets}


def _scan(settings: Settings) -> dict:
    job_id = submit_job("scan", {}, settings=settings, wait=True)
    job = get_store(settings).get_job(job_id)
    assert job.state == "succeeded", job.error
    return json.loads((settings.job_results_dir(job_id) / RESULT_FILE).read_text())


def _restore(world: dict, year: int) -> int:
    for path in world["by_year"][year]:
        target = world["root"] / path.relative_to(world["held"])
        shutil.move(path, target)
    return len(world["by_year"][year])


def test_scan_reads_new_files_only_alerts_once_and_uses_the_promoted_model(world: dict) -> None:
    settings, member = world["settings"], world["member"]
    first = _scan(settings)
    assert first["risk_model"] == "risk v1" and first["files_read"] > 1000
    kinds = {(f["kind"], f["member"]) for f in first["findings"]}
    assert ("frozen", member) not in kinds  # only two frozen winters are there yet
    others = {m for m in world["onsets"] if m != member}
    assert others <= {m for k, m in kinds if k == "frozen"}
    assert first["alert"] and first["alert"]["delivered"] == ["file"]
    row = next(m for m in first["members"] if m["member"] == member)
    assert not row["froze"] and row["last_month"] == f"{world['third'] - 1:04d}-12"
    assert (settings.job_results_dir(first["job_id"]) / "risk_timelines.png").stat().st_size

    added = _restore(world, world["third"])
    second = _scan(settings)
    assert second["files_read"] == added and second["files_cached"] > 1000
    assert [(f["kind"], f["member"], f["month"]) for f in second["findings"]] == [
        ("frozen", member, world["onset"])]
    assert second["alert"]["delivered"] == ["file"]
    alerts = get_store(settings).list_alerts()
    assert len(alerts) == 2 and alerts[0].payload["summary"]["findings"][0]["member"] == member
    archived = sorted(p.name for p in (settings.alert_dir).rglob("report.md"))
    assert len(archived) == 2

    third = _scan(settings)
    assert third["files_read"] == 0 and third["findings"] == [] and third["alert"] is None
    assert third["known_findings"] == len(first["findings"]) + 1
    assert len(get_store(settings).list_alerts()) == 2

    get_store(settings).promote_model(RISK_MODEL, 2)
    assert _scan(settings)["risk_model"] == "risk v2"


def test_a_member_with_unreadable_files_is_listed_and_the_others_are_scored(world: dict,
                                                                           tmp_path: Path
                                                                           ) -> None:
    settings, root = world["settings"], world["root"]
    victim = sorted(p for p in root.iterdir() if p.is_dir() and p.name != world["member"])[0]
    bad = victim / "ocn" / "hist" / f"{victim.name}.mom6.h.z.0099-01.nc"
    bad.write_bytes(b"not a netCDF file at all")
    try:
        result = _scan(settings)
    finally:
        bad.unlink()
    row = next(m for m in result["members"] if m["member"] == victim.name)
    assert any(bad.name in p for p in row["problems"])
    scored = [m for m in result["members"] if m["risk"] is not None or m["froze"]]
    assert len(scored) == len(result["members"])
    html = (settings.job_results_dir(result["job_id"]) / "report.html").read_text()
    assert "Unreadable files" in html and bad.name in html


def test_models_are_loaded_only_from_the_model_store(world: dict, tmp_path: Path) -> None:
    settings = world["settings"]
    with pytest.raises(Exception, match="outside the model store"):
        checked_model_path(settings, tmp_path)
    inside = get_store(settings).promoted_model(RISK_MODEL)
    assert checked_model_path(settings, inside.path).is_dir()
