"""Freeze labels from March mixed layer and winter ice, N consecutive winters."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from detectors.labels import LabelRule, label_freezes
from ensembles.errors import ConfigurationError
from ensembles.timeaxis import month_centre


def _table(mld: np.ndarray, ice: np.ndarray, name: str = "xmxl") -> xr.Dataset:
    months = [f"{y:04d}-{m:02d}" for y in range(1, mld.shape[1] // 12 + 1) for m in range(1, 13)]
    coords = {
        "member": [f"m{i}" for i in range(mld.shape[0])],
        "time": [month_centre(m) for m in months],
    }
    return xr.Dataset(
        {
            f"{name}_labsea_interior": (("member", "time"), mld),
            "aice_labsea_interior": (("member", "time"), ice),
        },
        coords=coords,
    )


def _series(years: int, frozen_from: int | None) -> tuple[np.ndarray, np.ndarray]:
    mld = np.full(years * 12, 1500.0)
    ice = np.full(years * 12, 0.1)
    if frozen_from is not None:
        mld[(frozen_from - 1) * 12 :] = 100.0
        ice[(frozen_from - 1) * 12 :] = 0.9
    return mld, ice


def test_onset_is_january_of_first_frozen_winter() -> None:
    pairs = [_series(12, 6), _series(12, None)]
    table = _table(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]))
    labels = label_freezes(table)
    assert labels.froze.values.tolist() == [True, False]
    assert labels.onset.values.tolist() == ["0006-01", ""]
    assert labels.mixed_layer == "xmxl"


def test_short_episodes_are_not_freezes() -> None:
    mld, ice = _series(12, None)
    mld[2 * 12 : 4 * 12], ice[2 * 12 : 4 * 12] = 100.0, 0.9  # two winters only
    labels = label_freezes(_table(mld[None], ice[None]), LabelRule(consecutive_winters=3))
    assert not labels.froze.item()
    assert label_freezes(
        _table(mld[None], ice[None]), LabelRule(consecutive_winters=2)
    ).froze.item()


def test_and_or_rules_and_per_diagnostic_thresholds() -> None:
    mld, ice = _series(10, None)
    mld[:] = 250.0  # shallow by the HMXL threshold (300 m) but ice stays low
    table = _table(mld[None], ice[None], name="hmxl")
    assert not label_freezes(table, LabelRule(combine="and")).froze.item()
    assert label_freezes(table, LabelRule(combine="or")).froze.item()
    assert not label_freezes(
        table, LabelRule(mld_threshold_m={"hmxl": 200.0}, combine="mld")
    ).froze.item()


def test_missing_label_features_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="cannot label freezes"):
        label_freezes(xr.Dataset({"so_upper_labsea": (("member", "time"), np.zeros((1, 12)))}))


def test_a_record_ending_with_frozen_winters_is_censored_not_negative() -> None:
    ends_frozen = _series(12, 11)  # winters 11 and 12 frozen: two of the three needed
    never = _series(12, None)
    frozen = _series(12, 5)
    table = _table(*(np.stack(x) for x in zip(ends_frozen, never, frozen, strict=True)))
    labels = label_freezes(table)
    assert labels.froze.values.tolist() == [False, False, True]
    # an onset in winter 11 cannot be ruled out; the clean record is open from winter 13 on
    assert labels.censored_from.values.tolist() == ["0011-01", "0013-01", ""]
