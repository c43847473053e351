"""Risk model: calibrated on held-out members, saved as state_dict + JSON, reloaded safely."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from detectors.labels import label_freezes
from detectors.risk import RiskModel, RiskSettings, _targets, train_risk
from ensembles.errors import ConfigurationError
from service.scan import risk_caveat
from synth.ensemble import simulate_ensemble
from synth.table import feature_table


@cache
def _trained() -> tuple[RiskModel, object]:
    sim = simulate_ensemble("freeze-database", "greenland_runoff", members=24, years=30, seed=2)
    table = feature_table(sim, [f"b.e30.risk.{i:03d}" for i in range(24)])
    return train_risk(table, label_freezes(table), RiskSettings()), table


def test_risk_is_calibrated_on_held_out_members() -> None:
    model, table = _trained()
    rel = model.reliability
    assert rel.expected_calibration_error < 0.1
    assert rel.n_splits == RiskSettings().n_splits and rel.brier_skill_score_ci is not None
    assert rel.brier_skill_score_ci[0] <= rel.brier_skill_score <= rel.brier_skill_score_ci[1]
    assert 0 < rel.training_base_rate < 0.5  # onsets are rare months, even here
    assert set(rel.test_members) <= set(table.member.values.astype(str))
    risk = model.score(table)
    assert float(risk.min()) >= 0 and float(risk.max()) <= 1
    assert np.isnan(risk.isel(time=0)).all()  # no complete window yet


def test_risk_from_noise_does_not_beat_climatology() -> None:
    sim = simulate_ensemble("freeze-database", "null", members=24, years=30, seed=2)
    table = feature_table(sim, [f"b.e30.noise.{i:03d}" for i in range(24)])
    drivers = table[[n for n, v in table.data_vars.items() if v.attrs.get("role") == "driver"]]
    rel = train_risk(drivers, label_freezes(table), RiskSettings(n_splits=3)).reliability
    assert rel.beats_climatology is False, rel.brier_skill_score_ci
    assert rel.brier_climatology is not None and rel.brier_climatology > 0


def test_risk_alerts_say_when_the_model_does_not_beat_climatology() -> None:
    model, _ = _trained()
    worse = replace(model, reliability=model.reliability.model_copy(
        update={"beats_climatology": False, "brier_skill_score": -0.2}))
    better = replace(model, reliability=model.reliability.model_copy(
        update={"beats_climatology": True, "brier_skill_score": 0.3}))
    assert "does not beat climatology" in risk_caveat(worse)
    assert "CAUTION" not in risk_caveat(better) and "+0.30" in risk_caveat(better)
    assert f"{model.reliability.training_base_rate:.1%}" in risk_caveat(worse)
    assert risk_caveat(None) == ""


def test_risk_targets_stop_where_an_unfrozen_record_stops_being_labellable() -> None:
    _, table = _trained()
    labels = label_freezes(table)
    horizon = RiskSettings().horizon_months
    win = RiskSettings().window_months
    members = np.repeat(np.arange(table.sizes["member"]), table.sizes["time"] - win + 1)
    ends = np.tile(np.arange(win - 1, table.sizes["time"]), table.sizes["member"])
    y, keep, censored = _targets(table, labels, members, ends, horizon)
    unfrozen = ~labels.froze.values[members]
    n_time = table.sizes["time"]
    # no unfrozen month within H months of the record's end is a negative any more
    assert censored > 0 and not (keep & unfrozen & (ends + horizon >= n_time)).any()
    assert (y == 0).sum() > 0 and y.size == keep.sum()


def test_saved_model_reloads_weights_only_and_predicts_identically(tmp_path) -> None:
    model, table = _trained()
    model.save(tmp_path / "risk", ["synthetic"])
    again = RiskModel.load(tmp_path / "risk", expected_features=model.features)
    np.testing.assert_array_equal(model.score(table).values, again.score(table).values)


def test_loading_against_other_features_is_a_clear_error(tmp_path) -> None:
    model, table = _trained()
    model.save(tmp_path / "risk", ["synthetic"])
    with pytest.raises(ConfigurationError, match="missing \\['so_upper_labsea'\\]"):
        RiskModel.load(tmp_path / "risk",
                       expected_features=[f for f in model.features if f != "so_upper_labsea"])
    with pytest.raises(ConfigurationError, match="lacks"):
        model.score(table.drop_vars("so_upper_labsea"))
