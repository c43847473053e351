"""Tiny but faithful CESM files for tests, written with netCDF4.

Each writer takes a regular lat/lon box (cell edges given), so region areas and
integrals have closed forms the tests can compare against.
"""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np

R = 6.37122e6
FILL = np.float32(9.96921e36)


def cell_areas(lat_edges: np.ndarray, lon_edges: np.ndarray) -> np.ndarray:
    """Exact spherical areas (m2) of lat/lon cells."""
    dsin = np.diff(np.sin(np.deg2rad(lat_edges)))
    dlon = np.deg2rad(np.diff(lon_edges))
    return R**2 * dsin[:, None] * dlon[None, :]


def centres(edges: np.ndarray) -> np.ndarray:
    return 0.5 * (edges[1:] + edges[:-1])


def _time(
    nc: netCDF4.Dataset,
    months: list[int],
    *,
    year: int,
    stamp: str,
    bounds_name: str,
    units: str = "days since 0001-01-01 00:00:00",
) -> None:
    nc.createDimension("time", None)
    nc.createDimension("d2", 2)
    t = nc.createVariable("time", "f8", ("time",))
    t.units, t.calendar, t.bounds = units, "noleap", bounds_name
    b = nc.createVariable(bounds_name, "f8", ("time", "d2"))
    days = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    offset = netCDF4.date2num(
        __import__("cftime").datetime(year, 1, 1, calendar="noleap"), units, "noleap"
    )
    lo = np.array([offset + days[m - 1] for m in months], dtype=float)
    hi = np.array([offset + days[m] for m in months], dtype=float)
    b[:] = np.stack([lo, hi], axis=1)
    t[:] = hi if stamp == "end" else 0.5 * (lo + hi)


def _var(nc, name, dims, values, units, dtype="f4"):
    v = nc.createVariable(name, dtype, dims, fill_value=FILL if dtype == "f4" else None)
    v.units = units
    v[:] = values
    return v


def write_pop(
    path: Path,
    lat_e,
    lon_e,
    fields: dict[str, np.ndarray],
    *,
    months=(1,),
    year=1,
    dz_cm=(1000.0, 2000.0, 2000.0, 5000.0, 10000.0),
    depth_cm=None,
    kmt=None,
    grid_extra: dict[str, tuple[np.ndarray, str]] | None = None,
) -> Path:
    """A POP history file; ``grid_extra`` adds 2-D grid variables (``HTE``: values, units)."""
    lat, lon = np.meshgrid(centres(lat_e), centres(lon_e) % 360, indexing="ij")
    with netCDF4.Dataset(path, "w") as nc:
        _time(
            nc,
            list(months),
            year=year,
            stamp="end",
            bounds_name="time_bound",
            units="days since 0000-01-01 00:00:00",
        )
        nc.createDimension("nlat", lat.shape[0])
        nc.createDimension("nlon", lat.shape[1])
        nc.createDimension("z_t", len(dz_cm))
        dz = np.asarray(dz_cm)
        _var(nc, "z_t", ("z_t",), np.cumsum(dz) - dz / 2, "centimeters", "f8")
        _var(nc, "dz", ("z_t",), dz, "centimeters", "f8")
        _var(nc, "TLAT", ("nlat", "nlon"), lat, "degrees_north", "f8")
        _var(nc, "TLONG", ("nlat", "nlon"), lon, "degrees_east", "f8")
        _var(nc, "TAREA", ("nlat", "nlon"), cell_areas(lat_e, lon_e) * 1e4, "centimeter^2", "f8")
        _var(nc, "KMT", ("nlat", "nlon"), np.full(lat.shape, len(dz)) if kmt is None else kmt,
             "1", "i4")
        for name, (values, unit) in (grid_extra or {}).items():
            _var(nc, name, ("nlat", "nlon"), values, unit, "f8")
        _var(
            nc,
            "HT",
            ("nlat", "nlon"),
            np.full(lat.shape, 3.0e5) if depth_cm is None else depth_cm,
            "centimeter",
            "f8",
        )
        units = {
            "SALT": "gram/kilogram",
            "TEMP": "degC",
            "HMXL": "centimeter",
            "ROFF_F": "kg/m^2/s",
            "SHF": "watt/m^2",
            "UVEL": "centimeter/s",
            "VVEL": "centimeter/s",
        }
        for name, values in fields.items():
            dims = ("time", "z_t", "nlat", "nlon") if values.ndim == 4 else ("time", "nlat", "nlon")
            _var(nc, name, dims, values, units[name])
    return path


