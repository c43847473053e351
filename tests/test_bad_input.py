"""Every kind of bad input gives a clear problem naming the file, and the rest still loads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ensembles.features import build_features
from tests.cesm_files import write_pop

LAT_E = np.arange(50.0, 71.0, 2.0)
LON_E = np.arange(-70.0, -39.0, 2.0)
SHAPE = (LAT_E.size - 1, LON_E.size - 1)
CASE = "b.e21.B1850.f09_g17.freeze"


def pop_file(root: Path, member: str, month: int, *, months=None, fields=None) -> Path:
    case = f"{CASE}.{member}"
    path = root / case / "ocn" / "hist" / f"{case}.pop.h.0001-{month:02d}.nc"
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(months or (month,))
    fields = (
        fields
        if fields is not None
        else {
            "SALT": np.full((n, 5, *SHAPE), 34.5 + month / 100),
            "HMXL": np.full((n, *SHAPE), 1.0e5),
        }
    )
    return write_pop(path, LAT_E, LON_E, fields, months=months or (month,))


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    for member in ("001", "002"):
        for month in (1, 2, 3):
            pop_file(tmp_path, member, month)
    return tmp_path


def _problems(result) -> list[str]:
    return [str(p) for p in result.problems]


def _only(problems: list[str], needle: str) -> str:
    hits = [p for p in problems if needle in p]
    assert len(hits) == 1, problems
    return hits[0]


def test_clean_archive_has_no_problems(archive: Path) -> None:
    result = build_features([archive], scheduler="synchronous")
    assert _problems(result) == []
    salt = result.dataset["so_upper_labsea"]
    assert salt.sizes == {"member": 2, "time": 3}
    np.testing.assert_allclose(salt.isel(member=0), [34.51, 34.52, 34.53], rtol=1e-6)


def test_truncated_file(archive: Path) -> None:
    path = archive / f"{CASE}.002/ocn/hist/{CASE}.002.pop.h.0001-02.nc"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    result = build_features([archive], scheduler="synchronous")
    problem = _only(_problems(result), str(path))
    assert "not a readable netCDF file" in problem
    salt = result.dataset["so_upper_labsea"].sel(member=f"{CASE}.002")
    assert np.isnan(salt.values[1]) and not np.isnan(salt.values[[0, 2]]).any()
    assert not np.isnan(result.dataset["so_upper_labsea"].sel(member=f"{CASE}.001")).any()


def test_not_netcdf_named_nc(archive: Path) -> None:
    path = archive / f"{CASE}.001/ocn/hist/{CASE}.001.pop.h.0001-04.nc"
    path.write_text("this is a log file, not netCDF\n")
    result = build_features([archive], scheduler="synchronous")
    assert "not a readable netCDF file" in _only(_problems(result), str(path))
    assert result.dataset.sizes["time"] == 3


def test_missing_variable(archive: Path) -> None:
    pop_file(archive, "003", 1, fields={"HMXL": np.full((1, *SHAPE), 1.0e5)})
    result = build_features([archive], scheduler="synchronous")
    problem = _only(_problems(result), "no SALT in its ocn files")
    assert f"{CASE}.003" in problem and "so_upper_labsea" in problem
    assert np.isnan(result.dataset["so_upper_labsea"].sel(member=f"{CASE}.003")).all()
    assert not np.isnan(result.dataset["hmxl_labsea_interior"].sel(member=f"{CASE}.003")[0])


def test_missing_month(archive: Path) -> None:
    pop_file(archive, "001", 5)  # April is missing for member 001
    result = build_features([archive], scheduler="synchronous")
    problem = _only(_problems(result), "missing (0001-04)")
    assert f"{CASE}.001" in problem and "ocn" in problem


def test_non_monotonic_time_keeps_last_value(archive: Path) -> None:
    path = pop_file(
        archive,
        "001",
        4,
        months=(4, 5, 4),
        fields={"SALT": np.stack([np.full((5, *SHAPE), v) for v in (1.0, 2.0, 3.0)])},
    )
    result = build_features([archive], scheduler="synchronous")
    assert "not monotonic" in _only(_problems(result), str(path))
    salt = result.dataset["so_upper_labsea"].sel(member=f"{CASE}.001")
    np.testing.assert_allclose(salt.values[3:5], [3.0, 2.0], rtol=1e-6)


def test_fill_values_and_nan(archive: Path) -> None:
    path = pop_file(
        archive,
        "002",
        4,
        fields={"SALT": np.full((1, 5, *SHAPE), 9.96921e36), "HMXL": np.full((1, *SHAPE), np.nan)},
    )
    result = build_features([archive], scheduler="synchronous")
    problems = _problems(result)
    assert "all values missing" in _only(problems, "so_upper_labsea: all values missing")
    assert str(path) in _only(problems, "hmxl_labsea_interior: all values missing")
    assert np.isnan(result.dataset["so_upper_labsea"].sel(member=f"{CASE}.002")[3])


def test_mixed_frequencies(archive: Path) -> None:
    daily = archive / f"{CASE}.002/ocn/hist/{CASE}.002.pop.h.nday1.0001-01-01.nc"
    write_pop(daily, LAT_E, LON_E, {"SALT": np.full((1, 5, *SHAPE), 30.0)})
    result = build_features([archive], scheduler="synchronous")
    assert "day_1 output skipped" in _only(_problems(result), "nday1")
    assert float(result.dataset["so_upper_labsea"].sel(member=f"{CASE}.002")[0]) != 30.0


def test_monthly_name_with_daily_bounds(archive: Path) -> None:
    path = pop_file(archive, "001", 4)
    import netCDF4

    with netCDF4.Dataset(path, "a") as nc:
        nc["time_bound"][0, 1] = nc["time_bound"][0, 0] + 1.0
    result = build_features([archive], scheduler="synchronous")
    assert "not monthly means" in _only(_problems(result), str(path))


def test_two_streams_same_month(archive: Path) -> None:
    dup = archive / f"{CASE}.001/ocn/hist/{CASE}.001.pop.h0.0001-01.nc"
    write_pop(dup, LAT_E, LON_E, {"SALT": np.full((1, 5, *SHAPE), 30.0)})
    result = build_features([archive], scheduler="synchronous")
    problem = _only(_problems(result), "already read from")
    assert str(dup) in problem or f"{CASE}.001.pop.h.0001-01.nc" in problem


def test_unknown_file_name(archive: Path) -> None:
    odd = archive / f"{CASE}.001/ocn/hist/notes_from_the_run.nc"
    odd.write_bytes(b"")
    result = build_features([archive], scheduler="synchronous")
    assert str(odd) in _only(_problems(result), "notes_from_the_run.nc")
    assert result.dataset.sizes["member"] == 2


def test_cache_reads_only_new_or_changed_files(archive: Path, tmp_path_factory) -> None:
    cache = tmp_path_factory.mktemp("cache")
    first = build_features([archive], cache_dir=cache, scheduler="synchronous")
    assert (first.files_read, first.files_cached) == (6, 0)
    again = build_features([archive], cache_dir=cache, scheduler="synchronous")
    assert (again.files_read, again.files_cached) == (0, 6)
    assert again.dataset.identical(first.dataset)
    pop_file(archive, "001", 4)  # one new month
    changed = archive / f"{CASE}.002/ocn/hist/{CASE}.002.pop.h.0001-01.nc"
    os.utime(changed, ns=(1, 1))  # same content, new mtime: must be re-read
    third = build_features([archive], cache_dir=cache, scheduler="synchronous")
    assert (third.files_read, third.files_cached) == (2, 5)
    assert third.dataset.identical(build_features([archive], scheduler="synchronous").dataset)
    changed.unlink()  # a deleted file leaves the cached table too
    fourth = build_features([archive], cache_dir=cache, scheduler="synchronous")
    assert (fourth.files_read, fourth.files_cached) == (0, 6)
    assert fourth.dataset.identical(build_features([archive], scheduler="synchronous").dataset)


def test_failed_reads_are_not_cached(archive: Path, tmp_path_factory) -> None:
    cache = tmp_path_factory.mktemp("cache")
    bad = pop_file(archive, "001", 4)
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:100])  # still being written
    first = build_features([archive], cache_dir=cache, scheduler="synchronous")
    assert any(str(bad) in p for p in _problems(first))
    bad.write_bytes(good_bytes)  # the case finished writing it
    second = build_features([archive], cache_dir=cache, scheduler="synchronous")
    assert second.files_read == 1 and not _problems(second)


def test_parallel_processes_match_synchronous(archive: Path) -> None:
    serial = build_features([archive], scheduler="synchronous")
    parallel = build_features([archive], scheduler="processes", n_workers=2)
    assert parallel.dataset.identical(serial.dataset)
