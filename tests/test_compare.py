"""Comparing two ensembles: the tests behind the verdict, and the verdict on the generator."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from detectors.compare import CompareResult, compare_ensembles, km_median, log_rank
from synth.ensemble import case_name, plan_ensemble, simulate_plan
from synth.table import feature_table

SCHEMA = CompareResult.model_json_schema(by_alias=True)


def test_log_rank_matches_a_hand_computed_example():
    # A: events at 1, 2; B: events at 3, censored at 4. At t=1: n=4, n_B=2, d=1 -> E_B=0.5,
    # V=0.25; t=2: n=3, n_B=2, E_B=2/3, V=2/9; t=3: n=2, n_B=2, d_B=1 -> E_B=1, V=0.
    # O_B - E_B = 1 - 0.5 - 2/3 - 1 = -7/6; chi2 = (49/36) / (0.25 + 2/9) = 2.882...
    chi2, p = log_rank(
        np.array([1, 2, 3, 4.0]), np.array([1, 1, 1, 0]), np.array([False, False, True, True])
    )
    assert chi2 == pytest.approx((49 / 36) / (0.25 + 2 / 9))
    assert p == pytest.approx(0.0896, abs=1e-3)


def test_log_rank_of_identical_groups_is_zero_and_km_median():
    time = np.array([1, 1, 2, 2, 3, 3.0])
    chi2, p = log_rank(time, np.ones(6, bool), np.array([0, 1, 0, 1, 0, 1], bool))
    assert chi2 == pytest.approx(0) and p == pytest.approx(1)
    assert km_median(np.array([1, 2, 3, 4.0]), np.ones(4, bool)) == 2
    assert km_median(np.array([1, 5, 5, 5.0]), np.array([1, 0, 0, 0], bool)) is None


def _table(plan, years=30, seed=1):
    sim = simulate_plan(plan, "greenland_runoff", years, seed)
    n = plan.params.n_members
    return feature_table(sim, [case_name("cesm3", plan.label, i + 1) for i in range(n)])


def test_pertlim_halves_are_not_told_apart():
    table = _table(plan_ensemble("pertlim", "greenland_runoff", 20, 30, 1)[0])
    result = compare_ensembles(
        table.isel(member=slice(0, 10)), table.isel(member=slice(10, 20)), ("first", "second")
    )
    jsonschema.validate(json.loads(result.model_dump_json(by_alias=True)), SCHEMA)
    assert result.verdict == "no significant difference", result.reason
    assert not result.budget_terms


@pytest.fixture(scope="module")
def candidate_pair():
    return [_table(p) for p in plan_ensemble("candidate", "greenland_runoff", 20, 30, 1)]


def test_changed_parameter_candidate_is_told_from_its_reference(candidate_pair):
    reference, candidate = candidate_pair
    risk = {"a": np.linspace(0.1, 0.3, 20), "b": np.linspace(0.5, 0.9, 20)}
    result = compare_ensembles(
        reference, candidate, ("reference", "candidate"), risk=risk, risk_model="risk v1"
    )
    assert result.verdict == "different"
    assert any(p.shifted for p in result.processes)
    assert result.risk.test.p_value < 0.001 and result.risk.b.median > result.risk.a.median


def test_the_scan_puts_the_comparison_in_a_candidates_alert(candidate_pair):
    from service.scan import ScanSummary, _comparison_findings

    reference, candidate = candidate_pair
    summary = ScanSummary(ensembles=["cand"], alert_risk=0.5)
    found = _comparison_findings("cand", "ref", reference, candidate, summary)
    assert [f.kind for f in found] == ["changed"] and found[0].key == "changed:cand:ref"
    assert summary.notes[0].startswith("cand vs ref: different")
    same = ScanSummary(ensembles=["ref"], alert_risk=0.5)
    assert _comparison_findings("ref", "ref", reference, reference, same) == []
    assert "no significant difference" in same.notes[0]
