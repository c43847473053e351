"""Horizontal and vertical grids of every CESM component, read from the files themselves.

Reductions are always weighted by the model's own cell areas (never unweighted), times the
fraction of the cell that belongs to the region's domain: the ocean mask for POP/MOM6/CICE,
``1 - LANDFRAC`` or ``LANDFRAC`` for CAM, ``landfrac`` for CLM.  A grid is read once per
case and model and reused for every file of that case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import netCDF4
import numpy as np

from ensembles.errors import InputFileError
from ensembles.ncread import read_values
from ensembles.units import conversion

EARTH_RADIUS_M = 6.37122e6  # CESM shr_const_rearth
UNIT_SPHERE_AREA = 4.0 * np.pi


@dataclass(frozen=True)
class Levels:
    """Vertical levels of a z-coordinate ocean grid, in metres, positive down."""

    dim: str
    top_m: np.ndarray
    bottom_m: np.ndarray

    def overlap(self, top: float, bottom: float) -> np.ndarray:
        """Thickness of each level inside ``[top, bottom]`` (0 for levels outside)."""
        return np.clip(np.minimum(self.bottom_m, bottom) - np.maximum(self.top_m, top), 0.0, None)


@dataclass(frozen=True)
class Grid:
    """Cell geometry of one component's horizontal grid (flattened to its native shape)."""

    model: str
    dims: tuple[str, ...]
    lat: np.ndarray
    lon: np.ndarray
    area_m2: np.ndarray
    ocean_fraction: np.ndarray | None = None
    land_fraction: np.ndarray | None = None
    depth_m: np.ndarray | None = None
    levels: Levels | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lat.shape

    def domain_weights(self, domain: str) -> np.ndarray | None:
        """Area times the fraction of each cell on ``domain``; None if the grid has none of it."""
        if domain == "any":
            return self.area_m2
        fraction = self.ocean_fraction if domain == "ocean" else self.land_fraction
        return None if fraction is None else self.area_m2 * fraction


def _read(nc: netCDF4.Dataset, name: str, path: str) -> np.ndarray:
    if name not in nc.variables:
        raise InputFileError(path, f"grid variable {name!r} is missing")
    return read_values(nc.variables[name])


def _first_time(values: np.ndarray, var: netCDF4.Variable) -> np.ndarray:
    return values[0] if var.dimensions and var.dimensions[0] == "time" else values


def _area_in_m2(nc: netCDF4.Dataset, name: str, path: str, default_units: str) -> np.ndarray:
    scale, _ = conversion(getattr(nc.variables[name], "units", default_units), "m2")
    return _read(nc, name, path) * scale


def _optional(nc: netCDF4.Dataset, name: str) -> np.ndarray | None:
    if name not in nc.variables:
        return None
    var = nc.variables[name]
    return _first_time(read_values(var), var)


def _pop(nc: netCDF4.Dataset, path: str, _: Any) -> Grid:
    kmt = _optional(nc, "KMT")
    region_mask = _optional(nc, "REGION_MASK")
    mask_source = kmt if kmt is not None else region_mask
    if mask_source is None:
        raise InputFileError(
            path, "POP file has neither KMT nor REGION_MASK: cannot tell ocean cells"
        )
    depth = _optional(nc, "HT")
    if depth is not None:
        depth = depth * conversion(getattr(nc.variables["HT"], "units", "cm"), "m")[0]
    return Grid(
        model="pop",
        dims=("nlat", "nlon"),
        lat=_read(nc, "TLAT", path),
        lon=_read(nc, "TLONG", path),
        area_m2=_area_in_m2(nc, "TAREA", path, "cm^2"),
        ocean_fraction=(np.nan_to_num(mask_source) > 0).astype(float),
        depth_m=depth,
        levels=_pop_levels(nc, path),
    )


def _pop_levels(nc: netCDF4.Dataset, path: str) -> Levels | None:
    if "z_t" not in nc.variables:
        return None
    to_m = conversion(getattr(nc.variables["z_t"], "units", "cm"), "m")[0]
    if "z_w_top" in nc.variables and "z_w_bot" in nc.variables:
        top, bottom = _read(nc, "z_w_top", path) * to_m, _read(nc, "z_w_bot", path) * to_m
    elif "dz" in nc.variables:
        dz = _read(nc, "dz", path) * to_m
        bottom = np.cumsum(dz)
        top = bottom - dz
    else:
        raise InputFileError(path, "POP file has z_t but neither z_w_top/z_w_bot nor dz")
    return Levels("z_t", top, bottom)


