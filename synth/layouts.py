"""How each model writes its grid: dimensions, grid variables, masks, and the flat cells
that fields are placed on.

One builder per grid type turns :class:`synth.grids.SynthGrids` into a :class:`GridLayout`;
each model spec (:mod:`synth.model_specs`) names its builder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ensembles.errors import ConfigurationError
from synth.grids import Cells, SynthGrids


@dataclass(frozen=True, eq=False)
class GridVar:
    """A time-invariant variable written into every file of a model (or its static file)."""

    name: str
    dims: tuple[str, ...]
    values: np.ndarray
    attrs: Mapping[str, str]
    fill: bool = False


@dataclass(frozen=True, eq=False)
class GridLayout:
    """One model's view of a grid.

    Attributes
    ----------
    dims
        Non-time dimensions and sizes, in creation order.
    horizontal
        Dimensions of a 2-D field after ``time``.
    vertical
        Level dimension of 3-D fields, ``None`` where there are none.
    grid_vars
        Time-invariant variables written into every data file.
    cells
        Flat horizontal cells, with coordinates exactly as written.
    valid
        Flat cells holding data; the others are written as ``_FillValue``.
    kmt
        Ocean levels per flat cell (3-D validity), ``None`` without levels.
    z_top, z_bot
        Level interfaces in m, ``None`` without levels.
    coordinates
        CF ``coordinates`` attribute of 2-D and 3-D fields (``None``: coordinate variables).
    static
        Variables of a separate per-case grid file (MOM6 ``h.static``).
    """

    dims: tuple[tuple[str, int], ...]
    horizontal: tuple[str, ...]
    vertical: str | None
    grid_vars: tuple[GridVar, ...]
    cells: Cells
    valid: np.ndarray
    kmt: np.ndarray | None = None
    z_top: np.ndarray | None = None
    z_bot: np.ndarray | None = None
    coordinates: tuple[str | None, str | None] = (None, None)
    static: tuple[GridVar, ...] = ()


def _attrs(long_name: str, units: str, **extra: str) -> dict[str, str]:
    return {"long_name": long_name, "units": units, **extra}


def pop_layout(grids: SynthGrids) -> GridLayout:
    """POP: ``nlat, nlon`` with TLAT/TLONG, TAREA in cm2, depths in cm, KMT, HT, REGION_MASK."""
    o = grids.ocean
    ny, nx = o.shape
    cm = 100.0
    return GridLayout(
        dims=(("z_t", o.nz), ("z_w_top", o.nz), ("z_w_bot", o.nz), ("nlat", ny), ("nlon", nx)),
        horizontal=("nlat", "nlon"),
        vertical="z_t",
        grid_vars=(
            GridVar("z_t", ("z_t",), o.z_mid * cm,
                    _attrs("depth from surface to midpoint of layer", "centimeters",
                           positive="down")),
            GridVar("z_w_top", ("z_w_top",), o.z_top * cm,
                    _attrs("depth from surface to top of layer", "centimeters", positive="down")),
            GridVar("z_w_bot", ("z_w_bot",), o.z_bot * cm,
                    _attrs("depth from surface to bottom of layer", "centimeters",
                           positive="down")),
            GridVar("dz", ("z_t",), o.dz * cm, _attrs("thickness of layer k", "centimeters")),
            GridVar("TLAT", ("nlat", "nlon"), o.lat, _attrs("array of t-grid latitudes",
                                                            "degrees_north")),
            GridVar("TLONG", ("nlat", "nlon"), o.lon, _attrs("array of t-grid longitudes",
                                                             "degrees_east")),
            GridVar("TAREA", ("nlat", "nlon"), o.area * cm**2,
                    _attrs("area of T cells", "centimeter^2", coordinates="TLONG TLAT")),
            GridVar("KMT", ("nlat", "nlon"), o.kmt,
                    _attrs("k Index of Deepest Grid Cell on T Grid", "1",
                           coordinates="TLONG TLAT")),
            GridVar("HT", ("nlat", "nlon"), o.depth * cm,
                    _attrs("ocean depth at T points", "centimeter", coordinates="TLONG TLAT")),
            GridVar("REGION_MASK", ("nlat", "nlon"), o.basin,
                    _attrs("basin index number (signed integers)", "1",
                           coordinates="TLONG TLAT")),
        ),
        cells=o.cells(),
        valid=o.mask.ravel(),
        kmt=o.kmt.ravel(),
        z_top=o.z_top,
        z_bot=o.z_bot,
        coordinates=("TLONG TLAT time", "TLONG TLAT z_t time"),
    )


def mom6_layout(grids: SynthGrids) -> GridLayout:
    """MOM6 z-space: ``z_l, yh, xh`` in m; geolon shifted to -300..60 in ``h.static``."""
    o = grids.ocean
    ny, nx = o.shape
    geolon = np.mod(o.lon + 300.0, 360.0) - 300.0
    hor = ("yh", "xh")
    return GridLayout(
        dims=(("z_l", o.nz), ("z_i", o.nz + 1), ("yh", ny), ("xh", nx)),
        horizontal=hor,
        vertical="z_l",
        grid_vars=(
            GridVar("xh", ("xh",), geolon[0], _attrs("h point nominal longitude", "degrees_east",
                                                     axis="X")),
            GridVar("yh", ("yh",), o.lat[:, 0], _attrs("h point nominal latitude",
                                                       "degrees_north", axis="Y")),
            GridVar("z_l", ("z_l",), o.z_mid, _attrs("Depth at cell center", "meters",
                                                     positive="down", axis="Z")),
            GridVar("z_i", ("z_i",), np.append(o.z_top, o.z_bot[-1]),
                    _attrs("Depth at interface", "meters", positive="down")),
        ),
        cells=o.cells(lon=geolon),
        valid=o.mask.ravel(),
        kmt=o.kmt.ravel(),
        z_top=o.z_top,
        z_bot=o.z_bot,
        static=(
            GridVar("geolat", hor, o.lat, _attrs("Latitude of tracer (T) points",
                                                 "degrees_north")),
            GridVar("geolon", hor, geolon, _attrs("Longitude of tracer (T) points",
                                                  "degrees_east")),
            GridVar("areacello", hor, o.area, _attrs("Ocean Grid-Cell Area", "m2",
                                                     standard_name="cell_area")),
            GridVar("wet", hor, o.mask.astype(np.float32),
                    _attrs("0 if land, 1 if ocean at tracer points", "none")),
            GridVar("deptho", hor, o.depth, _attrs("Sea Floor Depth", "m",
                                                   standard_name="sea_floor_depth_below_geoid"),
                    fill=True),
        ),
    )


def cice_layout(grids: SynthGrids) -> GridLayout:
    """CICE: ``nj, ni`` on the ocean grid; no bathymetry, so regions use fallback boxes."""
    o = grids.ocean
    ny, nx = o.shape
    hor = ("nj", "ni")
    return GridLayout(
        dims=(("nj", ny), ("ni", nx)),
        horizontal=hor,
        vertical=None,
        grid_vars=(
            GridVar("TLON", hor, o.lon, _attrs("T grid center longitude", "degrees_east")),
            GridVar("TLAT", hor, o.lat, _attrs("T grid center latitude", "degrees_north")),
            GridVar("tarea", hor, o.area, _attrs("area of T grid cells", "m^2",
                                                 coordinates="TLON TLAT")),
            GridVar("tmask", hor, o.mask.astype(np.float32),
                    _attrs("ocean grid mask", "1", coordinates="TLON TLAT",
                           comment="0 = land, 1 = ocean")),
        ),
        cells=o.cells(with_depth=False),
        valid=o.mask.ravel(),
        coordinates=("TLON TLAT time", None),
    )


def cam_fv_layout(grids: SynthGrids) -> GridLayout:
    """CAM-FV: 1-D ``lat``, ``lon`` and Gaussian-like weights ``gw``."""
    a = grids.atm
    if a.gw is None:
        raise ConfigurationError("a CAM-FV layout needs an FV atmosphere grid with gw")
    return GridLayout(
        dims=(("lat", a.lat.size), ("lon", a.lon.size)),
        horizontal=("lat", "lon"),
        vertical=None,
        grid_vars=(
            GridVar("lat", ("lat",), a.lat, _attrs("latitude", "degrees_north")),
            GridVar("lon", ("lon",), a.lon, _attrs("longitude", "degrees_east")),
            GridVar("gw", ("lat",), a.gw, _attrs("latitude weights", "1")),
        ),
        cells=a.cells(),
        valid=np.ones(a.area.size, dtype=bool),
    )


def cam_se_layout(grids: SynthGrids) -> GridLayout:
    """CAM-SE: unstructured ``ncol`` with ``area`` on the unit sphere (sum 4 pi)."""
    a = grids.atm
    return GridLayout(
        dims=(("ncol", a.lat.size),),
        horizontal=("ncol",),
        vertical=None,
        grid_vars=(
            GridVar("lat", ("ncol",), a.lat, _attrs("latitude", "degrees_north")),
            GridVar("lon", ("ncol",), a.lon, _attrs("longitude", "degrees_east")),
            GridVar("area", ("ncol",), a.area, _attrs("physics column areas", "radians^2")),
        ),
        cells=a.cells(),
        valid=np.ones(a.area.size, dtype=bool),
    )


def _clm_grid_vars(dims: tuple[str, ...], grids: SynthGrids) -> tuple[GridVar, ...]:
    """CLM's area (km2), land fraction and mask on either land grid."""
    g = grids.land
    return (
        GridVar("area", dims, g.area, _attrs("grid cell areas", "km^2"), fill=True),
        GridVar("landfrac", dims, g.landfrac, _attrs("land fraction", "1"), fill=True),
        GridVar("landmask", dims, g.landmask,
                _attrs("land/ocean mask (0.=ocean and 1.=land)", "1")),
    )


