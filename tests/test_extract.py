"""Region means and integrals on every grid: constants give constants, known fields give
their analytic values, and units are converted once in the reader."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from ensembles.extract import GridPlan, extract_features
from ensembles.grids import read_grid
from tests.cesm_files import R, write_cam_se, write_clm_latlon, write_mom6, write_pop

LAT_E = np.arange(50.0, 71.0, 1.0)
LON_E = np.arange(-70.0, -39.0, 1.0)
NY, NX = LAT_E.size - 1, LON_E.size - 1


def _extract(path, model, static=None):
    static_nc = netCDF4.Dataset(static) if static else None
    with netCDF4.Dataset(path) as nc:
        plan = GridPlan(read_grid(model, nc, str(path), static_nc))
        return extract_features(nc, str(path), model, plan)


def _only(out, feature: str) -> tuple[str, list]:
    """The single source expression a file gave for a feature, and its values."""
    ((expression, values),) = out.values[feature].items()
    return expression, values


def _box_area(lat0, lat1, lon0, lon1):
    return R**2 * np.deg2rad(lon1 - lon0) * (np.sin(np.deg2rad(lat1)) - np.sin(np.deg2rad(lat0)))


def test_pop_constant_layer_mean_and_units(tmp_path):
    salt = np.full((1, 5, NY, NX), 34.8)
    hmxl = np.full((1, NY, NX), 150000.0)  # cm
    out = _extract(
        write_pop(
            tmp_path / "c.pop.h.0001-01.nc",
            LAT_E,
            LON_E,
            {"SALT": salt, "HMXL": hmxl},
            depth_cm=np.full((NY, NX), 3.0e5),
        ),
        "pop",
    )
    assert out.months == ["0001-01"]  # end-of-month stamp, centred on time_bound
    assert _only(out, "so_upper_labsea")[1][0] == pytest.approx(34.8, rel=1e-6)
    assert _only(out, "hmxl_labsea_interior")[1][0] == pytest.approx(1500.0, rel=1e-6)
    assert _only(out, "so_upper_labsea")[0] == "SALT"


def test_pop_upper_layer_is_thickness_weighted(tmp_path):
    dz = np.array([10.0, 20.0, 20.0, 50.0, 100.0])  # m; top 100 m = first four levels
    z_mid = np.cumsum(dz) - dz / 2
    salt = np.broadcast_to(z_mid[None, :, None, None], (1, 5, NY, NX)).copy()
    out = _extract(
        write_pop(
            tmp_path / "c.pop.h.0001-01.nc", LAT_E, LON_E, {"SALT": salt}, dz_cm=tuple(dz * 100)
        ),
        "pop",
    )
    # mean of z over 0-100 m with the midpoint rule is exact for a linear profile
    assert _only(out, "so_upper_labsea")[1][0] == pytest.approx(50.0, rel=1e-6)


def test_pop_fill_values_are_excluded_from_means(tmp_path):
    salt = np.full((1, 5, NY, NX), 35.0)
    salt[:, :, :, :5] = 9.96921e36  # fill over part of the region: must not bias the mean
    out = _extract(write_pop(tmp_path / "c.pop.h.0001-01.nc", LAT_E, LON_E, {"SALT": salt}), "pop")
    assert _only(out, "so_upper_labsea")[1][0] == pytest.approx(35.0, rel=1e-6)


def test_pop_runoff_integral_matches_analytic_area(tmp_path):
    q = 2.0e-5  # kg m-2 s-1
    roff = np.full((1, NY, NX), q)
    out = _extract(
        write_pop(tmp_path / "c.pop.h.0001-01.nc", LAT_E, LON_E, {"ROFF_F": roff}), "pop"
    )
    # labrador_shelf = [52, 61] N x [-65, -56] E: cell edges align with the box
    expected = q / 1000.0 * _box_area(52, 61, -65, -56) / 1e3
    assert _only(out, "friver_labrador_shelf")[1][0] == pytest.approx(expected, rel=1e-6)


def test_mom6_static_grid_shifted_longitudes_and_psu(tmp_path):
    so = np.full((2, 5, NY, NX), 34.9)
    hist, static = tmp_path / "c.mom6.h.z.0001-01.nc", tmp_path / "c.mom6.h.static.nc"
    write_mom6(hist, static, LAT_E, LON_E, {"so": so}, months=(1, 2))
    out = _extract(hist, "mom6", static)
    assert out.months == ["0001-01", "0001-02"]
    assert _only(out, "so_upper_labsea")[1] == pytest.approx([34.9, 34.9], rel=1e-6)


def test_cam_se_unit_sphere_area_landfrac_and_summed_sources(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    lat = rng.uniform(50, 70, n)
    lon = rng.uniform(290, 320, n)
    area = np.full(n, 4 * np.pi / n)  # unit sphere: must be scaled by R**2
    landfrac = np.where(lon < 300, 1.0, 0.0)  # western columns are land
    precc, precl = np.full((1, n), 1e-8), np.full((1, n), 2e-8)  # m/s
    path = write_cam_se(
        tmp_path / "c.cam.h0a.0001-01.nc",
        lat,
        lon,
        area,
        landfrac,
        {"PRECC": precc, "PRECL": precl},
    )
    out = _extract(path, "cam")
    inside = (lat >= 53) & (lat <= 66) & (lon >= 295) & (lon <= 316) & (landfrac == 0)
    expected = 3e-8 * (area[inside] * R**2).sum() / 1e3  # m/s * m2 = m3/s -> mSv
    assert _only(out, "prect_labsea")[1][0] == pytest.approx(expected, rel=1e-6)
    assert _only(out, "prect_labsea")[0] == "PRECC+PRECL"


def test_clm_latlon_runoff_integral_uses_landfrac(tmp_path):
    lat_e, lon_e = np.arange(58.0, 86.0, 1.0), np.arange(-75.0, -9.0, 1.0)
    landfrac = np.full((lat_e.size - 1, lon_e.size - 1), 0.5)
    q = 1e-5  # mm/s == kg m-2 s-1
    path = write_clm_latlon(
        tmp_path / "c.clm2.h0.0001-01.nc",
        lat_e,
        lon_e,
        landfrac,
        {"QRUNOFF": np.full((1, *landfrac.shape), q)},
    )
    out = _extract(path, "clm2")
    # greenland (regions.yaml): [59.5, 76] x [-60, -15] and [76, 84] x [-73, -10]; the
    # 59.5 N edge is a cell centre, which counts as inside, so the 59-60 N row is in
    boxes = _box_area(59, 76, -60, -15) + _box_area(76, 84, -73, -10)
    expected = q / 1000.0 * 0.5 * boxes / 1e3
    assert _only(out, "qrunoff_greenland")[1][0] == pytest.approx(expected, rel=1e-6)
