"""The precursor analysis as the CLI and jobs run it: result.json validates, report is written."""

from __future__ import annotations

import json
from html import escape

import pytest

from detectors.precursors.results import PrecursorResult
from detectors.precursors.settings import PrecursorSettings
from detectors.samples import SampleRule
from service.analyses.precursors import run_precursors, top_findings
from service.result_files import write_result
from synth.ensemble import simulate_ensemble
from synth.table import feature_table


@pytest.mark.slow
def test_run_precursors_writes_a_valid_result_report_and_figures(tmp_path) -> None:
    sim = simulate_ensemble("freeze-database", "sea_ice_import", members=16, years=24, seed=0)
    table = feature_table(sim, [f"b.e30.ice.{i:03d}" for i in range(16)], ensemble="b.e30.ice")
    settings = PrecursorSettings(models=("mlp", "logistic"), n_boot=100,
                                 samples=SampleRule(leads_months=(12,)))
    result = run_precursors(table, tmp_path, settings, ["some/file.nc: truncated"])
    assert not (tmp_path / "result.json").exists()  # the caller writes it, once
    write_result(tmp_path, result)
    document = json.loads((tmp_path / "result.json").read_text())
    PrecursorResult.model_validate(document)
    assert document["schema"] == 2 and document["job"] == "precursors"
    assert any(n.startswith("input: some/file.nc") for n in document["notes"])
    assert all(m["max_risk"] is not None for m in document["members"])
    risk = document["risk_model"]
    assert risk["horizon_months"] > 0 and risk["test_members"]
    assert 0 <= risk["expected_calibration_error"] <= 1
    assert risk["beats_climatology"] is not None and risk["brier_climatology"] > 0
    assert document["permutations"] and document["censoring"] is not None
    assert all(r["chance_band"] is not None for r in document["skill"])
    html = (tmp_path / "report.html").read_text()
    assert "climatology" in html and "chance band" in html
    for figure in ("skill_by_lead", "process_importance", "top_features", "lag_profiles",
                   "freshwater_budget", "member_timelines"):
        assert (tmp_path / f"{figure}.png").stat().st_size > 1000
        assert f"{figure}.png" in html
    assert (tmp_path / "risk_model" / "weights.pt").exists()
    checks = [c for c in result.explainer_checks if c.kernel_rank_correlation is not None]
    assert checks and all(c.kernel_n == 20 for c in checks)
    assert all(c.additivity_error < 1e-5 for c in result.explainer_checks)
    # imported ice melts in the Lab Sea, so the model may rank local melt first: the one
    # answer the report gives must name the import or decline, never a wrong source
    assert top_findings(result)[0].split(":")[0] in ("sea_ice_import", "sea_ice_melt")
    answer = result.attribution
    assert answer.verdict == "ambiguous" or answer.top_source == "sea_ice_import", answer
    assert escape(document["attribution"]["summary"]) in html