def clm_latlon_layout(grids: SynthGrids) -> GridLayout:
    """CESM2 CLM on the CAM-FV grid: ocean points are ``_FillValue``."""
    g = grids.land
    dims = ("lat", "lon")
    return GridLayout(
        dims=(("lat", g.lat.size), ("lon", g.lon.size)),
        horizontal=dims,
        vertical=None,
        grid_vars=(
            GridVar("lat", ("lat",), g.lat, _attrs("coordinate latitude", "degrees_north")),
            GridVar("lon", ("lon",), g.lon, _attrs("coordinate longitude", "degrees_east")),
            *_clm_grid_vars(dims, grids),
        ),
        cells=g.cells(),
        valid=g.landmask.ravel() > 0,
    )


def clm_lndgrid_layout(grids: SynthGrids) -> GridLayout:
    """CESM3 CLM on ``lndgrid``: land points only, coordinates as 1-D variables."""
    g = grids.land
    dims = ("lndgrid",)
    return GridLayout(
        dims=(("lndgrid", g.lat.size),),
        horizontal=dims,
        vertical=None,
        grid_vars=(
            GridVar("lat", dims, g.lat, _attrs("coordinate latitude", "degrees_north")),
            GridVar("lon", dims, g.lon, _attrs("coordinate longitude", "degrees_east")),
            *_clm_grid_vars(dims, grids),
        ),
        cells=g.cells(),
        valid=np.ones(g.lat.size, dtype=bool),
    )
