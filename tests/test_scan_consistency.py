"""The nightly scan tests a candidate once per milestone of new complete years, not nightly."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import xarray as xr

from service import scan as scan_module
from service.scan import ENSEMBLE_STATE, ScanSummary, complete_years
from service.settings import Settings, validate_with_settings
from service.store import EnsembleSpec, Store, get_store
from synth.ensemble import plan_ensemble, simulate_plan
from synth.table import feature_table


def _tables(members: int, years: int) -> dict[str, xr.Dataset]:
    out = {}
    for plan in plan_ensemble("candidate", "greenland_runoff", members=members, years=years,
                              seed=3):
        sim = simulate_plan(plan, "greenland_runoff", years, seed=3)
        out[plan.role] = feature_table(sim, [f"{plan.role}.{i:03d}" for i in range(members)],
                                       ensemble=plan.role)
    return out


def test_complete_years_counts_years_with_all_twelve_months() -> None:
    table = _tables(3, 4)["candidate"]
    assert complete_years(table) == 4
    assert complete_years(table.isel(time=slice(0, 40))) == 3  # 3 years and 4 months


def _registered(tmp_path: Path) -> tuple[Settings, Store]:
    (tmp_path / "data" / "ref").mkdir(parents=True)
    (tmp_path / "data" / "cand").mkdir(parents=True)
    settings = Settings(data_dir=tmp_path / "service", data_roots=[tmp_path / "data"],
                        consistency_every_years=5)
    store = get_store(settings)
    for name, kind, meta in (("ref", "control", {}), ("cand", "candidate",
                                                      {"reference": "ref"})):
        store.add_ensemble(validate_with_settings(EnsembleSpec, {
            "name": name, "kind": kind, "configuration": "B1850 f19 tag", "metadata": meta,
            "roots": [str(tmp_path / "data" / name)]}, settings, what="ensemble"))
    return settings, store


def test_the_reference_is_read_once_for_the_test_and_the_comparison(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = _tables(30, 12)
    reads = []

    def build(roots, **_):
        reads.append(roots)
        return SimpleNamespace(dataset=tables["reference"], files_read=7, files_cached=0)

    monkeypatch.setattr(scan_module, "build_features", build)
    settings, store = _registered(tmp_path)
    summary = ScanSummary(ensembles=["cand"], alert_risk=0.5)
    scan_module._candidate_findings(store.get_ensemble("cand"), tables["candidate"], store,
                                    settings, summary, {})
    assert any("consistency" in n and "at 12 complete years" in n for n in summary.notes)
    assert any("froze" in n for n in summary.notes), summary.notes  # the comparison ran
    assert len(reads) == 1 and summary.files_read == 7


def test_candidate_is_tested_at_each_milestone_only(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tables = _tables(30, 12)
    monkeypatch.setattr(scan_module, "build_features", lambda *a, **k: SimpleNamespace(
        dataset=tables["reference"], files_read=0, files_cached=0))
    settings, store = _registered(tmp_path)
    candidate = store.get_ensemble("cand")
    tested_at = []
    for years in (4, 5, 7, 10, 12):
        state = store.member_states(candidate.id).get(ENSEMBLE_STATE, {})
        summary = ScanSummary(ensembles=["cand"], alert_risk=0.5)
        features = tables["candidate"].isel(time=slice(0, 12 * years))
        found = scan_module._consistency_findings(
            candidate, features, "ref", lambda: tables["reference"], store, settings, summary,
            state)
        after = store.member_states(candidate.id).get(ENSEMBLE_STATE, {})
        if after.get("consistency", {}).get("years") == years:
            tested_at.append(years)
            assert any(f"at {years} complete years" in n for n in summary.notes)
        else:
            assert any("re-tested at" in n for n in summary.notes), summary.notes
        assert all(f.kind == "inconsistent" for f in found)
    assert tested_at == [5, 10]
