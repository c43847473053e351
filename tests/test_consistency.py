"""pyCECT-style consistency test: filters, a calibrated false-positive rate, power, errors.

Known truths only: hand-made variables for the filters, independent Gaussian members for the
false-positive rate (fresh members the calibration never saw), planted changes for power.
"""

from __future__ import annotations

import json
from functools import cache

import cftime
import jsonschema
import numpy as np
import pytest
import xarray as xr
from scipy import stats
from typer.testing import CliRunner

from detectors.consistency.test import (
    ConsistencySettings,
    calibrate,
    consistency_test,
    filter_variables,
    rule_fails,
)
from ensembles.errors import ConfigurationError
from service.cli import app
from synth.ensemble import plan_ensemble, simulate_plan
from synth.table import feature_table


@cache
def _ensembles(seed: int = 1) -> dict[str, xr.Dataset]:
    out = {}
    for plan in plan_ensemble("candidate", "greenland_runoff", members=33, years=20, seed=seed):
        sim = simulate_plan(plan, "greenland_runoff", 20, seed=seed)
        out[plan.role] = feature_table(
            sim, [f"{plan.role}.{i:03d}" for i in range(33)], ensemble=plan.role
        )
    return out


def _as_dataset(values: np.ndarray, prefix: str) -> xr.Dataset:
    """(members, variables) annual means as a one-year monthly feature table."""
    time = [cftime.DatetimeNoLeap(1, m, 15) for m in range(1, 13)]
    members = [f"{prefix}.{i:03d}" for i in range(values.shape[0])]
    return xr.Dataset(
        {
            f"v{j}": (("member", "time"), np.repeat(values[:, j : j + 1], 12, axis=1))
            for j in range(values.shape[1])
        },
        coords={"member": members, "time": time},
    )


def test_filters_drop_constant_near_constant_and_dependent_variables() -> None:
    rng = np.random.default_rng(0)
    n = 100
    a, b, c = rng.normal(size=(3, n))
    two_values = np.where(np.arange(n) < 50, 1.0, 2.0)  # 2 distinct values < 3% of 100
    values = np.column_stack([a, np.full(n, 5.0), two_values, b, a + 2.0 * b, c])
    names = ["a", "const", "two", "b", "a+2b", "c"]
    keep, dropped = filter_variables(values, names, 0.03)
    reasons = {d.variable: d.reason for d in dropped}
    assert reasons.pop("const") == "constant"
    assert reasons.pop("two") == "near-constant"
    # one of the three dependent columns goes, whichever the pivoting picks last
    assert list(reasons.values()) == ["linearly dependent"]
    assert set(reasons) < {"a", "b", "a+2b"}
    assert "c" in [names[j] for j in keep] and len(keep) == 3


def test_more_variables_than_members_keeps_at_most_members_minus_one() -> None:
    """Centred members span n - 1 dimensions: the rest are dependent (pyCECT's QR)."""
    values = np.random.default_rng(1).normal(size=(10, 15))
    keep, dropped = filter_variables(values, [f"v{j}" for j in range(15)], 0.03)
    assert len(keep) == 9 and len(dropped) == 6


def test_calibrated_rule_meets_its_rate_on_fresh_members() -> None:
    """Independent Gaussian members: 12 references of 30, each tested on 2000 fresh triples.

    One reference's rate varies around the target (0% to 1.25% here), so the test is on
    the rate averaged over references, as users meet it, with a CI over references (a
    binomial CI over pooled triples would ignore that spread). A sigma 0.3 too low must
    be caught, or the check could not fail.
    """
    rng = np.random.default_rng(2)
    settings = ConsistencySettings(power_shifts=(5.0,), power_triples=100)
    rates, too_low = [], []
    for _ in range(12):
        reference = rng.normal(size=(30, 6))
        sigma, k, calibration, power = calibrate(reference, 6, settings)
        assert k == 3 and calibration.n_triples == 4060
        assert calibration.false_positive_rate <= settings.target_fpr
        assert all(p.detection_rate >= 0.9 for p in power if p.pattern == "every variable")
        fresh = rng.normal(size=(2000, 3, 6))
        rates.append(rule_fails(reference, fresh, 6, sigma, 2, k).mean())
        too_low.append(rule_fails(reference, fresh, 6, sigma - 0.3, 2, k).mean())

    def ci(values: list[float]) -> tuple[float, float]:
        half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / len(values) ** 0.5
        return float(np.mean(values) - half), float(np.mean(values) + half)

    lo, hi = ci(rates)
    assert lo <= settings.target_fpr <= hi, rates
    assert ci(too_low)[0] > settings.target_fpr, too_low


