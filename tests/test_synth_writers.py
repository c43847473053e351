"""Synthetic CESM files: names, metadata, time conventions, grids, and signal recovery.

The recovery check is an independent mini-reader: it reads only the written files (grid
variables, units attributes, fill values) and the registry, computes every feature's
reduction with numpy, and compares it with the signal the files were written from.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import cftime
import netCDF4
import numpy as np
import pytest
import xarray as xr

from ensembles.regions import region_mask, regions
from ensembles.registry import Feature, features, registry, variables
from synth.grids import EARTH_RADIUS_M, SIZES, make_grids
from synth.writers import write_case

CASE = "b.e30.BTEST.synth.001"
MONTHS = 3
FLAVOURS = ("cesm2", "cesm3")
LAYOUTS = ("history", "tseries")

MODELS = {
    "cesm2": {"ocn": ("pop", "h"), "ice": ("cice", "h"), "atm": ("cam", "h0"),
              "lnd": ("clm2", "h0")},
    "cesm3": {"ocn": ("mom6", "h.z"), "ice": ("cice", "h"), "atm": ("cam", "h0a"),
              "lnd": ("clm2", "h0a")},
}
REGISTRY_KEY = {"pop": "pop", "mom6": "mom6", "cice": "cice", "cam": "cam", "clm2": "clm2"}

# Typical signal values (signal units: canonical for means, mSv for integrals) per variable,
# with regional values where they differ; the months vary around them. A feature added to
# the registry later gets its variable's value.
TYPICAL: dict[str, float] = {
    "so": 34.8, "thetao": 4.0, "sos": 34.3, "tos": 3.0, "hmxl": 600.0, "xmxl": 1100.0,
    "mld_003": 500.0, "mlotst": 450.0, "hfds": -180.0, "friver": 20.0, "ficeberg": 12.0,
    "fsitherm": 4.0, "pr": 30.0, "evs": -25.0, "aice": 0.3, "hi": 1.0, "dvidtd": 6.0,
    "fresh": 9.0, "prect": 45.0, "qflx": 35.0, "lhflx": 70.0, "shflx": 45.0, "u10": 9.5,
    "taux": -0.15, "tauy": 0.02, "psl": 100700.0, "qrunoff": 50.0, "qice_melt": 15.0,
    "qsnomelt": 40.0, "eflx_lh_tot": 35.0, "fsh": 20.0, "tsa": 262.0,
}
REGIONAL: dict[tuple[str, str], float] = {
    ("so", "labsea"): 34.6, ("so", "labsea_interior"): 34.75, ("so", "irminger"): 34.92,
    ("so", "spg"): 34.85, ("so", "baffin"): 33.8, ("thetao", "irminger"): 5.0,
    ("friver", "labrador_shelf"): 25.0, ("friver", "west_greenland_shelf"): 18.0,
    ("aice", "labsea"): 0.25, ("aice", "baffin"): 0.85, ("aice", "davis_strait"): 0.6,
    ("aice", "arctic"): 0.95, ("hi", "labsea"): 0.4, ("hi", "baffin"): 1.4,
    ("hi", "arctic"): 2.5, ("qrunoff", "greenland"): 30.0, ("qrunoff", "north_america_ne"): 80.0,
}

# File units -> canonical units -> factor (canonical = file x factor); the reader's job.
UNIT_FACTORS = {
    ("centimeter", "m"): 0.01,
    ("cm/day", "m s-1"): 1.0 / 8.64e6,
    ("cm/day", "kg m-2 s-1"): 1.0 / 8640.0,
    ("mm/s", "kg m-2 s-1"): 1.0,
    ("kg/m^2/s", "kg m-2 s-1"): 1.0,
    ("kg/m2/s", "kg m-2 s-1"): 1.0,
    ("kg m-2 s-1", "kg m-2 s-1"): 1.0,
    ("m/s", "m s-1"): 1.0,
    ("psu", "g/kg"): 1.0,
    ("gram/kilogram", "g/kg"): 1.0,
    ("degC", "degC"): 1.0,
    ("m", "m"): 1.0,
    ("1", "1"): 1.0,
    ("W m-2", "W m-2"): 1.0,
    ("watt/m^2", "W m-2"): 1.0,
    ("W/m2", "W m-2"): 1.0,
    ("W/m^2", "W m-2"): 1.0,
    ("N/m2", "N m-2"): 1.0,
    ("Pa", "Pa"): 1.0,
    ("K", "K"): 1.0,
}
RELATIVE = 1e-6


# ----------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------
def _typical(feature: Feature) -> float:
    return REGIONAL.get((feature.variable, feature.region), TYPICAL[feature.variable])


def make_signals(names: list[str], months: int = MONTHS, start: int = 0,
                 start_year: int = 1) -> xr.Dataset:
    """Plausible monthly signals for the given feature names."""
    known = features()
    data = {}
    for i, name in enumerate(names):
        base = _typical(known[name])
        wiggle = 0.005 * np.sin(np.arange(months) + i)
        data[name] = ("time", base * (1.0 + wiggle))
    return xr.Dataset(data, coords={"time": np.arange(start, start + months)},
                      attrs={"start_year": start_year})


@pytest.fixture(scope="session")
def all_signals() -> xr.Dataset:
    """Every feature the files can carry (the generator writes no velocities: no gate
    transports)."""
    return make_signals(sorted(n for n, f in features().items()
                               if f.var.sources and f.var.reduction != "transport"))


@pytest.fixture(scope="session")
def cases(tmp_path_factory: pytest.TempPathFactory, all_signals: xr.Dataset
          ) -> dict[tuple[str, str], tuple[Path, list[Path]]]:
    """One written case per flavour and layout on the small grids."""
    out = {}
    for flavour in FLAVOURS:
        for layout in LAYOUTS:
            root = tmp_path_factory.mktemp(f"{flavour}_{layout}")
            paths = write_case(root, CASE, all_signals, make_grids(flavour, "small"),
                               layout=layout, seed=3)
            out[flavour, layout] = (root / CASE, paths)
    return out


# ----------------------------------------------------------------------------------------
# An independent mini-reader
# ----------------------------------------------------------------------------------------
def _model_dir(case_dir: Path, component: str, layout: str) -> Path:
    sub = "hist" if layout == "history" else "proc/tseries/month_1"
    return case_dir / component / sub


def _files(case_dir: Path, flavour: str, component: str, layout: str,
           variable: str | None = None) -> list[Path]:
    model, stream = MODELS[flavour][component]
    directory = _model_dir(case_dir, component, layout)
    if layout == "history":
        pattern = f"{CASE}.{model}.{stream}.[0-9][0-9][0-9][0-9]-[0-9][0-9].nc"
    else:
        pattern = f"{CASE}.{model}.{stream}.{variable or '*'}.*-*.nc"
    return sorted(directory.glob(pattern))


def read_var(case_dir: Path, flavour: str, component: str, layout: str, name: str
             ) -> tuple[np.ndarray, str]:
    """All months of a variable (fill -> NaN) and its units."""
    files = _files(case_dir, flavour, component, layout, name)
    arrays, units = [], ""
    for path in files:
        with netCDF4.Dataset(path) as ds:
            var = ds[name]
            units = var.units
            arrays.append(np.ma.filled(var[:].astype(float), np.nan))
    return np.concatenate(arrays, axis=0), units


def read_grid(case_dir: Path, flavour: str, component: str, layout: str) -> dict:
    """Coordinates, areas (m2), domain fractions and levels, from the files only."""
    path = _files(case_dir, flavour, component, layout)[0]
    model = MODELS[flavour][component][0]
    with netCDF4.Dataset(path) as ds:
        get = {name: np.ma.filled(ds[name][:].astype(float), np.nan) for name in ds.variables
               if "time" not in ds[name].dimensions}
    if model == "mom6":
        static = _model_dir(case_dir, component, layout) / f"{CASE}.mom6.h.static.nc"
        with netCDF4.Dataset(static) as ds:
            get |= {name: np.ma.filled(ds[name][:].astype(float), np.nan) for name in ds.variables}
    if model == "pop":
        return {"lat": get["TLAT"], "lon": get["TLONG"], "area": get["TAREA"] / 1e4,
                "ocean": (get["KMT"] > 0).astype(float), "land": 0.0, "depth": get["HT"] / 100,
                "z_top": get["z_w_top"] / 100, "z_bot": get["z_w_bot"] / 100}
    if model == "mom6":
        z_i = get["z_i"]
        return {"lat": get["geolat"], "lon": get["geolon"], "area": get["areacello"],
                "ocean": get["wet"], "land": 0.0, "depth": np.nan_to_num(get["deptho"]),
                "z_top": z_i[:-1], "z_bot": z_i[1:]}
    if model == "cice":
        return {"lat": get["TLAT"], "lon": get["TLON"], "area": get["tarea"],
                "ocean": get["tmask"], "land": 0.0, "depth": None}
    if model == "cam":
        if "ncol" in _dims(path):
            lat, lon, area = get["lat"], get["lon"], get["area"] * EARTH_RADIUS_M**2
        else:
            lat, lon = np.meshgrid(get["lat"], get["lon"], indexing="ij")
            area = np.outer(get["gw"], np.full(get["lon"].size, 2 * np.pi / get["lon"].size))
            area = area * EARTH_RADIUS_M**2
        return {"lat": lat, "lon": lon, "area": area, "depth": None, "landfrac_var": "LANDFRAC"}
    if model == "clm2":
        lat, lon = get["lat"], get["lon"]
        if "lndgrid" not in _dims(path):
            lat, lon = np.meshgrid(lat, lon, indexing="ij")
        land = np.nan_to_num(get["landfrac"])
        return {"lat": lat, "lon": lon, "area": np.nan_to_num(get["area"]) * 1e6,
                "ocean": 0.0, "land": land, "depth": None}
    raise AssertionError(model)


def _dims(path: Path) -> set[str]:
    with netCDF4.Dataset(path) as ds:
        return set(ds.dimensions)


def _has(case_dir: Path, flavour: str, component: str, layout: str, name: str) -> bool:
    if layout == "tseries":
        return bool(_files(case_dir, flavour, component, layout, name))
    with netCDF4.Dataset(_files(case_dir, flavour, component, layout)[0]) as ds:
        return name in ds.variables


def _source(case_dir: Path, flavour: str, component: str, layout: str, feature: Feature
            ) -> tuple[str, ...]:
    """The first registry alternative whose parts are all in the files, as a reader would."""
    model = MODELS[flavour][component][0]
    for option in feature.var.source_options(REGISTRY_KEY[model]):
        if all(_has(case_dir, flavour, component, layout, name) for name in option):
            return option
    raise AssertionError(f"{feature.name}: no registry source in the {model} files")


def _canonical(case_dir: Path, flavour: str, component: str, layout: str, feature: Feature
               ) -> np.ndarray:
    """The feature's variable, summed over its registry parts, in canonical units."""
    parts = []
    for name in _source(case_dir, flavour, component, layout, feature):
        values, units = read_var(case_dir, flavour, component, layout, name)
        parts.append(values * UNIT_FACTORS[units, feature.var.units] * feature.var.sign)
    return sum(parts)


