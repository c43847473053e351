"""pyCECT-style consistency test: passes its own reference, fails a changed parameter."""

from __future__ import annotations

from functools import cache

import pytest
import xarray as xr

from detectors.consistency.test import ConsistencySettings, consistency_test
from ensembles.errors import ConfigurationError
from synth.ensemble import plan_ensemble, simulate_plan
from synth.table import feature_table


@cache
def _ensembles(seed: int = 1) -> dict[str, xr.Dataset]:
    out = {}
    for plan in plan_ensemble("candidate", "greenland_runoff", members=30, years=20, seed=seed):
        sim = simulate_plan(plan, "greenland_runoff", 20, seed=seed)
        out[plan.role] = feature_table(sim, [f"{plan.role}.{i:03d}" for i in range(30)],
                                       ensemble=plan.role)
    return out


def test_reference_passes_at_the_stated_rate_and_candidate_fails() -> None:
    runs = _ensembles()
    result = consistency_test(runs["reference"], runs["candidate"])
    assert result.verdict == "fail" and result.failing_pcs >= 2
    assert result.false_positive_rate <= 0.05
    held_out = consistency_test(runs["reference"].isel(member=slice(3, None)),
                                runs["reference"].isel(member=slice(0, 3)))
    assert held_out.verdict == "pass"
    assert result.settings == ConsistencySettings().model_dump()


def test_too_small_reference_is_a_clear_error() -> None:
    runs = _ensembles()
    with pytest.raises(ConfigurationError, match="at least 8"):
        consistency_test(runs["reference"].isel(member=slice(0, 5)), runs["candidate"])