def _mom6(nc: netCDF4.Dataset, path: str, static: netCDF4.Dataset | None) -> Grid:
    source = nc if "geolat" in nc.variables else static
    if source is None:
        raise InputFileError(
            path,
            "MOM6 history file without geolat/geolon and no static file "
            "(<case>.mom6.h.static.nc or <case>.mom6.static.nc) found for its case",
        )
    spath = source.filepath()
    wet = _optional(source, "wet")
    return Grid(
        model="mom6",
        dims=("yh", "xh"),
        lat=_read(source, "geolat", spath),
        lon=_read(source, "geolon", spath),
        area_m2=_area_in_m2(source, "areacello", spath, "m2"),
        ocean_fraction=None if wet is None else np.nan_to_num(wet),
        depth_m=_optional(source, "deptho"),
        levels=_mom6_levels(nc, path),
    )


def _mom6_levels(nc: netCDF4.Dataset, path: str) -> Levels | None:
    if "z_l" not in nc.variables:
        return None
    if "z_i" not in nc.variables:
        raise InputFileError(path, "MOM6 z-space file has z_l but no interfaces z_i")
    interfaces = _read(nc, "z_i", path)
    return Levels("z_l", interfaces[:-1], interfaces[1:])


def _cice(nc: netCDF4.Dataset, path: str, _: Any) -> Grid:
    tmask = _optional(nc, "tmask")
    return Grid(
        model="cice",
        dims=("nj", "ni"),
        lat=_read(nc, "TLAT", path),
        lon=_read(nc, "TLON", path),
        area_m2=_area_in_m2(nc, "tarea", path, "m2"),
        ocean_fraction=None if tmask is None else np.nan_to_num(tmask),
    )


def _cam(nc: netCDF4.Dataset, path: str, aux: netCDF4.Dataset | None) -> Grid:
    landfrac = _optional(nc, "LANDFRAC")
    if landfrac is None and aux is not None:  # time series keep LANDFRAC in its own file
        landfrac = _optional(aux, "LANDFRAC")
    fractions = {}
    if landfrac is not None:
        landfrac = np.clip(np.nan_to_num(landfrac), 0.0, 1.0)
        fractions = {"land_fraction": landfrac, "ocean_fraction": 1.0 - landfrac}
    if "ncol" in nc.dimensions:
        area = _read(nc, "area", path)
        if abs(area.sum() / UNIT_SPHERE_AREA - 1.0) < 0.01:  # SE areas on the unit sphere
            area = area * EARTH_RADIUS_M**2
        return Grid(
            "cam", ("ncol",), _read(nc, "lat", path), _read(nc, "lon", path), area, **fractions
        )
    lat, lon = _read(nc, "lat", path), _read(nc, "lon", path)
    gw = _read(nc, "gw", path)
    area1d = gw / gw.sum() * 2.0 * 2.0 * np.pi * EARTH_RADIUS_M**2 / lon.size
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    area = np.broadcast_to(area1d[:, None], lat2.shape).copy()
    return Grid("cam", ("lat", "lon"), lat2, lon2, area, **fractions)


def _clm(nc: netCDF4.Dataset, path: str, _: Any) -> Grid:
    landfrac = np.clip(np.nan_to_num(_read(nc, "landfrac", path)), 0.0, 1.0)
    area = np.nan_to_num(_area_in_m2(nc, "area", path, "km^2"))
    lat, lon = _read(nc, "lat", path), _read(nc, "lon", path)
    if "lndgrid" in nc.dimensions:
        return Grid("clm2", ("lndgrid",), lat, lon, area, land_fraction=landfrac)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    return Grid("clm2", ("lat", "lon"), lat2, lon2, area, land_fraction=landfrac)


_READERS = {"pop": _pop, "mom6": _mom6, "cice": _cice, "cam": _cam, "clm2": _clm}


def read_grid(
    model: str, nc: netCDF4.Dataset, path: str, aux: netCDF4.Dataset | None = None
) -> Grid:
    """Grid of ``model`` from an open file, completed from an auxiliary file.

    The auxiliary file is the MOM6 static grid file, or for CAM time series the case's
    ``LANDFRAC`` file (each time-series file carries only its own variable).

    Raises
    ------
    InputFileError
        When the grid variables the model always writes are missing.
    """
    try:
        reader = _READERS[model]
    except KeyError:
        raise InputFileError(path, f"no grid reader for model {model!r}") from None
    return reader(nc, path, aux)
