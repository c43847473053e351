"""Grid fallbacks and recipes: each link of each chain, on files shaped like real archives.

Expected values come from the test's own construction (which columns are ocean, their
areas), never from the reader; each link must also say in the features' attrs which
choice it made.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from ensembles.extract import GridPlan, extract_features
from ensembles.features import build_features
from ensembles.grids import CaseFiles, read_grid
from ensembles.registry import registry
from tests.cesm_files import R, _time, _var, cell_areas, centres, write_pop

CASE = "b.e30.B1850C_MTso.ne30_t232.fb.001"
N = 400
RNG = np.random.default_rng(3)
LAT = RNG.uniform(50, 70, N)
LON = RNG.uniform(290, 320, N)
OCEAN = LON >= 300  # eastern columns are ocean
STERADIANS = np.full(N, 4 * np.pi / 48602)  # an ne30-sized column, regional extract
INSIDE = (LAT >= 53) & (LAT <= 66) & (LON >= 295) & (LON <= 316)  # regions.yaml labsea box
PRECT = 3e-8  # m/s


def _cam_se(
    path: Path,
    extra: dict[str, np.ndarray],
    *,
    area_units: str | None = None,
    fields: dict[str, tuple[str, float]] | None = None,
) -> Path:
    """A CAM-SE history file cut to a region, with the surface fractions given in ``extra``."""
    with netCDF4.Dataset(path, "w") as nc:
        _time(nc, [1], year=1, stamp="mid", bounds_name="time_bnds")
        nc.createDimension("ncol", N)
        _var(nc, "lat", ("ncol",), LAT, "degrees_north", "f8")
        _var(nc, "lon", ("ncol",), LON, "degrees_east", "f8")
        area = nc.createVariable("area", "f8", ("ncol",))  # real CAM-SE: no attributes at all
        area[:] = STERADIANS
        if area_units:
            area.units = area_units
        for name, values in extra.items():
            _var(nc, name, ("time", "ncol"), values[None, :], "fraction")
        for name, (units, value) in (fields or {"PRECT": ("m/s", PRECT)}).items():
            _var(nc, name, ("time", "ncol"), np.full((1, N), value), units)
    return path


def _clm_se(path: Path, order: np.ndarray) -> Path:
    """A CLM file on the same columns as the CAM file, in another order."""
    with netCDF4.Dataset(path, "w") as nc:
        _time(nc, [1], year=1, stamp="mid", bounds_name="time_bounds")
        nc.createDimension("lndgrid", N)
        _var(nc, "lat", ("lndgrid",), LAT[order], "degrees_north", "f8")
        _var(nc, "lon", ("lndgrid",), LON[order] - 360.0, "degrees_east", "f8")
        _var(nc, "area", ("lndgrid",), STERADIANS[order] * R**2 / 1e6, "km^2", "f8")
        _var(nc, "landfrac", ("lndgrid",), (~OCEAN[order]).astype(float), "unitless", "f8")
    return path


def _mom6_static(path: Path) -> Path:
    """A 0.25 degree MOM6 grid whose wet cells are exactly the ocean columns' half."""
    lat_e, lon_e = np.arange(45.0, 75.01, 0.25), np.arange(285.0, 325.01, 0.25)
    lat, lon = np.meshgrid(centres(lat_e), centres(lon_e), indexing="ij")
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("yh", lat.shape[0])
        nc.createDimension("xh", lat.shape[1])
        _var(nc, "geolat", ("yh", "xh"), lat, "degrees_north", "f8")
        _var(nc, "geolon", ("yh", "xh"), lon - 360.0, "degrees_east", "f8")
        _var(nc, "areacello", ("yh", "xh"), cell_areas(lat_e, lon_e), "m2", "f8")
        _var(nc, "wet", ("yh", "xh"), (lon >= 300).astype(float), "1", "f8")
    return path


def _extract(path: Path, model: str, others: list[Path] = ()):
    case = CaseFiles([str(p) for p in others])
    try:
        with netCDF4.Dataset(path) as nc:
            grid = read_grid(model, nc, str(path), case)
            return grid, extract_features(nc, str(path), model, GridPlan(grid))
    finally:
        case.close()


def _prect(out) -> float:
    ((_, values),) = out.values["prect_labsea"].items()
    return values[0]


def _mSv(cells: np.ndarray) -> float:
    return PRECT * (STERADIANS[cells] * R**2).sum() / 1e3


def test_landfrac_is_used_first_and_steradians_are_told_by_magnitude(tmp_path):
    path = _cam_se(tmp_path / f"{CASE}.cam.h0a.0001-01.nc", {"LANDFRAC": (~OCEAN).astype(float)})
    grid, out = _extract(path, "cam")
    # a regional extract sums to far less than 4 pi: each cell < 4 pi still means steradians
    assert _prect(out) == pytest.approx(_mSv(INSIDE & OCEAN), rel=1e-6)
    assert grid.choices == ("CAM-SE area has no units; every cell < 4 pi: steradians",)