def reduce_feature(case_dir: Path, flavour: str, layout: str, feature: Feature) -> np.ndarray:
    """The registry reduction of one feature for every month, from the files."""
    component = feature.var.component
    grid = read_grid(case_dir, flavour, component, layout)
    data = _canonical(case_dir, flavour, component, layout, feature)
    region = regions()[feature.region]
    mask, _ = region_mask(feature.region, grid["lat"], grid["lon"], grid["depth"])
    landfrac = (read_var(case_dir, flavour, component, layout, grid["landfrac_var"])[0]
                if "landfrac_var" in grid else None)
    out = []
    for t in range(data.shape[0]):
        if landfrac is not None:  # CAM: fractional land, written every month
            frac = {"ocean": 1.0 - landfrac[t], "land": landfrac[t]}[region.domain]
        else:
            frac = grid[region.domain]
        weight = np.where(mask, grid["area"] * frac, 0.0)
        out.append(_reduce(data[t], weight, feature, grid))
    return np.asarray(out)


def _reduce(values: np.ndarray, weight: np.ndarray, feature: Feature, grid: dict) -> float:
    inside = weight > 0
    if feature.var.vertical == "upper":
        top, bottom = registry().upper_ocean_m
        thick = np.clip(np.minimum(grid["z_bot"], bottom) - np.maximum(grid["z_top"], top), 0,
                        None)
        levels = thick > 0
        column = values[levels][:, inside]
        assert np.isfinite(column).all(), f"{feature.name}: fill values in the upper layer"
        w = thick[levels][:, None] * weight[inside][None, :]
        return float((column * w).sum() / w.sum())
    cell = values[inside]
    assert np.isfinite(cell).all(), f"{feature.name}: fill values in region cells"
    if feature.var.reduction == "mean":
        return float((cell * weight[inside]).sum() / weight[inside].sum())
    density = registry().water_density if feature.var.units == "kg m-2 s-1" else 1.0
    return float((cell * weight[inside]).sum() / density / 1e3)