def write_mom6(
    hist: Path,
    static: Path,
    lat_e,
    lon_e,
    fields: dict[str, np.ndarray | tuple[tuple[str, ...], np.ndarray]],
    *,
    months=(1,),
    year=1,
    z_i=(0.0, 10.0, 30.0, 50.0, 100.0, 200.0),
    geo: tuple[np.ndarray, np.ndarray] | None = None,
    area: np.ndarray | None = None,
    static_extra: dict[str, tuple[tuple[str, ...], np.ndarray, str]] | None = None,
) -> None:
    """A MOM6 z-space history file and its static file.

    A field is values (dims from its rank, on tracer points) or ``(dims, values)`` for
    faces (``xq``/``yq``, sized from the values) or native layers ``zl``; ``geo`` gives
    curvilinear cell centres instead of the lat/lon edges, ``area`` their areas.
    """
    if geo is None:
        lat, lon = np.meshgrid(centres(lat_e), centres(lon_e), indexing="ij")
        area = cell_areas(lat_e, lon_e)
    else:
        lat, lon = geo
    with netCDF4.Dataset(static, "w") as nc:
        nc.createDimension("yh", lat.shape[0])
        nc.createDimension("xh", lat.shape[1])
        _var(nc, "geolat", ("yh", "xh"), lat, "degrees_north", "f8")
        _var(nc, "geolon", ("yh", "xh"), lon - 360.0, "degrees_east", "f8")  # tripolar-style range
        _var(nc, "areacello", ("yh", "xh"), area, "m2", "f8")
        _var(nc, "wet", ("yh", "xh"), np.ones(lat.shape), "1", "f8")
        _var(nc, "deptho", ("yh", "xh"), np.full(lat.shape, 3000.0), "m", "f8")
        for name, (dims, values, unit) in (static_extra or {}).items():
            for d, n in zip(dims, np.shape(values), strict=True):
                if d not in nc.dimensions:
                    nc.createDimension(d, n)
            _var(nc, name, dims, values, unit, "f8")
    with netCDF4.Dataset(hist, "w") as nc:
        _time(nc, list(months), year=year, stamp="mid", bounds_name="time_bnds")
        nc.createDimension("yh", lat.shape[0])
        nc.createDimension("xh", lat.shape[1])
        zi = np.asarray(z_i)
        nc.createDimension("z_l", zi.size - 1)
        nc.createDimension("z_i", zi.size)
        _var(nc, "z_l", ("z_l",), centres(zi), "meter", "f8")
        _var(nc, "z_i", ("z_i",), zi, "meter", "f8")
        units = {"so": "psu", "thetao": "degC", "friver": "kg m-2 s-1", "MLD_003": "m",
                 "pr": "kg m-2 s-1", "evs": "kg m-2 s-1", "umo": "kg s-1", "vmo": "kg s-1",
                 "uo": "m s-1", "vo": "m s-1", "h": "m", "thkcello": "m"}
        for name, given in fields.items():
            if isinstance(given, tuple):
                dims, values = given
            else:
                values = given
                dims = ("time", "z_l", "yh", "xh") if values.ndim == 4 else ("time", "yh", "xh")
            for d, n in zip(dims, values.shape, strict=True):
                if d not in nc.dimensions:
                    nc.createDimension(d, n)
            _var(nc, name, dims, values, units[name])


def write_cam_se(
    path: Path,
    lat: np.ndarray,
    lon: np.ndarray,
    area_unit_sphere: np.ndarray,
    landfrac: np.ndarray,
    fields: dict[str, np.ndarray],
    months=(1,),
) -> Path:
    with netCDF4.Dataset(path, "w") as nc:
        _time(nc, list(months), year=1, stamp="mid", bounds_name="time_bnds")
        nc.createDimension("ncol", lat.size)
        _var(nc, "lat", ("ncol",), lat, "degrees_north", "f8")
        _var(nc, "lon", ("ncol",), lon, "degrees_east", "f8")
        _var(nc, "area", ("ncol",), area_unit_sphere, "1", "f8")
        _var(
            nc,
            "LANDFRAC",
            ("time", "ncol"),
            np.broadcast_to(landfrac, (len(months), lat.size)),
            "fraction",
        )
        units = {"PRECT": "m/s", "PRECC": "m/s", "PRECL": "m/s", "PSL": "Pa"}
        for name, values in fields.items():
            _var(nc, name, ("time", "ncol"), values, units[name])
    return path


def write_clm_latlon(
    path: Path, lat_e, lon_e, landfrac: np.ndarray, fields: dict[str, np.ndarray], months=(1,)
) -> Path:
    with netCDF4.Dataset(path, "w") as nc:
        _time(nc, list(months), year=1, stamp="end", bounds_name="time_bounds")
        nc.createDimension("lat", lat_e.size - 1)
        nc.createDimension("lon", lon_e.size - 1)
        _var(nc, "lat", ("lat",), centres(lat_e), "degrees_north", "f8")
        _var(nc, "lon", ("lon",), centres(lon_e), "degrees_east", "f8")
        _var(nc, "area", ("lat", "lon"), cell_areas(lat_e, lon_e) / 1e6, "km^2", "f8")
        _var(nc, "landfrac", ("lat", "lon"), landfrac, "unitless", "f8")
        units = {"QRUNOFF": "mm/s", "TSA": "K"}
        for name, values in fields.items():
            _var(nc, name, ("time", "lat", "lon"), values, units[name])
    return path