@pytest.mark.parametrize("units", ["radians^2", "sr", "1"])
def test_se_area_in_solid_angle_units(tmp_path, units):
    path = _cam_se(
        tmp_path / f"{CASE}.cam.h0a.0001-01.nc",
        {"LANDFRAC": (~OCEAN).astype(float)},
        area_units=units,
    )
    grid, out = _extract(path, "cam")
    assert _prect(out) == pytest.approx(_mSv(INSIDE & OCEAN), rel=1e-6)
    assert grid.choices == ()


def test_ocnfrac_plus_icefrac_replaces_landfrac(tmp_path):
    ice = np.where(OCEAN, 0.25, 0.0)
    path = _cam_se(
        tmp_path / f"{CASE}.cam.h0a.0001-01.nc", {"OCNFRAC": OCEAN - ice, "ICEFRAC": ice}
    )
    grid, out = _extract(path, "cam")
    assert _prect(out) == pytest.approx(_mSv(INSIDE & OCEAN), rel=1e-6)
    assert any("OCNFRAC + ICEFRAC" in c for c in grid.choices)


def test_ocnfrac_alone_leaves_ice_covered_ocean_out_and_says_so(tmp_path):
    path = _cam_se(tmp_path / f"{CASE}.cam.h0a.0001-01.nc", {"OCNFRAC": np.where(OCEAN, 0.75, 0.0)})
    grid, out = _extract(path, "cam")
    assert _prect(out) == pytest.approx(0.75 * _mSv(INSIDE & OCEAN), rel=1e-6)
    assert any("ice-covered ocean counts as land" in c for c in grid.choices)


def test_land_model_landfrac_matched_by_coordinates(tmp_path):
    path = _cam_se(tmp_path / f"{CASE}.cam.h0a.0001-01.nc", {})
    clm = _clm_se(tmp_path / f"{CASE}.clm2.h0a.0001-01.nc", RNG.permutation(N))
    grid, out = _extract(path, "cam", [clm])
    assert _prect(out) == pytest.approx(_mSv(INSIDE & OCEAN), rel=1e-6)
    assert any("land model's landfrac" in c for c in grid.choices)


def test_land_model_on_another_grid_is_not_matched(tmp_path):
    path = _cam_se(tmp_path / f"{CASE}.cam.h0a.0001-01.nc", {})
    clm = _clm_se(tmp_path / f"{CASE}.clm2.h0a.0001-01.nc", np.arange(N))
    with netCDF4.Dataset(clm, "a") as nc:
        nc["lat"][:] = LAT + 0.5
    grid, _ = _extract(path, "cam", [clm])
    assert grid.choices[-1].startswith("NO land/ocean mask")


def test_ocean_wet_mask_by_nearest_neighbour(tmp_path):
    path = _cam_se(tmp_path / f"{CASE}.cam.h0a.0001-01.nc", {})
    static = _mom6_static(tmp_path / f"{CASE}.mom6.h.static.nc")
    grid, out = _extract(path, "cam", [static])
    # 400 random columns over a 0.25 degree ocean grid: the split at 300 E is only as sharp
    # as the columns' spacing, so the ocean area is right to a few percent, not exactly
    assert _prect(out) == pytest.approx(_mSv(INSIDE & OCEAN), rel=0.05)
    assert any("wet mask by nearest neighbour" in c for c in grid.choices)


def test_no_mask_anywhere_integrates_the_whole_box_and_says_so(tmp_path):
    path = _cam_se(tmp_path / f"{CASE}.cam.h0a.0001-01.nc", {})
    grid, out = _extract(path, "cam")
    assert _prect(out) == pytest.approx(_mSv(INSIDE), rel=1e-6)
    assert "land cells included" in grid.choices[-1]


def test_evaporation_from_latent_heat_when_qflx_is_absent(tmp_path):
    lhflx = 50.0  # W m-2
    path = _cam_se(
        tmp_path / f"{CASE}.cam.h0a.0001-01.nc",
        {"LANDFRAC": (~OCEAN).astype(float)},
        fields={"LHFLX": ("W/m2", lhflx)},
    )
    _, out = _extract(path, "cam")
    ((recipe, values),) = out.values["qflx_labsea"].items()
    assert recipe == "LHFLX/L_v"
    kg_m2_s = lhflx / 2.501e6  # CESM shr_const_latvap
    expected = kg_m2_s / 1000.0 * (STERADIANS[INSIDE & OCEAN] * R**2).sum() / 1e3
    assert values[0] == pytest.approx(expected, rel=1e-6)
    assert registry().constants["L_v"].value == 2.501e6