def test_planted_change_fails_and_held_out_reference_passes() -> None:
    runs = _ensembles()
    result = consistency_test(runs["reference"], runs["candidate"])
    assert result.verdict == "fail"
    assert result.failing_pcs >= result.min_failing_pcs
    assert result.calibration.method == "exhaustive"
    assert result.calibration.n_triples == 5456  # C(33, 3): the test actually run
    assert result.calibration.false_positive_rate <= 0.005
    lo, hi = result.calibration.ci
    assert lo <= result.false_positive_rate <= hi and hi < 0.01
    assert len(result.variables) <= 32  # at most members - 1 variables remain
    assert result.min_failing_pcs == 3 and any("K fixed at 3" in n for n in result.notes)
    held_out = consistency_test(
        runs["reference"].isel(member=slice(3, None)), runs["reference"].isel(member=slice(0, 3))
    )
    assert held_out.verdict == "pass"
    assert held_out.calibration.n_triples == 4060  # C(30, 3): recomputed for 30 members


def test_power_rises_with_the_effect_size() -> None:
    result = consistency_test(*(_ensembles()[k] for k in ("reference", "candidate")))
    every = [p for p in result.power if p.pattern == "every variable"]
    rates = [p.detection_rate for p in sorted(every, key=lambda p: p.shift_sd)]
    assert rates == sorted(rates)
    assert rates[0] < 0.2 and rates[-1] > 0.9  # 0.5 sd: mostly missed; 4 sd: seen


def test_fixed_rule_is_used_and_its_rate_measured() -> None:
    rng = np.random.default_rng(3)
    ref = _as_dataset(rng.normal(size=(30, 6)), "ref")
    cand = _as_dataset(rng.normal(size=(3, 6)) + 10.0, "cand")
    result = consistency_test(ref, cand, ConsistencySettings(sigma=1.0, min_failing_pcs=1))
    assert (result.sigma, result.min_failing_pcs) == (1.0, 1)
    assert not result.calibration.sigma_chosen
    assert result.false_positive_rate > 0.05  # sigma = 1 is loose, and the rate says so
    assert result.verdict == "fail"


def test_result_validates_against_the_published_schema() -> None:
    rng = np.random.default_rng(4)
    result = consistency_test(
        _as_dataset(rng.normal(size=(30, 5)), "ref"), _as_dataset(rng.normal(size=(3, 5)), "cand")
    )
    published = CliRunner().invoke(app, ["schema", "consistency"])
    assert published.exit_code == 0, published.output
    schema = json.loads(published.output)["consistency"]
    jsonschema.validate(json.loads(result.model_dump_json(by_alias=True)), schema)
    fields = {"sigma", "min_failing_pcs", "calibration", "power", "dropped_variables"}
    assert fields <= set(schema["properties"])


def test_too_small_reference_is_a_clear_error() -> None:
    runs = _ensembles()
    with pytest.raises(ConfigurationError, match=r"has 29 members.*needs at least 30"):
        consistency_test(runs["reference"].isel(member=slice(0, 29)), runs["candidate"])


def test_failing_pc_count_is_fixed_and_capped_by_the_pcs_tested() -> None:
    rng = np.random.default_rng(6)
    ref = _as_dataset(rng.normal(size=(30, 2)), "ref")  # 2 variables: 2 PCs, fewer than K = 3
    result = consistency_test(ref, _as_dataset(rng.normal(size=(3, 2)), "cand"))
    assert (result.n_pcs, result.min_failing_pcs) == (2, 2)
    assert result.calibration.false_positive_rate <= 0.005


def test_too_many_triples_are_sampled_and_the_result_says_so() -> None:
    rng = np.random.default_rng(5)
    ref = _as_dataset(rng.normal(size=(30, 5)), "ref")  # C(30, 3) = 4060 triples
    cand = _as_dataset(rng.normal(size=(3, 5)), "cand")
    result = consistency_test(ref, cand, ConsistencySettings(max_triples=200))
    assert result.calibration.method == "sampled" and result.calibration.n_triples == 200
    assert result.calibration.failing_triples <= 1  # floor(0.005 x 200) = 1 allowed
