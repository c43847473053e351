"""Freshwater transport through the Lab Sea gates read from files, against hand-computed fluxes.

Each file holds a flow of known speed through one gate and known salinity; the answer is
worked out here from the face geometry (speed x face length x thickness inside 0-100 m x
(S_ref - S_face) / S_ref), and values at every other face are junk, so reading the wrong
face, level or corner changes the result. The closure test advances a box's salinity
month by month with exactly the fluxes it is given and checks the budget closes on what the
normal feature path reads back.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from detectors.budget.analysis import freshwater_budget
from detectors.budget.settings import BudgetSettings
from detectors.labels import LabelRule, Labels
from ensembles.errors import InputFileError
from ensembles.extract import GridPlan, extract_features
from ensembles.features import build_features
from ensembles.grids import read_grid
from ensembles.registry import registry
from tests.cesm_files import cell_areas, write_mom6, write_pop

S_REF = registry().reference_salinity
RHO = registry().water_density
S_IN, S_OUT = 33.0, 34.0  # Lab Sea cells, cells across the gate
S_FACE = 0.5 * (S_IN + S_OUT)
# Cape Farewell: columns -46.5, -45.5, -44.5 are Lab Sea (lon <= -44), -43.5.. are not, so
# the gate is the x face of column 2 on every row (face centre at -44, in the gate box)
LAT_E, LON_E = np.arange(54.0, 58.5, 1.0), np.arange(-47.0, -40.5, 1.0)
NY, NX = LAT_E.size - 1, LON_E.size - 1
GATE_I = 2
L = 5.0e4  # m, face length
Z_I = (0.0, 40.0, 80.0, 120.0, 200.0)  # the third level is half in the upper layer
INSIDE_M = np.array([40.0, 40.0, 20.0, 0.0])  # thickness of each level in 0-100 m
DZ = np.diff(Z_I)
SPEED = -0.1 * np.arange(1, 5)  # m/s per level, westward: into the Lab Sea; level 4 ignored
JUNK = 7.0


def _freshness(s_face: float) -> float:
    return (S_REF - s_face) / S_REF


def _extract(path: Path, model: str, static: Path | None = None):
    static_nc = netCDF4.Dataset(static) if static else None
    try:
        with netCDF4.Dataset(path) as nc:
            plan = GridPlan(read_grid(model, nc, str(path), static_nc))
            return extract_features(nc, str(path), model, plan)
    finally:
        if static_nc is not None:
            static_nc.close()


def _value(out, feature: str) -> tuple[str, float]:
    ((recipe, values),) = out.values[feature].items()
    return recipe, values[0]


def _salinity(ny: int, nx: int, inside: np.ndarray, levels: int = 4) -> np.ndarray:
    so = np.where(inside, S_IN, S_OUT)
    return np.broadcast_to(so, (1, levels, ny, nx)).copy()


def _cape_farewell_expected() -> float:
    per_face = -(SPEED * INSIDE_M).sum() * L  # m3/s into the Lab Sea
    return NY * per_face * _freshness(S_FACE) / 1e3


def _c_grid_fields(symmetric: bool, mass: bool) -> dict:
    """umo/vmo (or uo/vo) with the gate flow at the face of column GATE_I, junk elsewhere."""
    xq, yq = NX + symmetric, NY + symmetric
    u = np.full((1, 4, NY, xq), JUNK)
    u[0, :, :, GATE_I + symmetric] = SPEED[:, None]
    v = np.full((1, 4, yq, NX), JUNK)  # no y face is on the boundary
    if mass:
        u = u * (DZ * L * RHO)[None, :, None, None]
        v = v * (DZ * L * RHO)[None, :, None, None]
    names = ("umo", "vmo") if mass else ("uo", "vo")
    inside = np.arange(NX)[None, :] <= GATE_I
    return {
        names[0]: (("time", "z_l", "yh", "xq"), u),
        names[1]: (("time", "z_l", "yq", "xh"), v),
        "so": _salinity(NY, NX, np.broadcast_to(inside, (NY, NX))),
    }


def _lengths(symmetric: bool) -> dict:
    return {
        "dyCu": (("yh", "xq"), np.full((NY, NX + symmetric), L), "m"),
        "dxCv": (("yq", "xh"), np.full((NY + symmetric, NX), L), "m"),
    }


@pytest.mark.parametrize("symmetric", [True, False], ids=["symmetric", "non-symmetric"])
@pytest.mark.parametrize("mass", [True, False], ids=["umo", "uo"])
def test_mom6_cape_farewell_gate(tmp_path, symmetric, mass):
    hist, static = tmp_path / "c.mom6.h.z.0001-01.nc", tmp_path / "c.mom6.h.static.nc"
    write_mom6(hist, static, LAT_E, LON_E, _c_grid_fields(symmetric, mass), z_i=Z_I,
               static_extra=_lengths(symmetric))
    recipe, value = _value(_extract(hist, "mom6", static), "fwt_cape_farewell")
    assert recipe == ("umo+vmo" if mass else "uo+vo")
    assert value == pytest.approx(_cape_farewell_expected(), rel=1e-6)


def test_mom6_native_layers_are_cut_at_100_m_by_their_thickness(tmp_path):
    h = np.array([30.0, 50.0, 60.0, 100.0])  # interfaces 0 30 80 140 240: 30 50 20 0 inside
    u = np.full((1, 4, NY, NX + 1), JUNK * RHO)
    u[0, :, :, GATE_I + 1] = (SPEED * h * L * RHO)[:, None]
    inside = np.broadcast_to(np.arange(NX)[None, :] <= GATE_I, (NY, NX))
    fields = {
        "umo": (("time", "zl", "yh", "xq"), u),
        "vmo": (("time", "zl", "yq", "xh"), np.zeros((1, 4, NY + 1, NX))),
        "so": (("time", "zl", "yh", "xh"), _salinity(NY, NX, inside)),
        "h": (("time", "zl", "yh", "xh"), np.broadcast_to(h[None, :, None, None],
                                                           (1, 4, NY, NX)).copy()),
    }
    hist, static = tmp_path / "c.mom6.h.native.0001-01.nc", tmp_path / "c.mom6.h.static.nc"
    write_mom6(hist, static, LAT_E, LON_E, fields)
    expected = -NY * (SPEED * np.array([30.0, 50.0, 20.0, 0.0])).sum() * L
    assert _value(_extract(hist, "mom6", static), "fwt_cape_farewell")[1] == pytest.approx(
        expected * _freshness(S_FACE) / 1e3, rel=1e-6
    )
    del fields["h"]
    write_mom6(hist, static, LAT_E, LON_E, fields)
    out = _extract(hist, "mom6", static)
    assert "fwt_cape_farewell" not in out.values
    assert any("umo+vmo is on layers zl" in n and "h or thkcello" in n for n in out.notes)


def test_a_file_with_part_of_a_recipe_names_what_it_lacks(tmp_path):
    fields = _c_grid_fields(symmetric=True, mass=True)
    del fields["vmo"]
    hist, static = tmp_path / "c.mom6.h.z.0001-01.nc", tmp_path / "c.mom6.h.static.nc"
    write_mom6(hist, static, LAT_E, LON_E, fields, z_i=Z_I)
    out = _extract(hist, "mom6", static)
    assert not any(name.startswith("fwt_") for name in out.values)
    (note,) = [n for n in out.notes if n.startswith("fwt ")]
    assert "umo+vmo lacks vmo" in note and "not computable" in note
    assert "so_upper_labsea" in out.values  # the rest of the file is still read


def test_a_flow_off_the_faces_of_the_grid_is_a_clear_error(tmp_path):
    fields = _c_grid_fields(symmetric=True, mass=True)
    fields["umo"] = (("time", "z_l", "yh", "xq"), np.zeros((1, 4, NY, NX + 3)))
    hist, static = tmp_path / "c.mom6.h.z.0001-01.nc", tmp_path / "c.mom6.h.static.nc"
    write_mom6(hist, static, LAT_E, LON_E, fields, z_i=Z_I)
    with pytest.raises(InputFileError, match=r"umo has shape .* not on the faces"):
        _extract(hist, "mom6", static)


def test_mom6_velocities_without_face_lengths_are_not_computable(tmp_path):
    hist, static = tmp_path / "c.mom6.h.z.0001-01.nc", tmp_path / "c.mom6.h.static.nc"
    write_mom6(hist, static, LAT_E, LON_E, _c_grid_fields(True, mass=False), z_i=Z_I)
    out = _extract(hist, "mom6", static)
    assert "fwt_cape_farewell" not in out.values
    assert any("dyCu and dxCv" in n for n in out.notes)


def _rotated_grid(n: int = 12, step: float = 0.3, angle: float = 30.0):
    """Cell centres of a grid whose i axis points 30 degrees north of east (curvilinear near
    the gate: its rows and columns both cross the Lab Sea's edge at -44)."""
    j, i = np.meshgrid(np.arange(n) - (n - 1) / 2, np.arange(n) - (n - 1) / 2, indexing="ij")
    a = np.deg2rad(angle)
    east = (i * np.cos(a) - j * np.sin(a)) * step
    north = (i * np.sin(a) + j * np.cos(a)) * step
    lat = 56.0 + north
    return lat, -44.07 + east / np.cos(np.deg2rad(lat))


def test_rotated_grid_sums_the_staircase_of_x_and_y_faces(tmp_path):
    lat, lon = _rotated_grid()
    n = lat.shape[0]
    u_speed, v_speed = -0.2, 0.1
    inside = (lon <= -44.0).astype(int)
    # flow u from cell a to its +i neighbour b enters where b is inside and a is not
    into_x = np.diff(inside, axis=1).sum() * u_speed
    into_y = np.diff(inside, axis=0).sum() * v_speed
    assert into_x > 0 and into_y > 0  # both orientations carry part of the gate's inflow
    so = _salinity(n, n, inside.astype(bool), levels=5)
    fields = {
        "uo": (("time", "z_l", "yh", "xq"), np.full((1, 5, n, n + 1), u_speed)),
        "vo": (("time", "z_l", "yq", "xh"), np.full((1, 5, n + 1, n), v_speed)),
        "so": so,
    }
    hist, static = tmp_path / "c.mom6.h.z.0001-01.nc", tmp_path / "c.mom6.h.static.nc"
    lengths = {"dyCu": (("yh", "xq"), np.full((n, n + 1), L), "m"),
               "dxCv": (("yq", "xh"), np.full((n + 1, n), L), "m")}
    write_mom6(hist, static, None, None, fields, geo=(lat, lon), area=np.full(lat.shape, L * L),
               static_extra=lengths)
    expected = (into_x + into_y) * L * 100.0 * _freshness(S_FACE) / 1e3
    assert _value(_extract(hist, "mom6", static), "fwt_cape_farewell")[1] == pytest.approx(
        expected, rel=1e-6
    )


POP_DZ_CM = (1000.0, 2000.0, 2000.0, 5000.0, 10000.0)
POP_INSIDE_M = np.array([10.0, 20.0, 20.0, 50.0, 0.0])
POP_LEVEL = np.arange(1.0, 6.0)  # velocity grows with level; the fifth is below 100 m


def _pop_grid_extra(ny: int, nx: int) -> dict:
    """HTE/HTN (cm) that differ between cells, so a face read off the wrong cell shows."""
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    return {"HTE": (1.0e6 + 1.0e4 * ii + 1.0e3 * jj, "cm"),
            "HTN": (2.0e6 + 1.0e4 * ii + 1.0e3 * jj, "cm")}


def test_pop_east_face_averages_the_two_u_corners(tmp_path):
    # row 0 is land: every gate face has both of its corners on the grid
    kmt = np.full((NY, NX), 5)
    kmt[0] = 0
    c = -2.0  # cm/s
    uvel = np.full((1, 5, NY, NX), JUNK)
    uvel[0, :, :, GATE_I] = c * POP_LEVEL[:, None] * (np.arange(NY) + 1)[None, :]
    inside = np.broadcast_to(np.arange(NX)[None, :] <= GATE_I, (NY, NX))
    extra = _pop_grid_extra(NY, NX)
    path = write_pop(tmp_path / "c.pop.h.0001-01.nc", LAT_E, LON_E,
                     {"UVEL": uvel, "VVEL": np.zeros((1, 5, NY, NX)),
                      "SALT": _salinity(NY, NX, inside, levels=5)},
                     kmt=kmt, grid_extra=extra)
    expected = 0.0
    for j in range(1, NY):  # U(j, i) and U(j-1, i): c (j + 1) and c j, per level
        normal = 0.5 * c * ((j + 1) + j) * POP_LEVEL / 100.0  # m/s
        expected -= (normal * POP_INSIDE_M).sum() * extra["HTE"][0][j, GATE_I] / 100.0
    recipe, value = _value(_extract(path, "pop"), "fwt_cape_farewell")
    assert recipe == "UVEL+VVEL"
    assert value == pytest.approx(expected * _freshness(S_FACE) / 1e3, rel=1e-6)


def test_pop_davis_strait_northward_flow_leaves_the_lab_sea(tmp_path):
    lat_e, lon_e = np.arange(64.0, 68.5, 1.0), np.arange(-60.0, -55.5, 1.0)
    ny, nx = lat_e.size - 1, lon_e.size - 1
    kmt = np.full((ny, nx), 5)
    kmt[:, 0] = 0  # column 0 is land: each face's western corner is on the grid
    north = 1  # rows 64.5 and 65.5 are Lab Sea (lat <= 66), the face at 66 is Davis Strait
    c = 1.5  # cm/s, northward
    vvel = np.full((1, 5, ny, nx), JUNK)
    vvel[0, :, north, :] = c * POP_LEVEL[:, None] * (np.arange(nx) + 1)[None, :]
    inside = np.broadcast_to((np.arange(ny) <= north)[:, None], (ny, nx))
    extra = _pop_grid_extra(ny, nx)
    path = write_pop(tmp_path / "c.pop.h.0001-01.nc", lat_e, lon_e,
                     {"UVEL": np.zeros((1, 5, ny, nx)), "VVEL": vvel,
                      "SALT": _salinity(ny, nx, inside, levels=5)},
                     kmt=kmt, grid_extra=extra)
    expected = 0.0
    for i in range(1, nx):  # U(j, i) and U(j, i-1)
        normal = 0.5 * c * ((i + 1) + i) * POP_LEVEL / 100.0
        expected -= (normal * POP_INSIDE_M).sum() * extra["HTN"][0][north, i] / 100.0
    assert expected < 0
    out = _extract(path, "pop")
    assert _value(out, "fwt_davis_strait")[1] == pytest.approx(
        expected * _freshness(S_FACE) / 1e3, rel=1e-6
    )


# ---- closure: salinity advanced by the fluxes the files hold -----------------------------

MONTH_S = 365 * 86400 / 12
YEARS = 3
CASE = "b.e30.BMT.tx2_3.gates"


def _labels(members: list[str]) -> Labels:
    n = len(members)
    return Labels(
        froze=xr.DataArray([False] * n, coords={"member": members}),
        onset=xr.DataArray([""] * n, coords={"member": members}),
        frozen_winter=None,
        rule=LabelRule(),
        mixed_layer=None,
        censored_from=xr.DataArray([""] * n, coords={"member": members}),
    )


def _closure_archive(root: Path) -> float:
    """A member whose Lab Sea box changes only by rain, evaporation and the Cape Farewell
    inflow; returns the box's ocean area. Leapfrog in time, so that the budget's centred
    difference of the content gives back exactly the fluxes of the middle month."""
    z_i = (0.0, 10.0, 30.0, 50.0, 100.0, 200.0)
    dz = np.diff(z_i)
    inside = np.broadcast_to(np.arange(NX)[None, :] <= GATE_I, (NY, NX))
    area = float(cell_areas(LAT_E, LON_E)[inside].sum())
    volume = area * 100.0
    precip, evap = 3.0e-5, -1.0e-5  # kg m-2 s-1 over every cell
    months = YEARS * 12
    inflow = 6000.0 + 4000.0 * np.sin(2 * np.pi * (np.arange(months) + 0.5) / 12)  # m3/s/face
    salinity = np.empty(months)
    content = np.empty(months)

    def fluxes(t: int) -> float:  # m3/s of fresh water into the box in month t
        gate = NY * inflow[t] * _freshness(0.5 * (salinity[t] + S_OUT))
        return gate + (precip + evap) * area / RHO

    def set_content(t: int, value: float) -> None:
        content[t] = value
        salinity[t] = S_REF * (1.0 - value / volume)

    set_content(0, volume * _freshness(S_IN))
    set_content(1, content[0] + MONTH_S * fluxes(0))
    for t in range(1, months - 1):
        set_content(t + 1, content[t - 1] + 2 * MONTH_S * fluxes(t))
    hist = root / f"{CASE}.001" / "ocn" / "hist"
    hist.mkdir(parents=True)
    static = hist / f"{CASE}.001.mom6.h.static.nc"
    for t in range(months):
        umo = np.zeros((1, 5, NY, NX + 1))
        umo[0, :, :, GATE_I + 1] = (-inflow[t] * dz / 100.0 * RHO * (np.asarray(z_i[1:]) <= 100))[
            :, None
        ]
        so = np.where(inside, salinity[t], S_OUT)
        fields = {
            "umo": (("time", "z_l", "yh", "xq"), umo),
            "vmo": (("time", "z_l", "yq", "xh"), np.zeros((1, 5, NY + 1, NX))),
            "so": np.broadcast_to(so, (1, 5, NY, NX)).copy(),
            "pr": np.full((1, NY, NX), precip),
            "evs": np.full((1, NY, NX), evap),
        }
        year, month = 1 + t // 12, 1 + t % 12
        write_mom6(hist / f"{CASE}.001.mom6.h.z.{year:04d}-{month:02d}.nc", static, LAT_E,
                   LON_E, fields, months=(month,), year=year, z_i=z_i)
    return area


def test_budget_closes_on_gate_transports_read_through_the_feature_path(tmp_path):
    area = _closure_archive(tmp_path)
    table = build_features([tmp_path], scheduler="synchronous").dataset
    assert table["fwt_cape_farewell"].attrs["reference_salinity"] == S_REF
    members = [str(m) for m in table.member.values]
    budget = freshwater_budget(table, _labels(members), settings=BudgetSettings(area_m2=area))
    computable = {t.source for t in budget.terms if t.computable}
    assert {"precipitation", "evaporation", "ocean_freshwater_transport"} <= computable
    arctic = next(t for t in budget.terms if t.source == "arctic_outflow")
    assert not arctic.computable and "Davis Strait" in arctic.lacks
    print(f"closure (RMS residual / RMS tendency): {budget.closure:.2e}")
    assert budget.closure < 0.10
    assert budget.closure < 1e-3  # float32 salinity is the only error left

    other = freshwater_budget(table, _labels(members),
                              settings=BudgetSettings(area_m2=area, reference_salinity=35.0))
    farewell = next(t for t in other.terms if t.source == "ocean_freshwater_transport")
    assert not farewell.computable and "34.8 g/kg" in farewell.lacks