def test_qflx_is_preferred_over_latent_heat(tmp_path):
    path = _cam_se(
        tmp_path / f"{CASE}.cam.h0a.0001-01.nc",
        {"LANDFRAC": (~OCEAN).astype(float)},
        fields={"LHFLX": ("W/m2", 50.0), "QFLX": ("kg/m2/s", 1e-5)},
    )
    _, out = _extract(path, "cam")
    assert list(out.values["qflx_labsea"]) == ["QFLX"]


# ---- through build_features: attrs, notes, POP grid from the case's other files, cache


def _pop_without_grid(path: Path, lat_e, lon_e) -> Path:
    """A single-variable POP time series that kept only its field and coordinates."""
    full = write_pop(
        path.with_suffix(".full"),
        lat_e,
        lon_e,
        {"SALT": np.full((1, 5, lat_e.size - 1, lon_e.size - 1), 34.8)},
    )
    with netCDF4.Dataset(full) as src, netCDF4.Dataset(path, "w") as dst:
        for name, dim in src.dimensions.items():
            dst.createDimension(name, None if dim.isunlimited() else len(dim))
        for name in ("time", "time_bound", "z_t", "dz", "SALT"):
            var = src[name]
            out = dst.createVariable(
                name, var.dtype, var.dimensions, fill_value=getattr(var, "_FillValue", None)
            )
            out.setncatts({k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"})
            out[:] = var[:]
    full.unlink()
    return path


def _pop_once(path: Path, lat_e, lon_e) -> Path:
    """``pop.h.once.nc``: the time-invariant grid fields."""
    lat, lon = np.meshgrid(centres(lat_e), centres(lon_e) % 360, indexing="ij")
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("nlat", lat.shape[0])
        nc.createDimension("nlon", lat.shape[1])
        _var(nc, "TLAT", ("nlat", "nlon"), lat, "degrees_north", "f8")
        _var(nc, "TLONG", ("nlat", "nlon"), lon, "degrees_east", "f8")
        _var(nc, "TAREA", ("nlat", "nlon"), cell_areas(lat_e, lon_e) * 1e4, "centimeter^2", "f8")
        _var(nc, "KMT", ("nlat", "nlon"), np.full(lat.shape, 5), "1", "i4")
        _var(nc, "HT", ("nlat", "nlon"), np.full(lat.shape, 3.0e5), "centimeter", "f8")
    return path


POP = "b.e21.BHIST.f09_g17.fb.001"
LAT_E, LON_E = np.arange(50.0, 71.0, 1.0), np.arange(-70.0, -39.0, 1.0)


def _pop_case(root: Path, once_lat_e=LAT_E) -> tuple[Path, Path]:
    tseries = root / POP / "ocn/proc/tseries/month_1"
    tseries.mkdir(parents=True)
    hist = root / POP / "ocn/hist"
    hist.mkdir(parents=True)
    salt = _pop_without_grid(tseries / f"{POP}.pop.h.SALT.000101-000101.nc", LAT_E, LON_E)
    return salt, _pop_once(hist / f"{POP}.pop.h.once.nc", once_lat_e, LON_E)


def test_pop_time_series_takes_its_grid_from_the_once_file(tmp_path):
    _, once = _pop_case(tmp_path)
    built = build_features([tmp_path], scheduler="synchronous")
    so = built.dataset["so_upper_labsea"]
    assert float(so.values[0, 0]) == pytest.approx(34.8, rel=1e-6)
    assert once.name in so.attrs["grid_choices"] and "KMT" in so.attrs["grid_choices"]
    assert any("grid: POP grid variables" in str(p) for p in built.problems)


def test_a_regional_extract_cannot_borrow_a_global_grid(tmp_path):
    _pop_case(tmp_path, once_lat_e=np.arange(-80.0, 81.0, 1.0))
    built = build_features([tmp_path], scheduler="synchronous")
    assert "so_upper_labsea" not in built.dataset
    (problem,) = [str(p) for p in built.problems if "SALT" in str(p)]
    assert "neither KMT nor REGION_MASK" in problem and "on the same grid" in problem


def test_cache_follows_the_grid_file_a_fallback_read(tmp_path):
    _, once = _pop_case(tmp_path)
    cache = tmp_path / "cache"
    first = build_features([tmp_path / POP], cache_dir=cache, scheduler="synchronous")
    again = build_features([tmp_path / POP], cache_dir=cache, scheduler="synchronous")
    assert (first.files_read, again.files_read, again.files_cached) == (1, 0, 1)
    with netCDF4.Dataset(once, "a") as nc:  # the grid changed: the values were reduced on it
        nc["KMT"][:] = 0
        nc["KMT"][5:15, 5:25] = 5
    changed = build_features([tmp_path / POP], cache_dir=cache, scheduler="synchronous")
    assert changed.files_read == 1
    assert changed.dataset.identical(build_features([tmp_path / POP]).dataset)
