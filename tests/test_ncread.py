"""Fast netCDF reads: fills, packing and unsigned storage decoded as CF says, and the
low-level block reader agreeing with netCDF4's own indexing."""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from ensembles.ncread import decoding, fingerprint, read_block, read_values


@pytest.fixture
def nc(tmp_path):
    rng = np.random.default_rng(0)
    with netCDF4.Dataset(tmp_path / "f.nc", "w") as out:
        out.createDimension("time", None)
        out.createDimension("y", 6)
        out.createDimension("x", 7)
        plain = out.createVariable("plain", "f4", ("time", "y", "x"), fill_value=-999.0)
        plain[:] = rng.normal(size=(3, 6, 7)).astype("f4")
        plain[1, 2, 3] = -999.0  # declared fill
        plain[2, 0, 0] = 1.0e36  # CESM's undeclared 1e36-class fill
        plain[0, 5, 6] = np.nan
        packed = out.createVariable("packed", "i2", ("time", "y", "x"), fill_value=-32767)
        packed.set_auto_maskandscale(False)
        packed.scale_factor, packed.add_offset = 0.01, 20.0
        packed[:] = rng.integers(-3000, 3000, size=(3, 6, 7)).astype("i2")
        packed[0, 1, 1] = -32767
        flags = out.createVariable("flags", "i1", ("y", "x"))
        flags.set_auto_maskandscale(False)
        flags._Unsigned = "true"
        flags.missing_value = np.int8(-1)  # 255 once viewed as unsigned
        flags[:] = np.arange(42).reshape(6, 7).astype("i1") - 20
        flags[3, 3] = -1
    with netCDF4.Dataset(tmp_path / "f.nc") as ds:
        yield ds


def _reference(var: netCDF4.Variable, index: tuple) -> np.ndarray:
    """What netCDF4's masking and scaling make of the same slab, as floats with NaN."""
    var.set_auto_maskandscale(True)
    try:
        return np.ma.filled(np.ma.masked_invalid(var[index]).astype(float), np.nan)
    finally:
        var.set_auto_maskandscale(False)


def test_plain_fills_become_nan(nc):
    values = read_values(nc["plain"])
    assert np.isnan(values[1, 2, 3]) and np.isnan(values[2, 0, 0]) and np.isnan(values[0, 5, 6])
    assert np.isnan(values).sum() == 3


@pytest.mark.parametrize("name", ["plain", "packed"])
def test_block_reader_matches_netcdf4_indexing(nc, name):
    var = nc[name]
    how = decoding(var)
    block = read_block(var, how, (0, 1, 2), (3, 4, 5))
    index = (slice(0, 3), slice(1, 5), slice(2, 7))
    np.testing.assert_array_equal(block, read_values(var, index))
    expected = _reference(var, index)
    if name == "plain":  # netCDF4 itself does not know CESM's undeclared 1e36 fills
        expected[np.abs(expected) > 1e30] = np.nan
    np.testing.assert_allclose(block, expected, rtol=1e-6, equal_nan=True)


def test_packed_fill_is_matched_before_unpacking(nc):
    values = read_values(nc["packed"])
    assert np.isnan(values[0, 1, 1])
    assert np.isnan(values).sum() == 1
    assert values.dtype == np.float64


def test_unsigned_storage_and_its_missing_value(nc):
    values = read_values(nc["flags"])
    assert np.isnan(values[3, 3])
    assert values[0, 0] == 236.0  # -20 stored, 236 meant
    np.testing.assert_array_equal(
        read_block(nc["flags"], decoding(nc["flags"]), (0, 0), (6, 7)), values
    )


def test_fingerprint_sees_units_fills_and_dims(tmp_path):
    def write(name, units, fill, dims=("time", "x")):
        with netCDF4.Dataset(tmp_path / name, "w") as out:
            out.createDimension("time", None)
            out.createDimension("x", 3)
            out.createDimension("z", 3)
            var = out.createVariable("v", "f4", dims, fill_value=fill)
            var.units = units
        with netCDF4.Dataset(tmp_path / name) as ds:
            return fingerprint(ds["v"])

    base = write("a.nc", "m", 1e20)
    assert write("b.nc", "m", 1e20) == base
    assert write("c.nc", "cm", 1e20) != base
    assert write("d.nc", "m", -999.0) != base
    assert write("e.nc", "m", 1e20, ("time", "z")) != base
    assert write("f.nc", "m", np.nan) == write("g.nc", "m", np.nan)  # NaN fills compare equal