def _features_on(flavour: str) -> list[Feature]:
    out = []
    for feature in features().values():
        model = MODELS[flavour][feature.var.component][0]
        if feature.var.reduction == "transport":  # the generator writes no velocities
            continue
        if feature.var.source_options(REGISTRY_KEY[model]):
            out.append(feature)
    return out


# ----------------------------------------------------------------------------------------
# Grids
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_default_grid_sizes_stay_within_design_limits(flavour: str) -> None:
    grids = make_grids(flavour, "default")
    ocean = grids.ocean
    assert ocean.shape[0] <= 116 and ocean.shape[1] <= 100
    assert (ocean.z_top < 1000).sum() <= 10
    assert (ocean.z_bot <= 100).sum() >= 3
    assert 100.0 in ocean.z_bot, "an interface must sit at the bottom of the upper layer"
    land_points = int((grids.land.landfrac > 0).sum())
    assert land_points <= 2000
    if flavour == "cesm3":
        assert grids.atm.lat.size <= 1000


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_small_grid_sizes_are_roughly_as_asked(flavour: str) -> None:
    grids = make_grids(flavour, "small")
    assert grids.ocean.shape == (SIZES["small"].ocean_nlat, SIZES["small"].ocean_nlon)
    assert 300 <= int((grids.land.landfrac > 0).sum()) <= 600
    if flavour == "cesm3":
        assert grids.atm.lat.size == 300


