"""The intake-esm catalog, built from tiny but faithful CESM files and opened by intake-esm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dask
import intake_esm
import netCDF4
import numpy as np
import pandas as pd
import pytest

from ensembles.catalog import CATALOG_COLUMNS, build_catalog, load_catalog, write_catalog
from ensembles.errors import ConfigurationError, InputFileError

CASE = "b.e21.BHIST.f09_g17.CMIP6-historical.001"
CASE3 = "b.e30_alpha09b.B1850C_MTso.ne30_t232_wgx3.356"
Built = tuple[pd.DataFrame, list[InputFileError]]
MONTH_BOUNDS = [(0.0, 31.0), (31.0, 59.0)]
"""Noleap days since 0001-01-01 bounding January and February of year 1."""

# Each spec: time-bounds variable and its dimension, grid dimensions, variables (dims, units).
POP = {
    "bounds": ("time_bound", "d2"),
    "grid": {"z_t": 2, "nlat": 2, "nlon": 3},
    "variables": {
        "z_t": (("z_t",), "centimeters"),
        "TLAT": (("nlat", "nlon"), "degrees_north"),
        "TLONG": (("nlat", "nlon"), "degrees_east"),
        "TAREA": (("nlat", "nlon"), "centimeter^2"),
        "SALT": (("time", "z_t", "nlat", "nlon"), "gram/kilogram"),
        "HMXL": (("time", "nlat", "nlon"), "centimeters"),
    },
}
POP_SALT = {**POP, "variables": {k: v for k, v in POP["variables"].items() if k != "HMXL"}}
CAM = {
    "bounds": ("time_bnds", "nbnd"),
    "grid": {"lat": 2, "lon": 3},
    "variables": {
        "lat": (("lat",), "degrees_north"),
        "lon": (("lon",), "degrees_east"),
        "gw": (("lat",), "1"),
        "PRECT": (("time", "lat", "lon"), "m/s"),
        "TS": (("time", "lat", "lon"), "K"),
    },
}
MOM6_STATIC = {
    "grid": {"yh": 2, "xh": 3},
    "variables": {
        "xh": (("xh",), "degrees_east"),
        "yh": (("yh",), "degrees_north"),
        "geolat": (("yh", "xh"), "degrees_north"),
        "geolon": (("yh", "xh"), "degrees_east"),
        "areacello": (("yh", "xh"), "m2"),
        "wet": (("yh", "xh"), "1"),
    },
}


def _write_cesm_file(path: Path, spec: dict[str, Any], months: list[int]) -> Path:
    """A small CESM-like file; time stamped at the end of the month as CESM2 does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    with netCDF4.Dataset(path, "w") as dataset:
        dataset.title = path.name
        for name, size in spec["grid"].items():
            dataset.createDimension(name, size)
        if months:
            bounds_name, bounds_dim = spec["bounds"]
            dataset.createDimension("time", None)
            dataset.createDimension(bounds_dim, 2)
            time = dataset.createVariable("time", "f8", ("time",))
            time.setncatts(
                {
                    "units": "days since 0001-01-01 00:00:00",
                    "calendar": "noleap",
                    "bounds": bounds_name,
                }
            )
            bounds = dataset.createVariable(bounds_name, "f8", ("time", bounds_dim))
            bounds[:] = [MONTH_BOUNDS[m] for m in months]
            time[:] = [MONTH_BOUNDS[m][1] for m in months]
        for name, (dims, units) in spec["variables"].items():
            variable = dataset.createVariable(name, "f4", dims)
            variable.units = units
            variable[:] = rng.random([len(dataset.dimensions[d]) for d in dims])
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short-term archive of two members, with a time series and two broken files."""
    root = tmp_path_factory.mktemp("archive")
    ocn, atm = root / CASE / "ocn", root / CASE / "atm"
    _write_cesm_file(ocn / "hist" / f"{CASE}.pop.h.0001-01.nc", POP, [0])
    good = _write_cesm_file(ocn / "hist" / f"{CASE}.pop.h.0001-02.nc", POP, [1])
    _write_cesm_file(atm / "hist" / f"{CASE}.cam.h0.0001-01.nc", CAM, [0])
    tseries = ocn / "proc" / "tseries" / "month_1" / f"{CASE}.pop.h.SALT.000101-000102.nc"
    _write_cesm_file(tseries, POP_SALT, [0, 1])
    _write_cesm_file(root / CASE3 / "ocn" / "hist" / f"{CASE3}.mom6.h.static.nc", MOM6_STATIC, [])
    (ocn / "hist" / f"{CASE}.pop.h.0001-03.nc").write_bytes(b"\x89garbage, not netCDF" * 20)
    (ocn / "hist" / f"{CASE}.pop.h.0001-04.nc").write_bytes(good.read_bytes()[:300])
    (ocn / "hist" / "notes.txt").write_text("run notes")
    return root


@pytest.fixture(scope="module")
def built(archive: Path) -> Built:
    return build_catalog([archive])


def test_build_catalog_lists_variables_per_layout(archive: Path, built: Built) -> None:
    df, _ = built
    assert list(df.columns) == CATALOG_COLUMNS
    rows = {Path(p).name: row for p, row in zip(df["path"], df.to_dict("records"), strict=True)}
    assert set(rows) == {
        f"{CASE}.pop.h.0001-01.nc",
        f"{CASE}.pop.h.0001-02.nc",
        f"{CASE}.cam.h0.0001-01.nc",
        f"{CASE}.pop.h.SALT.000101-000102.nc",
        f"{CASE3}.mom6.h.static.nc",
    }
    assert all(Path(p).is_absolute() for p in df["path"])
    pop = rows[f"{CASE}.pop.h.0001-02.nc"]
    assert pop["variable"] == ["SALT", "HMXL"]
    assert (pop["member_id"], pop["component"], pop["stream"]) == ("001", "ocn", "h")
    assert (pop["start_time"], pop["end_time"], pop["layout"]) == ("0001-02", "0001-02", "history")
    assert rows[f"{CASE}.cam.h0.0001-01.nc"]["variable"] == ["PRECT", "TS"]
    salt = rows[f"{CASE}.pop.h.SALT.000101-000102.nc"]
    assert salt["variable"] == ["SALT"]
    assert (salt["start_time"], salt["end_time"]) == ("0001-01", "0001-02")
    assert salt["layout"] == "tseries"
    static = rows[f"{CASE3}.mom6.h.static.nc"]
    assert static["variable"] == ["geolat", "geolon", "areacello", "wet"]
    assert (static["frequency"], static["layout"]) == ("fixed", "static")
    assert pd.isna(static["start_time"])


def test_unreadable_files_are_reported_not_catalogued(archive: Path, built: Built) -> None:
    df, errors = built
    broken = {
        str(archive / CASE / "ocn" / "hist" / f"{CASE}.pop.h.0001-0{month}.nc") for month in (3, 4)
    }
    assert {e.path for e in errors} == broken
    assert all("not a netCDF file or truncated" in str(e) for e in errors)
    assert not broken & {str(Path(p)) for p in df["path"]}
    assert not any(p.endswith(".txt") for p in df["path"])


def test_tseries_without_its_variable_is_reported(tmp_path: Path) -> None:
    name = f"{CASE}.pop.h.TEMP.000101-000102.nc"
    path = _write_cesm_file(tmp_path / name, POP_SALT, [0, 1])
    df, errors = build_catalog([tmp_path])
    assert df.empty
    assert [e.path for e in errors] == [str(path)]
    assert "TEMP" in str(errors[0])


def test_write_and_load_round_trip(built: Built, tmp_path: Path) -> None:
    df, _ = built
    json_path = write_catalog(df, tmp_path / "out", "cesm", description="test archive")
    assert json_path == tmp_path / "out" / "cesm.json"
    esmcat = json.loads(json_path.read_text())
    assert esmcat["esmcat_version"] == "0.1.0"
    assert esmcat["id"] == "cesm"
    assert esmcat["catalog_file"] == "cesm.csv"
    assert esmcat["assets"] == {"column_name": "path", "format": "netcdf"}
    assert esmcat["columns_with_iterables"] == ["variable"]
    control = esmcat["aggregation_control"]
    assert control["variable_column_name"] == "variable"
    assert [(a["type"], a["attribute_name"]) for a in control["aggregations"]] == [
        ("union", "variable"),
        ("join_existing", "start_time"),
    ]
    assert control["aggregations"][1]["options"]["dim"] == "time"
    csv = pd.read_csv(tmp_path / "out" / "cesm.csv", dtype=str)
    assert "['SALT', 'HMXL']" in set(csv["variable"])
    assert not list((tmp_path / "out").glob(".*tmp"))

    loaded = load_catalog(json_path)
    expected = df.astype(object).where(df.notna(), None)
    assert loaded.to_dict("records") == expected.to_dict("records")


def test_intake_esm_opens_searches_and_loads(built: Built, tmp_path: Path) -> None:
    json_path = write_catalog(built[0], tmp_path, "cesm")
    cat = intake_esm.esm_datastore(json_path, columns_with_iterables=["variable"])
    assert len(cat.df) == len(built[0])

    ocean = cat.search(component="ocn")
    assert set(ocean.df["component"]) == {"ocn"}
    assert len(ocean.df) == 4

    history = cat.search(component="ocn", model="pop", layout="history")
    # intake-esm opens files on dask threads; HDF5 is not thread-safe (a flaky segfault)
    with dask.config.set(scheduler="synchronous"):
        datasets = history.to_dataset_dict(
            xarray_open_kwargs={"decode_times": False}, progressbar=False
        )
    assert list(datasets) == [f"{CASE}.ocn.pop.h.month_1.history"]
    dataset = datasets[f"{CASE}.ocn.pop.h.month_1.history"]
    assert dataset["SALT"].dims == ("time", "z_t", "nlat", "nlon")
    np.testing.assert_array_equal(dataset["time"].values, [31.0, 59.0])
    assert {"SALT", "HMXL"} <= set(dataset.data_vars)


@pytest.mark.xfail(
    raises=AttributeError,
    reason="intake-esm 2025.12 under pandas 3: search on a list column calls .str.contains "
    "on a pyarrow list array",
    strict=False,
)
def test_intake_esm_searches_variable_lists(built: Built, tmp_path: Path) -> None:
    json_path = write_catalog(built[0], tmp_path, "cesm")
    cat = intake_esm.esm_datastore(json_path, columns_with_iterables=["variable"])
    assert set(cat.search(variable="PRECT").df["model"]) == {"cam"}


def test_intake_esm_opens_without_extra_arguments(built: Built, tmp_path: Path) -> None:
    cat = intake_esm.esm_datastore(write_catalog(built[0], tmp_path, "cesm"))
    atmosphere = cat.search(component="atm")
    assert list(atmosphere.df["stream"]) == ["h0"]
    datasets = atmosphere.to_dataset_dict(
        xarray_open_kwargs={"decode_times": False}, progressbar=False
    )
    assert "PRECT" in next(iter(datasets.values()))


def test_read_variables_false_opens_nothing(archive: Path, tmp_path: Path) -> None:
    df, errors = build_catalog([archive], read_variables=False)
    assert errors == []
    assert len(df) == 7  # the two broken files are not detected without opening them
    by_layout = df.groupby("layout")["variable"].agg(list).to_dict()
    assert by_layout["tseries"] == ["SALT"]
    assert all(pd.isna(v) for v in by_layout["history"] + by_layout["static"])
    json_path = write_catalog(df, tmp_path, "names")
    assert json.loads(json_path.read_text())["columns_with_iterables"] == []
    loaded = load_catalog(json_path)
    assert list(loaded["variable"].dropna()) == ["SALT"]


def test_write_catalog_rejects_a_table_without_catalog_columns(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="variable"):
        write_catalog(pd.DataFrame({"path": ["x.nc"]}), tmp_path, "bad")


def test_load_catalog_names_a_bad_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"esmcat_version": "0.1.0"}))
    with pytest.raises(InputFileError, match="not an esmwatch catalog") as info:
        load_catalog(bad)
    assert info.value.path == str(bad)
