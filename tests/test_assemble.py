"""Assembling per-file features: sums of parts from separate files, preferred sources,
partial sums and values given twice, on hand-made file results (no netCDF involved)."""

from __future__ import annotations

import numpy as np

from ensembles.assemble import assemble
from ensembles.extract import FileFeatures
from ensembles.features import blocks_of
from ensembles.filenames import parse_filename

CASE = "b.e21.B1850.f09_g17.asm.001"
TSERIES = f"/d/{CASE}/atm/proc/tseries/month_1/{CASE}.cam.h0"
HIST = f"/d/{CASE}/atm/hist/{CASE}.cam.h0"


def _file(path: str, months: list[str], values: dict) -> tuple:
    return parse_filename(path), FileFeatures(path=path, months=months, values=values)


def _table(*pairs):
    dataset, problems = assemble(blocks_of((f, r, (0, 0)) for f, r in pairs))
    return dataset, [str(p) for p in problems]


def _tseries(variable: str, months: list[str], values: list[float | None]) -> tuple:
    """One time-series file of a part (or the whole) of CAM precipitation."""
    span = f"{months[0].replace('-', '')}-{months[-1].replace('-', '')}"
    return _file(f"{TSERIES}.{variable}.{span}.nc", months, {"prect_labsea": {variable: values}})


TWO_MONTHS = ["0001-01", "0001-02"]


def test_parts_from_separate_files_are_summed():
    dataset, problems = _table(
        _tseries("PRECC", TWO_MONTHS, [1.0, 2.0]), _tseries("PRECL", TWO_MONTHS, [10.0, None])
    )
    assert problems == []
    np.testing.assert_array_equal(dataset["prect_labsea"].values[0], [11.0, np.nan])
    assert dataset["prect_labsea"].attrs["source_variable"] == "PRECC+PRECL"


def test_the_preferred_source_wins_month_by_month():
    dataset, _ = _table(
        _tseries("PRECC", TWO_MONTHS, [1.0, 2.0]),
        _tseries("PRECL", TWO_MONTHS, [10.0, 20.0]),
        _tseries("PRECT", ["0001-02"], [5.0]),
    )
    np.testing.assert_array_equal(dataset["prect_labsea"].values[0], [11.0, 5.0])
    assert dataset["prect_labsea"].attrs["source_variable"] == "PRECC+PRECL,PRECT"


def test_a_lone_part_is_reported_and_left_out():
    dataset, problems = _table(
        _file(
            f"{TSERIES}.PRECC.000101-000102.nc",
            ["0001-01", "0001-02"],
            {"prect_labsea": {"PRECC": [1.0, 2.0]}, "psl_labsea": {"PSL": [1.0, 1.0]}},
        ),
    )
    assert "prect_labsea" not in dataset
    (problem,) = [p for p in problems if "prect_labsea" in p]
    assert "prect: PRECC present, PRECL missing" in problem


def test_values_given_twice_keep_the_first_file_and_are_reported():
    first = f"{HIST}.0001-01.nc"
    second = f"{HIST}.0001-02.nc"  # a restart overlap: it repeats January
    dataset, problems = _table(
        _file(first, ["0001-01"], {"psl_labsea": {"PSL": [1.0]}}),
        _file(second, ["0001-01", "0001-02"], {"psl_labsea": {"PSL": [9.0, 2.0]}}),
    )
    np.testing.assert_array_equal(dataset["psl_labsea"].values[0], [1.0, 2.0])
    (problem,) = [p for p in problems if "already read from" in p]
    assert problem.startswith(second) and first in problem and "0001-01" in problem


def test_mom6_precipitation_names_the_missing_part():
    case = "b.e30.B1850C_MTso.ne30_t232.asm.001"
    path = f"/d/{case}/ocn/hist/{case}.mom6.h.sfc_0001_01.nc"
    dataset, problems = _table(_file(path, ["0001-01"], {"pr_labsea": {"prlq": [1.0]}}))
    assert "pr_labsea" not in dataset
    (problem,) = [p for p in problems if "pr_labsea" in p]
    assert "pr: prlq present, prsn missing" in problem


def test_mom6_precipitation_prefers_pr_over_its_parts():
    case = "b.e30.B1850C_MTso.ne30_t232.asm.001"
    path = f"/d/{case}/ocn/hist/{case}.mom6.h.sfc_0001_01.nc"
    dataset, _ = _table(_file(path, ["0001-01"], {"pr_labsea": {"pr": [5.0], "prlq+prsn": [7.0]}}))
    assert dataset["pr_labsea"].attrs["source_variable"] == "pr"
    np.testing.assert_array_equal(dataset["pr_labsea"].values[0], [5.0])
