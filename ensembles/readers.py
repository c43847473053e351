"""Lazy xarray views of CESM history files, for people exploring a member by hand.

The feature pipeline reads hyperslabs with netCDF4 directly (see ``extract``); this module
gives the same conventions to interactive users: netCDF4 engine, dask-backed arrays, cftime
time centred on the bounds, registry variables in canonical units, and the model's own cell
areas attached as a coordinate so a weighted mean is one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import netCDF4
import xarray as xr
from xarray.coders import CFDatetimeCoder

from ensembles.errors import InputFileError
from ensembles.filenames import parse_filename
from ensembles.grids import read_grid
from ensembles.registry import registry, variables
from ensembles.timeaxis import BOUNDS_NAMES


def open_history(
    paths: str | Path | Sequence[str | Path],
    *,
    static: str | Path | None = None,
    chunks: dict | str | None = "auto",
) -> xr.Dataset:
    """Open one or more history files of one case and model lazily.

    Parameters
    ----------
    paths
        History or time-series files of one model (they are concatenated along time).
    static
        The MOM6 static grid file, needed for MOM6 output without geolat/geolon.
    """
    files = [Path(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
    if not files:
        raise InputFileError(".", "no files given")
    model = parse_filename(files[0]).model
    try:
        ds = xr.open_mfdataset(
            files,
            engine="netcdf4",
            combine="nested",
            concat_dim="time",
            chunks=chunks,
            decode_times=CFDatetimeCoder(use_cftime=True),
            data_vars="minimal",
            coords="minimal",
            compat="override",
        )
    except (OSError, ValueError) as err:
        raise InputFileError(files[0], f"cannot open with xarray: {err}") from None
    ds = _centre_time(ds)
    ds = _to_canonical_units(ds, model)
    return _attach_area(ds, files[0], model, static)


def _centre_time(ds: xr.Dataset) -> xr.Dataset:
    """Put each monthly mean at the middle of its bounds (CESM2 stamps the end)."""
    name = ds["time"].attrs.get("bounds") or ds["time"].encoding.get("bounds")
    name = name if name in ds else next((n for n in BOUNDS_NAMES if n in ds), None)
    if name is None:
        return ds
    bounds = ds[name].values  # cftime objects, (time, 2)
    centre = [lower + (upper - lower) / 2 for lower, upper in bounds]
    return ds.assign_coords(time=("time", centre, ds["time"].attrs)).sortby("time")


def _to_canonical_units(ds: xr.Dataset, model: str) -> xr.Dataset:
    from ensembles.units import conversion

    updates = {}
    for variable in variables().values():
        if variable.reduction == "transport":  # velocities stay as written: a section sums them
            continue
        for option in variable.source_options(model):
            for name in option:
                if name not in ds or "units" not in ds[name].attrs:
                    continue
                target = "m s-1" if variable.reduction == "integral" else variable.units
                scale, offset = conversion(
                    ds[name].attrs["units"], target, registry().water_density
                )
                converted = (ds[name] * scale + offset) * variable.sign
                updates[name] = converted.assign_attrs(
                    {**ds[name].attrs, "units": target, "original_units": ds[name].attrs["units"]}
                )
    return ds.assign(updates)


def _attach_area(ds: xr.Dataset, path: Path, model: str, static: str | Path | None) -> xr.Dataset:
    static_nc = netCDF4.Dataset(static) if static else None
    try:
        with netCDF4.Dataset(path) as nc:
            grid = read_grid(model, nc, str(path), static_nc)
    finally:
        if static_nc is not None:
            static_nc.close()
    area = xr.DataArray(
        grid.area_m2, dims=grid.dims, attrs={"units": "m2", "long_name": "cell area"}
    )
    return ds.assign_coords(cell_area_m2=area)
