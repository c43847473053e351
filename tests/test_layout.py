"""A stream's file layout is worked out once and reused, but never for a file it does not fit.

Files of one case and model share a :class:`~ensembles.extract.GridPlan` and so its cached
layouts; each file here changes one thing a layout depends on (units, fills, dims,
variables) halfway through a stream, and must still be read as if it were the only one.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from ensembles.extract import GridPlan, extract_features
from ensembles.features import build_features
from ensembles.grids import read_grid
from tests.cesm_files import write_pop

LAT_E = np.arange(50.0, 71.0, 2.0)
LON_E = np.arange(-70.0, -39.0, 2.0)
SHAPE = (LAT_E.size - 1, LON_E.size - 1)
CASE = "b.e21.B1850.f09_g17.layout.001"


def _pop(root: Path, month: int, hmxl_cm: float = 1.0e5, salt: float = 34.5) -> Path:
    path = root / CASE / "ocn" / "hist" / f"{CASE}.pop.h.0001-{month:02d}.nc"
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {"SALT": np.full((1, 5, *SHAPE), salt), "HMXL": np.full((1, *SHAPE), hmxl_cm)}
    return write_pop(path, LAT_E, LON_E, fields, months=(month,))


def _edit(path: Path, edit) -> None:
    with netCDF4.Dataset(path, "a") as nc:
        edit(nc)


def _series(result, feature: str) -> np.ndarray:
    return result.dataset[feature].sel(member=CASE).values


def test_same_layout_is_built_once(tmp_path):
    paths = [_pop(tmp_path, m) for m in (1, 2)]
    with netCDF4.Dataset(paths[0]) as nc:
        plan = GridPlan(read_grid("pop", nc, str(paths[0])))
        first = plan.layout(nc, str(paths[0]), "pop")
    with netCDF4.Dataset(paths[1]) as nc:
        assert plan.layout(nc, str(paths[1]), "pop") is first
        extract_features(nc, str(paths[1]), "pop", plan)
        assert plan.layout(nc, str(paths[1]), "pop") is first


def test_changed_units_midstream_are_converted_per_file(tmp_path):
    _pop(tmp_path, 1)
    metres = _pop(tmp_path, 2, hmxl_cm=1.0e3)  # 1000 written as metres, same variable names

    def to_metres(nc):
        nc["HMXL"].units = "m"

    _edit(metres, to_metres)
    _pop(tmp_path, 3)
    result = build_features([tmp_path], scheduler="synchronous")
    assert not result.problems
    np.testing.assert_allclose(_series(result, "hmxl_labsea_interior"), 1000.0, rtol=1e-6)


@pytest.mark.parametrize("first_missing", [None, -1.0])
def test_changed_fill_values_midstream_are_masked_per_file(tmp_path, first_missing):
    first = _pop(tmp_path, 1, salt=35.0)
    if first_missing is not None:  # same attribute names in both files, other value
        _edit(first, lambda nc: nc["SALT"].setncattr("missing_value", np.float32(first_missing)))
    odd = _pop(tmp_path, 2, salt=35.0)

    def declare_and_use_fill(nc):
        salt = nc["SALT"]
        salt.missing_value = np.float32(-999.0)
        salt.set_auto_maskandscale(False)
        salt[0, :, :, : SHAPE[1] // 2] = -999.0  # half the region: must not pull the mean

    _edit(odd, declare_and_use_fill)
    result = build_features([tmp_path], scheduler="synchronous")
    assert not result.problems
    np.testing.assert_allclose(_series(result, "so_upper_labsea"), 35.0, rtol=1e-6)


def test_changed_dims_midstream_are_reported_not_misread(tmp_path):
    _pop(tmp_path, 1)
    odd = tmp_path / CASE / "ocn" / "hist" / f"{CASE}.pop.h.0001-02.nc"
    levels = {"SALT": np.full((1, 5, *SHAPE), 34.5), "HMXL": np.full((1, 5, *SHAPE), 1.0e5)}
    write_pop(odd, LAT_E, LON_E, levels, months=(2,))  # same names, HMXL now on levels
    _pop(tmp_path, 3)
    result = build_features([tmp_path], scheduler="synchronous")
    (problem,) = [str(p) for p in result.problems if str(odd) in str(p)]
    assert "unexpected extra dims" in problem
    assert result.dataset.sizes["time"] == 2  # the odd file's month, and only it, is lost
    np.testing.assert_allclose(_series(result, "hmxl_labsea_interior"), 1000.0, rtol=1e-6)


def test_a_variable_missing_midstream_is_reported_and_the_rest_read(tmp_path):
    _pop(tmp_path, 1)
    odd = _pop(tmp_path, 2)
    _edit(odd, lambda nc: nc.renameVariable("HMXL", "XMXL"))  # other names: other layout
    _pop(tmp_path, 3)
    result = build_features([tmp_path], scheduler="synchronous")
    np.testing.assert_allclose(_series(result, "so_upper_labsea"), 34.5, rtol=1e-6)
    hmxl = _series(result, "hmxl_labsea_interior")
    assert np.isnan(hmxl[1]) and np.allclose(hmxl[[0, 2]], 1000.0, rtol=1e-6)


def test_a_failed_layout_is_not_reused(tmp_path):
    _pop(tmp_path, 1)
    odd = _pop(tmp_path, 2)
    _edit(odd, lambda nc: nc["HMXL"].delncattr("units"))
    _pop(tmp_path, 3)
    result = build_features([tmp_path], scheduler="synchronous")
    (problem,) = [str(p) for p in result.problems if str(odd) in str(p)]
    assert "HMXL has no units attribute" in problem
    assert result.dataset.sizes["time"] == 2
    np.testing.assert_allclose(_series(result, "hmxl_labsea_interior"), 1000.0, rtol=1e-6)
