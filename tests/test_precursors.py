"""Precursor analysis on small synthetic ensembles: splits, samples, recovery, null."""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
import xarray as xr

from detectors.crossval import make_folds
from detectors.labels import label_freezes
from detectors.precursors.analysis import AnalysisError, analyse_precursors
from detectors.precursors.results import PrecursorResult
from detectors.precursors.settings import PrecursorSettings
from detectors.samples import SampleRule, Standardiser, build_samples
from synth.ensemble import simulate_ensemble
from synth.table import feature_table


@cache
def _table(scenario: str, members: int = 20, years: int = 30, seed: int = 1) -> xr.Dataset:
    sim = simulate_ensemble("freeze-database", scenario, members=members, years=years, seed=seed)
    return feature_table(sim, [f"b.e30.{scenario}.{i:03d}" for i in range(1, members + 1)],
                         ensemble=f"b.e30.{scenario}")


FAST = PrecursorSettings(models=("mlp", "logistic"), n_boot=200, n_folds=4,
                         samples=SampleRule(leads_months=(12, 24)))


def test_folds_never_share_a_member() -> None:
    table = _table("greenland_runoff")
    samples = build_samples(table, label_freezes(table), 12)
    for fold in make_folds(samples, 4, seed=0):
        assert not set(samples.groups[fold.train]) & set(samples.groups[fold.test])
        assert samples.y[fold.test].sum() > 0


def test_windows_end_lead_months_before_onset_and_negatives_share_configuration() -> None:
    table = _table("greenland_runoff")
    labels = label_freezes(table)
    config = xr.DataArray(np.where(np.arange(20) < 10, "cfg-a", "cfg-b"), dims="member")
    # make every member of configuration b unfrozen: b has no positives, so none of its
    # windows may serve as negatives for a's positives
    frozen_b = labels.froze.values.copy()
    frozen_b[10:] = False
    labels.onset.values[10:] = ""
    labels.froze.values[:] = frozen_b
    samples = build_samples(table, labels, 12, config)
    assert set(samples.configuration) == {"cfg-a"}
    onset_index = {m: i for i, m in enumerate(table.member.values)}
    times = [f"{t.year:04d}-{t.month:02d}" for t in table.time.values]
    for member, end, y in zip(samples.member, samples.end_index, samples.y, strict=True):
        onset = labels.onset.values[onset_index[member]]
        if y == 1:
            lead = times.index(onset) - end
            assert 12 <= lead < 12 + samples.rule.positive_span_months
        elif onset:
            assert times.index(onset) - end > 12 + samples.rule.negative_margin_months


def test_standardiser_is_fitted_on_training_windows_only() -> None:
    table = _table("greenland_runoff")
    samples = build_samples(table, label_freezes(table), 12)
    everything = Standardiser().fit(samples)
    for fold in make_folds(samples, 4, seed=0):
        train_only = Standardiser().fit(samples.subset(fold.train))
        np.testing.assert_array_equal(fold.scaler.clim, train_only.clim)
        np.testing.assert_array_equal(fold.scaler.scale, train_only.scale)
        assert not np.allclose(fold.scaler.clim, everything.clim)


@pytest.mark.slow
def test_planted_driver_is_recovered_and_co_varying_decoy_ranks_below() -> None:
    result = analyse_precursors(_table("greenland_runoff"), FAST)
    PrecursorResult.model_validate_json(result.model_dump_json(by_alias=True))
    drivers = [p for p in result.processes if p.view == "drivers"]
    assert drivers[0].process == "greenland_runoff"
    assert drivers[0].significant and drivers[0].direction == "+"
    assert drivers[0].drop_auc is not None and drivers[0].drop_auc_ci[0] > 0
    decoy = next(p for p in drivers if p.process == "continental_runoff")
    assert decoy.importance < drivers[0].ci[0] and not decoy.significant
    best = [r for r in result.skill if r.view == "drivers" and r.model == result.explain_model]
    assert all(r.roc_auc_ci[0] > 0.6 and r.above_chance for r in best)
    # full view: only the driver and the decoy built to co-vary with it carry information
    full = {p.process for p in result.processes if p.view == "full" and p.role == "driver"
            and p.significant}
    assert "greenland_runoff" in full and full <= {"greenland_runoff", "continental_runoff"}
    json.loads(result.model_dump_json(by_alias=True))["processes"]  # schema keys by alias
    a = result.attribution  # both lines find the planted source: one confident answer
    assert (a.verdict, a.top_source) == ("confident", "greenland_runoff")
    assert a.summary.startswith("Excess freshwater before the freeze came mainly from Greenland")
    assert result.budget.ranking()[0].source == "greenland_runoff"
    assert not any(p.role != "driver" for p in drivers)


@pytest.mark.slow
def test_null_scenario_raises_nothing_in_either_view_and_skill_stays_in_the_chance_band() -> None:
    result = analyse_precursors(_table("null"), FAST)
    drivers = [p for p in result.processes if p.view == "drivers"]
    assert not any(p.significant for p in drivers), [(p.process, p.p_value) for p in drivers]
    # in the full view every driver-role process is noise here: none may beat the null
    noise = [p for p in result.processes if p.view == "full" and p.role == "driver"]
    assert noise and not any(p.significant for p in noise), [(p.process, p.p_value)
                                                              for p in noise]
    assert result.attribution.verdict != "confident"
    for row in result.skill:
        if row.model not in FAST.models:
            continue
        assert row.chance_band is not None and row.chance_band[0] < 0.5 < row.chance_band[1]
        if row.view == "drivers":  # no driver carries information: no skill beyond chance
            assert not row.above_chance, row
        else:  # the Lab Sea's own state does foreshadow the freeze, above chance
            assert row.above_chance, row


def test_too_few_frozen_members_is_a_clear_error() -> None:
    table = _table("greenland_runoff").isel(time=slice(0, 60))  # nothing froze by year 5
    with pytest.raises(AnalysisError, match="frozen member"):
        analyse_precursors(table, FAST)
