"""Risk model: calibrated on held-out members, saved as state_dict + JSON, reloaded safely."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from detectors.labels import label_freezes
from detectors.risk import RiskModel, RiskSettings, train_risk
from ensembles.errors import ConfigurationError
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
    assert rel.brier_calibrated < rel.brier_raw
    assert set(rel.test_members) <= set(table.member.values.astype(str))
    risk = model.score(table)
    assert float(risk.min()) >= 0 and float(risk.max()) <= 1
    assert np.isnan(risk.isel(time=0)).all()  # no complete window yet


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
