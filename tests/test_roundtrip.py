"""Synthetic signals -> CESM files -> features: every feature comes back on every grid.

This exercises each model's conventions end to end (POP, MOM6 + static file, CICE, CAM-FV,
CAM-SE, CLM on lat/lon and lndgrid; history and time-series layouts; end-of-month and
mid-month stamps; unit conversions; sums of sources split over time-series files).
"""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from ensembles.features import build_features
from ensembles.registry import features
from synth.ensemble import simulate_ensemble, synthesize

MIXED_LAYER = {
    "cesm2": {"hmxl_labsea_interior", "xmxl_labsea_interior"},
    "cesm3": {"mld_003_labsea_interior", "mlotst_labsea_interior"},
}


@pytest.mark.parametrize("layout", ["history", "tseries"])
@pytest.mark.parametrize("flavour", ["cesm2", "cesm3"])
def test_features_recover_planted_signals(tmp_path, flavour: str, layout: str) -> None:
    synthesize(
        tmp_path,
        kind="freeze-database",
        members=2,
        years=1,
        size="small",
        flavour=flavour,
        layout=layout,
        seed=3,
    )
    result = build_features([tmp_path], scheduler="synchronous")
    assert [str(p) for p in result.problems] == []
    sim = simulate_ensemble("freeze-database", "greenland_runoff", members=2, years=1, seed=3)
    other = MIXED_LAYER["cesm3" if flavour == "cesm2" else "cesm2"]
    # gate sections (issue 15): the generator writes no velocities, so files give none
    unread = {n for n, f in features().items() if f.var.reduction == "transport"}
    expected = set(sim.features) - other - unread
    assert set(result.dataset.data_vars) == expected
    for name in expected:
        np.testing.assert_allclose(
            result.dataset[name].values, sim.features[name], rtol=1e-5, atol=1e-6, err_msg=name
        )
    assert result.dataset.sizes == {"member": 2, "time": 12}


@pytest.mark.parametrize("flavour", ["cesm2", "cesm3"])
def test_packed_time_series_recover_the_signals_within_their_quantisation(
        tmp_path, flavour: str) -> None:
    synthesize(tmp_path, kind="freeze-database", members=2, years=1, size="small",
               flavour=flavour, layout="tseries", seed=3, packed=True)
    packed = [p for p in tmp_path.rglob("*.nc") if _is_packed(p)]
    assert packed, "no packed field was written"
    result = build_features([tmp_path], scheduler="synchronous")
    assert [str(p) for p in result.problems] == []
    sim = simulate_ensemble("freeze-database", "greenland_runoff", members=2, years=1, seed=3)
    for name in result.dataset.data_vars:
        truth = sim.features[name]
        # 16 bits over a global field's range: a regional mean is off by far less than the
        # signal's own month-to-month spread
        np.testing.assert_allclose(result.dataset[name].values, truth, rtol=2e-4,
                                   atol=1e-3 * float(np.std(truth)) + 1e-9, err_msg=name)


def _is_packed(path) -> bool:
    with netCDF4.Dataset(path) as ds:
        return any(v.dtype == np.int16 and "scale_factor" in v.ncattrs()
                   for v in ds.variables.values())


@pytest.mark.parametrize("flavour", ["cesm2", "cesm3"])
def test_the_budget_area_is_the_labsea_ocean_cells_of_the_ocean_grid(tmp_path, flavour) -> None:
    """The readers put the Lab Sea's wet area on the table; the budget uses it, not the boxes
    on the sphere (which include Labrador and Greenland)."""
    from detectors.budget.content import box_area_m2
    from ensembles.areas import OCEAN_AREA_ATTR
    from ensembles.regions import get_region

    synthesize(tmp_path, kind="freeze-database", members=1, years=1, size="small",
               flavour=flavour, layout="history", seed=3)
    table = build_features([tmp_path], scheduler="synchronous").dataset
    grid_file, lat, lon, area, wet, scale = (
        ("*.pop.h.0001-01.nc", "TLAT", "TLONG", "TAREA", "KMT", 1e-4) if flavour == "cesm2"
        else ("*.mom6.h.static.nc", "geolat", "geolon", "areacello", "wet", 1.0))
    with netCDF4.Dataset(next(tmp_path.rglob(grid_file))) as nc:
        inside = get_region("labsea").boxes[0].contains(nc[lat][:], nc[lon][:])
        expected = float((nc[area][:] * scale * (nc[wet][:] > 0) * inside).sum())
    assert table.attrs[OCEAN_AREA_ATTR] == pytest.approx(expected, rel=1e-9)
    assert expected < 0.9 * box_area_m2("labsea")
    model = "pop" if flavour == "cesm2" else "mom6"
    assert f"{model} grid" in table.attrs[f"{OCEAN_AREA_ATTR}_source"]
    assert "/" not in table.attrs[f"{OCEAN_AREA_ATTR}_source"]  # no server path