def test_ocean_latitudes_are_finer_north_of_40n() -> None:
    lat = make_grids("cesm2", "default").ocean.lat[:, 0]
    spacing = np.diff(lat)
    assert spacing[lat[1:] > 45].max() < 0.5 * spacing[lat[1:] < 35].min()


@pytest.mark.parametrize("size", ["small", "default"])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_region_has_cells_on_its_domain(flavour: str, size: str) -> None:
    grids = make_grids(flavour, size)
    atm_regions = {f.region for f in features().values() if f.var.component == "atm"}
    read = {f.region for f in features().values() if f.var.reduction != "transport"}
    for name, region in regions().items():
        if name not in read:  # a gate: its boxes pick boundary faces, not cells to reduce
            continue
        views = ([grids.ocean.cells(), grids.ocean.cells(with_depth=False)]
                 if region.domain == "ocean" else [grids.land.cells()])
        for cells in views:  # POP/MOM6 with bathymetry, CICE with fallback boxes, CLM
            index, _ = cells.region(name, region.domain)
            assert index.size >= 3, f"{name}: {index.size} cells on the {size} grid"
        if name in atm_regions:
            index, _ = grids.atm.cells().region(name, region.domain)
            assert index.size >= 2, f"{name}: {index.size} CAM columns"


@pytest.mark.parametrize("size", ["small", "default"])
def test_labrador_sea_has_a_deep_basin_and_shallow_shelves(size: str) -> None:
    ocean = make_grids("cesm2", size).ocean
    labsea, _ = region_mask("labsea", ocean.lat, ocean.lon)
    interior, _ = region_mask("labsea_interior", ocean.lat, ocean.lon, ocean.depth)
    assert (interior & ocean.mask).sum() >= 3
    assert ocean.depth[interior & ocean.mask].min() > 2000
    next_to_land = ocean.cells().coast.reshape(ocean.shape)
    assert ocean.depth[labsea & next_to_land].max() < 500


@pytest.mark.parametrize("size", ["small", "default"])
def test_cam_se_areas_sum_to_4pi(size: str) -> None:
    atm = make_grids("cesm3", size).atm
    assert atm.kind == "se"
    assert math.isclose(atm.area.sum(), 4 * np.pi, rel_tol=1e-12)
    fv = make_grids("cesm2", size).atm
    assert math.isclose(fv.gw.sum(), 2.0, rel_tol=1e-12)


# ----------------------------------------------------------------------------------------
# Files: names, metadata, time
# ----------------------------------------------------------------------------------------
def _time_varying(path: Path) -> set[str]:
    with netCDF4.Dataset(path) as ds:
        return {name for name, var in ds.variables.items()
                if "time" in var.dimensions and name != "time" and "time_b" not in name}


def _expected_names(flavour: str, layout: str, history_dir: Path) -> set[str]:
    """History: one file per month and model; time series: one file per variable that the
    history files hold, named after the first and last month."""
    names = set()
    for component, (model, stream) in MODELS[flavour].items():
        if layout == "history":
            names |= {f"{CASE}.{model}.{stream}.0001-{m:02d}.nc" for m in range(1, MONTHS + 1)}
        else:
            first = _files(history_dir, flavour, component, "history")[0]
            names |= {f"{CASE}.{model}.{stream}.{v}.000101-000103.nc"
                      for v in _time_varying(first)}
    if flavour == "cesm3":
        names.add(f"{CASE}.mom6.h.static.nc")
    return names


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_files_have_cesm_names_and_places(cases: dict, flavour: str, layout: str) -> None:
    case_dir, paths = cases[flavour, layout]
    on_disk = {p for p in case_dir.rglob("*") if p.is_file()}
    assert on_disk == set(paths)
    history_dir = cases[flavour, "history"][0]
    assert {p.name for p in paths} == _expected_names(flavour, layout, history_dir)
    for path in paths:
        component = path.relative_to(case_dir).parts[0]
        assert _model_dir(case_dir, component, layout) == path.parent
    if layout == "tseries":
        for path in paths:
            if "static" not in path.name:
                assert _time_varying(path) == {path.name.split(".")[-3]}, path.name


