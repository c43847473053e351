"""Months of a file's time steps: from the bounds (noleap arithmetic or cftime), from
end-of-month stamps without bounds, and the same answer with a reused time layout."""

from __future__ import annotations

import dataclasses

import netCDF4
import numpy as np
import pytest

from ensembles.errors import InputFileError
from ensembles.timeaxis import decode_months, time_layout

MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _write(path, stamps, bounds=None, calendar="noleap", units="days since 0001-01-01"):
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", None)
        time = nc.createVariable("time", "f8", ("time",))
        time.units, time.calendar = units, calendar
        time[:] = stamps
        if bounds is not None:
            nc.createDimension("nbnd", 2)
            time.bounds = "time_bnds"
            nc.createVariable("time_bnds", "f8", ("time", "nbnd"))[:] = bounds
    return path


def _noleap_bounds(n_months: int) -> np.ndarray:
    edges = np.concatenate([[0], np.cumsum(np.tile(MONTH_DAYS, n_months // 12 + 1))])
    return np.stack([edges[:n_months], edges[1 : n_months + 1]], axis=1).astype(float)


def test_end_of_month_stamps_without_bounds(tmp_path):
    bounds = _noleap_bounds(2)
    path = _write(tmp_path / "f.nc", bounds[:, 1])  # CESM2: 00:00 on the 1st of the next month
    with netCDF4.Dataset(path) as nc:
        time = decode_months(nc, str(path))
    assert time.months == ["0001-01", "0001-02"]
    assert time.notes == ["no time bounds: month taken from the time stamp"]


def test_noleap_arithmetic_matches_cftime(tmp_path):
    bounds = _noleap_bounds(480) + 365 * 3  # 40 years from 0004-01
    path = _write(tmp_path / "f.nc", bounds.mean(axis=1), bounds)
    with netCDF4.Dataset(path) as nc:
        layout = time_layout(nc, str(path))
        assert layout.origin is not None  # the arithmetic path
        fast = decode_months(nc, str(path), layout)
        slow = decode_months(nc, str(path), dataclasses.replace(layout, origin=None))
    assert fast.months == slow.months
    assert fast.months[0] == "0004-01" and fast.months[-1] == "0043-12"


def test_other_calendars_go_through_cftime(tmp_path):
    bounds = np.array([[0.0, 31.0], [31.0, 59.0]])
    path = _write(
        tmp_path / "f.nc",
        bounds.mean(axis=1),
        bounds,
        calendar="standard",
        units="days since 2001-01-01",
    )
    with netCDF4.Dataset(path) as nc:
        assert time_layout(nc, str(path)).origin is None
        assert decode_months(nc, str(path)).months == ["2001-01", "2001-02"]


def test_a_repeated_month_keeps_the_last_step(tmp_path):
    bounds = _noleap_bounds(2)[[0, 1, 1]]
    path = _write(tmp_path / "f.nc", bounds.mean(axis=1), bounds)
    with netCDF4.Dataset(path) as nc:
        time = decode_months(nc, str(path))
    assert time.months == ["0001-01", "0001-02"]
    np.testing.assert_array_equal(time.indices, [0, 2])
    assert any("restart overlap" in note for note in time.notes)


def test_an_empty_time_axis_is_reported(tmp_path):
    path = _write(tmp_path / "f.nc", np.array([]), np.empty((0, 2)))
    with netCDF4.Dataset(path) as nc, pytest.raises(InputFileError, match="time axis is empty"):
        decode_months(nc, str(path))