EXPECTED_DIMS = {
    "pop": {"TEMP": ("time", "z_t", "nlat", "nlon"), "SALT": ("time", "z_t", "nlat", "nlon"),
            "HMXL": ("time", "nlat", "nlon"), "XMXL": ("time", "nlat", "nlon"),
            "SFWF": ("time", "nlat", "nlon"), "TLAT": ("nlat", "nlon"),
            "TAREA": ("nlat", "nlon"), "z_t": ("z_t",), "time_bound": ("time", "d2")},
    "mom6": {"so": ("time", "z_l", "yh", "xh"), "thetao": ("time", "z_l", "yh", "xh"),
             "MLD_003": ("time", "yh", "xh"), "friver": ("time", "yh", "xh"), "z_l": ("z_l",),
             "z_i": ("z_i",), "time_bnds": ("time", "nv")},
    "cice": {"aice": ("time", "nj", "ni"), "TLAT": ("nj", "ni"), "tarea": ("nj", "ni"),
             "time_bounds": ("time", None)},
    "cam-fv": {"PRECC": ("time", "lat", "lon"), "gw": ("lat",), "lat": ("lat",),
               "time_bnds": ("time", "nbnd")},
    "cam-se": {"PRECT": ("time", "ncol"), "area": ("ncol",), "lat": ("ncol",),
               "time_bnds": ("time", "nbnd")},
    "clm2-latlon": {"QRUNOFF": ("time", "lat", "lon"), "area": ("lat", "lon"),
                    "landfrac": ("lat", "lon"), "landmask": ("lat", "lon"),
                    "time_bounds": ("time", "hist_interval")},
    "clm2-lndgrid": {"QRUNOFF": ("time", "lndgrid"), "area": ("lndgrid",),
                     "lat": ("lndgrid",), "time_bounds": ("time", "hist_interval")},
}
EXPECTED_UNITS = {
    "pop": {"TEMP": "degC", "SALT": "gram/kilogram", "HMXL": "centimeter",
            "XMXL": "centimeter", "SHF": "watt/m^2", "SFWF": "kg/m^2/s", "ROFF_F": "kg/m^2/s",
            "IOFF_F": "kg/m^2/s", "MELT_F": "kg/m^2/s", "PREC_F": "kg/m^2/s",
            "SNOW_F": "kg/m^2/s", "EVAP_F": "kg/m^2/s", "z_t": "centimeters",
            "dz": "centimeters", "z_w_top": "centimeters", "z_w_bot": "centimeters",
            "TAREA": "centimeter^2", "HT": "centimeter", "TLONG": "degrees_east"},
    "mom6": {"so": "psu", "thetao": "degC", "MLD_003": "m", "mlotst": "m", "hfds": "W m-2",
             "friver": "kg m-2 s-1", "prlq": "kg m-2 s-1", "prsn": "kg m-2 s-1",
             "fsitherm": "kg m-2 s-1", "z_l": "meters"},
    "cice": {"aice": "1", "hi": "m", "hs": "m", "dvidtd": "cm/day", "fresh": "cm/day",
             "tarea": "m^2"},
    "cam": {"PRECC": "m/s", "PRECL": "m/s", "QFLX": "kg/m2/s", "LHFLX": "W/m2",
            "SHFLX": "W/m2", "U10": "m/s", "TAUX": "N/m2", "TAUY": "N/m2", "PSL": "Pa",
            "TS": "K", "LANDFRAC": "fraction"},
    "clm2": {"QRUNOFF": "mm/s", "QICE_MELT": "mm/s", "QSNOMELT": "mm/s",
             "EFLX_LH_TOT": "W/m^2", "FSH": "W/m^2", "TSA": "K", "area": "km^2"},
}


def _dims_key(model: str, flavour: str) -> str:
    if model == "cam":
        return "cam-fv" if flavour == "cesm2" else "cam-se"
    if model == "clm2":
        return "clm2-latlon" if flavour == "cesm2" else "clm2-lndgrid"
    return model


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_dims_coordinates_units_and_attributes(cases: dict, flavour: str) -> None:
    case_dir, _ = cases[flavour, "history"]
    for component, (model, _) in MODELS[flavour].items():
        path = _files(case_dir, flavour, component, "history")[0]
        with netCDF4.Dataset(path) as ds:
            for attr in ("case", "source", "title"):
                assert attr in ds.ncattrs(), f"{path.name}: no global {attr}"
            assert ds.case == CASE
            for name, dims in EXPECTED_DIMS[_dims_key(model, flavour)].items():
                assert ds[name].dimensions[: len(dims)] == tuple(
                    d or ds[name].dimensions[i] for i, d in enumerate(dims)), (model, name)
            for name, units in EXPECTED_UNITS[model].items():
                assert ds[name].units == units, (model, name)
            for name, var in ds.variables.items():
                assert {"units", "long_name"} <= set(var.ncattrs()), (model, name)
                if "time" in var.dimensions and var.ndim > 1 and name not in (
                        "time_bnds", "time_bounds", "time_bound"):
                    assert var.dtype == np.float32, (model, name)
            if model == "pop":
                assert ds["TEMP"].coordinates == "TLONG TLAT z_t time"
                assert ds["TLONG"][:].min() >= 0 and ds["TLONG"][:].max() < 360
            if model == "cice":
                assert ds["aice"].coordinates == "TLON TLAT time"
    with netCDF4.Dataset(_files(case_dir, flavour, "atm", "history")[0]) as ds:
        if flavour == "cesm2":
            assert "PRECT" not in ds.variables, "CESM2 CAM has PRECC and PRECL only"
            assert math.isclose(ds["gw"][:].sum(), 2.0, rel_tol=1e-12)
        else:
            assert math.isclose(ds["area"][:].sum(), 4 * np.pi, rel_tol=1e-12)
    if flavour == "cesm3":
        static = _model_dir(case_dir, "ocn", "history") / f"{CASE}.mom6.h.static.nc"
        with netCDF4.Dataset(static) as ds:
            geolon = ds["geolon"][:]
            assert geolon.min() < -250 and geolon.max() <= 60, "MOM6 geolon runs -300..60"
            assert ds["areacello"].units == "m2" and ds["deptho"].units == "m"
            assert set(ds["wet"][:].compressed()) <= {0.0, 1.0}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_masked_cells_are_fill_values(cases: dict, flavour: str) -> None:
    case_dir, _ = cases[flavour, "history"]
    grids = make_grids(flavour, "small")
    model = MODELS[flavour]["ocn"][0]
    name, fill = ("TEMP", 9.96921e36) if model == "pop" else ("thetao", 1e20)
    with netCDF4.Dataset(_files(case_dir, flavour, "ocn", "history")[0]) as ds:
        var = ds[name]
        assert np.isclose(var._FillValue, fill, rtol=1e-6)
        assert np.isclose(var.missing_value, fill, rtol=1e-6)
        raw = var[0].filled()
    kmt = grids.ocean.kmt
    below = np.arange(grids.ocean.nz)[:, None, None] >= kmt[None]
    assert np.all(raw[below] == np.float32(fill))
    assert np.all(np.abs(raw[~below]) < 100)
    with netCDF4.Dataset(_files(case_dir, flavour, "lnd", "history")[0]) as ds:
        values = ds["TSA"][0]
        landmask = ds["landmask"][:]
        assert not np.ma.is_masked(values[landmask == 1])
        assert np.ma.getmaskarray(values)[landmask == 0].all()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_time_stamps_and_bounds(cases: dict, flavour: str, layout: str) -> None:
    case_dir, _ = cases[flavour, layout]
    for component, (model, _) in MODELS[flavour].items():
        for path in _files(case_dir, flavour, component, layout)[:2]:
            with netCDF4.Dataset(path) as ds:
                time = ds["time"]
                bounds = ds[time.bounds][:]
                stamps = cftime.num2date(time[:], time.units, calendar=time.calendar)
                starts = cftime.num2date(bounds[:, 0], time.units, calendar=time.calendar)
                ends = cftime.num2date(bounds[:, 1], time.units, calendar=time.calendar)
                assert time.calendar == "noleap"
                units = time.units
                if model == "pop":
                    assert units == "days since 0000-01-01 00:00:00"
            months = range(1, stamps.size + 1) if layout == "tseries" else [
                int(path.name.split(".")[-2].split("-")[1])]
            for i, month in enumerate(months):
                assert (starts[i].year, starts[i].month, starts[i].day) == (1, month, 1)
                assert (ends[i].year, ends[i].month % 12, ends[i].day) == (
                    1 + month // 12, (month + 1) % 12, 1)
                if flavour == "cesm2":
                    assert stamps[i] == ends[i], f"{model}: CESM2 stamps the end of the month"
                else:
                    middle = 0.5 * (bounds[i, 0] + bounds[i, 1])
                    assert np.isclose(cftime.date2num(stamps[i], units, "noleap"), middle)


def test_time_offsets_and_start_year_name_the_files(tmp_path: Path) -> None:
    signals = make_signals(["psl_labsea"], months=3, start=10, start_year=5)
    paths = write_case(tmp_path, CASE, signals, make_grids("cesm2", "small"),
                       components=["atm"])
    assert [p.name.split(".")[-2] for p in paths] == ["0005-11", "0005-12", "0006-01"]
    tseries = write_case(tmp_path / "ts", CASE, signals, make_grids("cesm2", "small"),
                         components=["atm"], layout="tseries")
    assert all(p.name.endswith(".000511-000601.nc") for p in tseries)


# ----------------------------------------------------------------------------------------
# Recovery of every signal
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_signal_is_recovered_by_the_registry_reduction(
    cases: dict, all_signals: xr.Dataset, flavour: str, layout: str
) -> None:
    case_dir, _ = cases[flavour, layout]
    failures = []
    checked = 0
    for feature in _features_on(flavour):
        expected = all_signals[feature.name].values
        got = reduce_feature(case_dir, flavour, layout, feature)
        scale = np.maximum(np.abs(expected), 1e-12)
        if not np.allclose(got, expected, rtol=RELATIVE, atol=0.0):
            failures.append(f"{feature.name}: {got} != {expected} "
                            f"(rel {np.max(np.abs(got - expected) / scale):.2e})")
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked >= 40


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_registry_variable_is_in_the_files(cases: dict, flavour: str) -> None:
    case_dir, _ = cases[flavour, "history"]
    for var in variables().values():
        model = MODELS[flavour][var.component][0]
        options = var.source_options(REGISTRY_KEY[model])
        if not options or var.reduction == "transport":  # no velocities are generated
            continue
        assert any(all(_has(case_dir, flavour, var.component, "history", name) for name in option)
                   for option in options), f"{var.name}: none of {options} in the {model} files"


def test_files_without_signals_hold_finite_backgrounds(tmp_path: Path) -> None:
    empty = xr.Dataset(coords={"time": np.arange(2)})
    for flavour in FLAVOURS:
        paths = write_case(tmp_path / flavour, CASE, empty, make_grids(flavour, "small"))
        for path in paths:
            with netCDF4.Dataset(path) as ds:
                for name, var in ds.variables.items():
                    if "time" in var.dimensions:
                        values = var[:]
                        assert np.isfinite(values.compressed()).all(), (path.name, name)
                        assert values.count() > 0, (path.name, name)


def _ocean_only(tmp_path: Path, flavour: str, names: dict[str, float], **kwargs: object
                ) -> Path:
    signals = xr.Dataset({k: ("time", np.full(2, v)) for k, v in names.items()},
                         coords={"time": np.arange(2)})
    write_case(tmp_path, CASE, signals, make_grids(flavour, "small"), **kwargs)
    return tmp_path / CASE


def test_deep_ocean_does_not_depend_on_upper_signals(tmp_path: Path) -> None:
    fresh = _ocean_only(tmp_path / "a", "cesm2", {"so_upper_labsea": 33.5}, components=["ocn"])
    salty = _ocean_only(tmp_path / "b", "cesm2", {"so_upper_labsea": 34.9}, components=["ocn"])
    a, _ = read_var(fresh, "cesm2", "ocn", "history", "SALT")
    b, _ = read_var(salty, "cesm2", "ocn", "history", "SALT")
    z_bot = make_grids("cesm2", "small").ocean.z_bot
    deep = z_bot > 100
    np.testing.assert_array_equal(a[:, deep], b[:, deep])
    assert not np.allclose(a[:, ~deep], b[:, ~deep], equal_nan=True)
    # realistic profile: the Lab Sea is saltier below the fresh upper layer
    grids = make_grids("cesm2", "small").ocean
    interior, _ = region_mask("labsea_interior", grids.lat, grids.lon, grids.depth)
    assert np.nanmean(a[0, 5][interior]) > np.nanmean(a[0, 0][interior])


def test_xmxl_is_never_shallower_than_hmxl(cases: dict) -> None:
    case_dir, _ = cases["cesm2", "history"]
    hmxl, _ = read_var(case_dir, "cesm2", "ocn", "history", "HMXL")
    xmxl, _ = read_var(case_dir, "cesm2", "ocn", "history", "XMXL")
    ocean = np.isfinite(hmxl)
    assert (xmxl[ocean] >= hmxl[ocean]).all()


def test_mom6_mld_takes_the_hmxl_signal(tmp_path: Path) -> None:
    case_dir = _ocean_only(tmp_path, "cesm3", {"hmxl_labsea_interior": 777.0},
                           components=["ocn"])
    for name in ("mld_003_labsea_interior", "mlotst_labsea_interior"):
        got = reduce_feature(case_dir, "cesm3", "history", features()[name])
        np.testing.assert_allclose(got, 777.0, rtol=RELATIVE)


def test_nested_regions_keep_both_signals_exactly(tmp_path: Path) -> None:
    names = {"so_upper_labsea": 34.2, "so_upper_labsea_interior": 34.9,
             "so_upper_spg": 34.95, "so_upper_irminger": 35.1}
    case_dir = _ocean_only(tmp_path, "cesm2", names, components=["ocn"])
    for name, value in names.items():
        got = reduce_feature(case_dir, "cesm2", "history", features()[name])
        np.testing.assert_allclose(got, value, rtol=RELATIVE, err_msg=name)


def test_inadmissible_nesting_keeps_the_inner_signal_and_reports(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # no ice in the Labrador Sea but 0.9 in Davis Strait, which shares cells with it
    names = {"aice_labsea": 0.0, "aice_davis_strait": 0.9}
    with caplog.at_level(logging.INFO, logger="synth"):
        case_dir = _ocean_only(tmp_path, "cesm2", names, components=["ice"])
    davis = reduce_feature(case_dir, "cesm2", "history", features()["aice_davis_strait"])
    labsea = reduce_feature(case_dir, "cesm2", "history", features()["aice_labsea"])
    np.testing.assert_allclose(davis, 0.9, rtol=RELATIVE)
    assert "aice_labsea" in caplog.text
    reported = float(caplog.text.split("aice_labsea by up to ")[1].split()[0].rstrip(","))
    # the log line states the worst miss (3 significant digits) over the months
    np.testing.assert_allclose(labsea.max(), reported, rtol=2e-3)
    assert (labsea > 0).all()


def test_unplaceable_signals_are_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    signals = xr.Dataset({"bogus_signal": ("time", [1.0]), "xmxl_labsea_interior": ("time", [9.0]),
                          "so_upper_labsea": ("time", [34.5])}, coords={"time": [0]})
    with caplog.at_level(logging.DEBUG, logger="synth"):
        write_case(tmp_path, CASE, signals, make_grids("cesm3", "small"), components=["ocn"])
    assert "bogus_signal" in caplog.text
    assert "xmxl_labsea_interior" in caplog.text
    assert "so_upper_labsea cannot" not in caplog.text


def test_same_seed_same_files_other_seed_other_noise(tmp_path: Path) -> None:
    signals = make_signals(["psl_labsea"], months=1)
    grids = make_grids("cesm3", "small")

    def psl(seed: int, where: str) -> np.ndarray:
        path = write_case(tmp_path / where, CASE, signals, grids, components=["atm"],
                          seed=seed)[0]
        with netCDF4.Dataset(path) as ds:
            return ds["PSL"][:]

    np.testing.assert_array_equal(psl(1, "a"), psl(1, "b"))
    assert not np.array_equal(psl(1, "a"), psl(2, "c"))


@pytest.mark.parametrize("bad", [
    lambda s: s.assign_coords(time=[0, 2, 3]),
    lambda s: s.assign_coords(time=[0.0, 1.0, 2.0]),
    lambda s: s.rename({"time": "month"}),
])
def test_bad_signal_time_is_a_clear_error(tmp_path: Path, bad: Callable) -> None:
    from ensembles.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="time"):
        write_case(tmp_path, CASE, bad(make_signals(["psl_labsea"])),
                   make_grids("cesm2", "small"), components=["atm"])


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_reduced_output_leaves_out_what_a_lean_run_does_and_features_survive(
    tmp_path: Path, all_signals: xr.Dataset, flavour: str
) -> None:
    from ensembles.features import build_features

    grids = make_grids(flavour, "small")
    built = {}
    for output in ("full", "reduced"):
        paths = write_case(tmp_path / output, CASE, all_signals, grids, seed=3, output=output,
                           components=["atm"])
        with netCDF4.Dataset(paths[0]) as ds:
            written = set(ds.variables)
        if output == "reduced":
            assert not written & {"LANDFRAC", "PRECT"}
            assert {"PRECC", "PRECL", "OCNFRAC", "ICEFRAC"} <= written
        built[output] = build_features([tmp_path / output], scheduler="synchronous").dataset
    full, reduced = built["full"], built["reduced"]
    assert set(reduced.data_vars) == set(full.data_vars)
    assert reduced["prect_labsea"].attrs["source_variable"] == "PRECC+PRECL"
    assert "OCNFRAC + ICEFRAC" in reduced["prect_labsea"].attrs["grid_choices"]
    for name in ("prect_labsea", "qflx_labsea"):
        np.testing.assert_allclose(reduced[name].values, full[name].values, rtol=0.02)


def test_an_unknown_output_list_is_a_clear_error(tmp_path: Path) -> None:
    from ensembles.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="unknown output 'lean'"):
        write_case(tmp_path, CASE, xr.Dataset(coords={"time": np.arange(1)}),
                   make_grids("cesm2", "small"), output="lean")
