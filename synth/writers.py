"""Write CESM-faithful synthetic history files from per-member monthly regional signals.

A *signal* is a monthly series named like a registry feature (``so_upper_labsea``,
``qrunoff_greenland``...). :func:`write_case` turns a Dataset of signals into the files a
CESM case would leave in its short-term archive (or post-processed time series), so that a
reader computing the registry's regional reductions recovers the signals:

* **means** (``reduction: mean``): the domain-weighted area mean over the region (ocean
  cells, or CAM area x (1 - landfrac), or CLM area x landfrac) equals the signal, in the
  registry's canonical units; ``*_upper_*`` signals are the thickness-weighted mean over the
  registry's ``upper_ocean_m`` layer;
* **integrals** (``reduction: integral``): the area integral of the flux, converted to
  volume with the registry's water density (for mass fluxes), equals the signal in mSv.

Placement is written once, for every grid: within a region the field is the target value
times (or plus) a zero-mean smooth pattern, so the reduction is exact while the field still
has spatial structure. Regions are placed **smallest first**; a larger region then sets only
the cells not yet placed, with a target corrected for the cells already set, so nested and
overlapping regions (``labsea_interior`` in ``labsea``, ``irminger`` in ``spg``, the shelves)
all keep their own signals exactly. The only exception is when the correction would leave a
variable's physical bounds (e.g. ``aice_labsea = 0`` while ``aice_davis_strait = 0.9`` share
cells): the corrected value is clipped, the outer region's reduction then misses its signal by
the clipped amount, and one warning per case says by how much.

Every variable the registry lists for a model gets a plausible background climatology with a
seasonal cycle and small noise, so files are complete without any signal. Models differ only
through data: one :class:`ModelSpec` per model and flavour (file names, time convention, fill
value, variables with units and conversions) and one grid layout builder per grid type.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import netCDF4
import numpy as np
import xarray as xr

from ensembles.errors import ConfigurationError
from ensembles.regions import region_mask, regions
from ensembles.registry import features, registry, variables
from synth.grids import Cells, SynthGrids, smooth_field

logger = logging.getLogger(__name__)

Stamp = Literal["end", "mid"]
NetcdfFormat = Literal["NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"]
"""netCDF3 flavours only: files are copied from in-memory templates, which need netCDF3."""
Form = Literal["add", "mul", "unit"]
FileLayout = Literal["history", "tseries"]

MSV_IN_M3_S = 1e3
"""One mSv of water in m3/s."""
COMPONENTS = ("ocn", "ice", "atm", "lnd")
_DAYS_BEFORE_MONTH = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365])
_PATTERN_NOISE = 0.3
"""Month-to-month white noise added to a placement's smooth pattern, relative to it."""


# ========================================================================================
# Time
# ========================================================================================
@dataclass(frozen=True)
class TimeAxis:
    """How a model stamps monthly means.

    Attributes
    ----------
    epoch_year
        Year the time units count from: POP counts from year 0, the others from year 1.
    stamp
        ``"end"`` (CESM2: 00:00 on the 1st of the next month) or ``"mid"`` (CESM3).
    bounds, bounds_dim
        Name of the bounds variable and of its size-2 dimension.
    """

    epoch_year: int = 1
    stamp: Stamp = "end"
    bounds: str = "time_bnds"
    bounds_dim: str = "nbnd"

    @property
    def units(self) -> str:
        """CF units attribute."""
        return f"days since {self.epoch_year:04d}-01-01 00:00:00"

    def stamps(self, year: int, month: int) -> tuple[float, float, float]:
        """``(time, start, end)`` of one month (1-based) of a model year, noleap calendar."""
        days_before_year = 365.0 * (year - self.epoch_year)
        start = days_before_year + float(_DAYS_BEFORE_MONTH[month - 1])
        end = days_before_year + float(_DAYS_BEFORE_MONTH[month])
        return (end if self.stamp == "end" else 0.5 * (start + end)), start, end


def _year_month(offset: int, start_year: int) -> tuple[int, int]:
    """Model year and 1-based month of month ``offset`` counted from January of start_year."""
    return start_year + offset // 12, offset % 12 + 1


# ========================================================================================
# Grid layouts: how each model writes its grid (dims, grid variables, masks)
# ========================================================================================
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


def _pop_layout(grids: SynthGrids) -> GridLayout:
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


def _mom6_layout(grids: SynthGrids) -> GridLayout:
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


def _cice_layout(grids: SynthGrids) -> GridLayout:
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


def _cam_fv_layout(grids: SynthGrids) -> GridLayout:
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


def _cam_se_layout(grids: SynthGrids) -> GridLayout:
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


def _clm_latlon_layout(grids: SynthGrids) -> GridLayout:
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


def _clm_lndgrid_layout(grids: SynthGrids) -> GridLayout:
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


# ========================================================================================
# Climatology: one entry per canonical field, in dependency order
# ========================================================================================
def _gauss(x: np.ndarray | float, centre: float, width: float) -> np.ndarray:
    """exp(-((x - centre) / width)**2)."""
    return np.exp(-(((np.asarray(x) - centre) / width) ** 2))


class Geography:
    """Static per-grid quantities the climatology uses, computed once per model and grid."""

    def __init__(self, cells: Cells) -> None:
        self.cells = cells
        self.lat = cells.lat
        phi = np.radians(cells.lat)
        self.coslat = np.cos(phi)
        self.abssin = np.abs(np.sin(phi))
        self.hemisphere = np.where(cells.lat >= 0, 1.0, -1.0)
        self.convection = self.blob(58.0, -45.0, 12.0)
        self.labrador_current = self.blob(60.0, -60.0, 15.0)
        self.norwegian_current = self.blob(70.0, 5.0, 15.0)
        self.iceland_low = self.blob(63.0, -30.0, 12.0)
        self.azores_high = self.blob(35.0, -30.0, 12.0)
        self.hudson = self.blob(60.0, -85.0, 6.0)
        self.greenland = region_mask("greenland", cells.lat, cells.lon)[0].astype(float)

    def blob(self, lat0: float, lon0: float, width: float) -> np.ndarray:
        """A Gaussian bump (width in degrees of great-circle-ish distance)."""
        dlon = (np.mod(self.cells.lon - lon0 + 180.0, 360.0) - 180.0) * np.cos(np.radians(lat0))
        return np.exp(-((self.cells.lat - lat0) ** 2 + dlon**2) / width**2)


@dataclass
class Context:
    """What a background function may look at: the grid, the month, fields done so far."""

    geo: Geography
    month: int | None  # 1-based calendar month; None for the annual mean
    fields: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def winter(self) -> np.ndarray | float:
        """Local winter index: 1 in February, -1 in August (flipped in the south), 0 annual."""
        if self.month is None:
            return 0.0
        return np.cos(2 * np.pi * (self.month - 2) / 12) * self.geo.hemisphere

    @property
    def cold(self) -> np.ndarray | float:
        """Winter half of the cycle only."""
        return np.maximum(self.winter, 0.0)

    @property
    def warm(self) -> np.ndarray | float:
        """Summer half of the cycle only."""
        return np.maximum(-np.asarray(self.winter), 0.0)

    def peak(self, month: float, width: float) -> float:
        """A seasonal peak around a (northern) calendar month; its annual mean when annual."""
        if self.month is None:
            return width * np.sqrt(np.pi) / 12
        distance = (self.month - month + 6) % 12 - 6
        return float(_gauss(distance, 0.0, width))


@dataclass(frozen=True)
class Climate:
    """Background and placement rules of one canonical field (canonical units).

    Attributes
    ----------
    background
        Plausible monthly climatology.
    form
        How a placement shapes its pattern: ``add`` (target + amplitude x pattern), ``mul``
        (target x (1 + amplitude x pattern), keeps the sign) or ``unit`` (a fraction kept in
        [0, 1]).
    amplitude
        Pattern amplitude: absolute for ``add``, relative for ``mul``/``unit``.
    noise
        Month-to-month background noise, same meaning as ``amplitude``.
    bounds
        Physical range; placement targets are clipped to it.
    pattern
        Placements sharing a key share their pattern (XMXL stays >= HMXL, ice thickness
        follows concentration).
    """

    background: Callable[[Context], np.ndarray]
    form: Form = "add"
    amplitude: float = 0.0
    noise: float = 0.0
    bounds: tuple[float, float] = (-np.inf, np.inf)
    pattern: str | None = None


_LATENT_HEAT = 2.501e6  # J/kg


def _temperature(c: Context) -> np.ndarray:
    """Upper-ocean temperature: warm tropics, about 3 degC in the Labrador Sea, freezing
    Arctic, colder in local winter."""
    g = c.geo
    return np.maximum(28.0 * g.coslat**3 - 1.0 - 2.0 * g.abssin * c.winter, -1.8)


def _surface_temperature(c: Context) -> np.ndarray:
    """Upper-layer mean plus summer warming, none in near-freezing polar water."""
    upper = c.fields["thetao"]
    return upper + (0.1 + 0.8 * c.warm) * np.clip((upper + 1.8) / 2.0, 0.0, 1.0)


def _salinity(c: Context) -> np.ndarray:
    """Upper-ocean salinity: salty subtropics, fresh Arctic and Hudson Bay."""
    g = c.geo
    arctic = 1.0 / (1.0 + np.exp(-(g.lat - 72.0) / 4.0))
    return (34.8 + 1.5 * _gauss(np.abs(g.lat), 25.0, 12.0) - 2.5 * arctic - 3.0 * g.hudson
            + 0.05 * c.winter)


def _above_floor(mld: np.ndarray, c: Context) -> np.ndarray:
    """A mixed layer no deeper than the ocean floor, where the grid knows it."""
    depth = c.geo.cells.depth_m
    return mld if depth is None else np.where(depth > 0, np.minimum(mld, depth), mld)


def _mixed_layer(c: Context) -> np.ndarray:
    """Shallow in summer, deep in winter, deepest at the subpolar convection sites."""
    return _above_floor(20.0 + c.cold * (80.0 + 900.0 * c.geo.convection), c)


def _precipitation(c: Context) -> np.ndarray:
    """Precipitation (kg m-2 s-1): storm tracks and the ITCZ."""
    g = c.geo
    storm = 2.5e-5 * _gauss(np.abs(g.lat), 50.0, 12.0) * (1.0 + 0.3 * c.winter)
    return 2e-5 + storm + 4e-5 * _gauss(g.lat, 7.0, 8.0)


def _evaporation(c: Context) -> np.ndarray:
    """Evaporation, positive upwards (kg m-2 s-1)."""
    g = c.geo
    return 1e-5 + 3.5e-5 * g.coslat**2 + 2e-5 * c.cold * g.convection


def _ice_concentration(c: Context) -> np.ndarray:
    """Sea-ice concentration: an ice edge moving with the season, pushed south by the
    Labrador Current and north by the Norwegian Current."""
    g = c.geo
    edge = 66.0 - 6.0 * c.winter - 6.0 * g.labrador_current + 8.0 * g.norwegian_current
    return np.clip((np.abs(g.lat) - edge) / 6.0, 0.0, 0.97)


def _snow_fraction(c: Context) -> np.ndarray:
    """Share of precipitation falling as snow: high latitudes in winter."""
    g = c.geo
    cold = 1.0 / (1.0 + np.exp(-(np.abs(g.lat) - 50.0) / 6.0))
    return np.clip(cold * (0.5 + 0.5 * np.asarray(c.winter)), 0.0, 1.0)


def _convective_fraction(c: Context) -> np.ndarray:
    """Share of precipitation that is convective: mostly in the tropics."""
    return 0.25 + 0.45 * _gauss(c.geo.lat, 5.0, 20.0)


CLIMATE: dict[str, Climate] = {
    # ---- ocean: the upper-layer mean comes first, the surface follows it
    "thetao": Climate(_temperature, "add", 0.4, 0.05, (-1.9, 35.0)),
    "so": Climate(_salinity, "add", 0.08, 0.01, (0.0, 42.0)),
    "tos": Climate(_surface_temperature, "add", 0.4, 0.05, (-1.9, 35.0)),
    "sos": Climate(lambda c: c.fields["so"] - 0.05 - 0.25 * c.warm, "add", 0.08, 0.01,
                   (0.0, 42.0)),
    "hmxl": Climate(_mixed_layer, "mul", 0.35, 0.05, (1.0, 6000.0), pattern="mld"),
    "xmxl": Climate(lambda c: _above_floor(c.fields["hmxl"] * (1.3 + 0.5 * c.cold), c),
                    "mul", 0.35, 0.05, (1.0, 6000.0), pattern="mld"),
    "mld_003": Climate(lambda c: c.fields["hmxl"], "mul", 0.35, 0.05, (1.0, 6000.0),
                       pattern="mld"),
    "mlotst": Climate(lambda c: 0.9 * c.fields["hmxl"], "mul", 0.35, 0.05, (1.0, 6000.0),
                      pattern="mld"),
    "hfds": Climate(lambda c: 60.0 * c.geo.coslat - 120.0 * c.geo.abssin * c.winter
                    - 200.0 * c.cold * c.geo.convection, "add", 20.0, 5.0),
    "friver": Climate(lambda c: c.geo.cells.coast * 3e-5 * (1.0 + 1.5 * c.peak(6, 1.5)),
                      "mul", 0.5, 0.1, (0.0, np.inf)),
    "ficeberg": Climate(lambda c: c.geo.cells.coast * 4e-6
                        * (c.geo.greenland + (c.geo.lat < -60.0)), "mul", 0.5, 0.1,
                        (0.0, np.inf)),
    "pr": Climate(_precipitation, "mul", 0.3, 0.1, (0.0, np.inf)),
    "evs": Climate(lambda c: -_evaporation(c), "mul", 0.3, 0.1, (-np.inf, 0.0)),
    # ---- sea ice (also used as the ice cover seen by the ocean and the atmosphere)
    "aice": Climate(_ice_concentration, "unit", 0.5, 0.02, (0.0, 1.0), pattern="ice"),
    "fsitherm": Climate(lambda c: -8e-6 * c.fields["aice"] * c.winter, "mul", 0.4, 0.1),
    "hi": Climate(lambda c: c.fields["aice"] * (0.5 + 2.0 / (1.0 + np.exp(-(c.geo.lat - 74.0)
                                                                          / 3.0)))
                  * (1.0 + 0.3 * c.winter), "mul", 0.4, 0.05, (0.0, np.inf), pattern="ice"),
    "hs": Climate(lambda c: 0.15 * c.fields["hi"] * (1.0 + 0.5 * c.winter)),
    "dvidtd": Climate(lambda c: 3e-8 * c.fields["aice"] * c.cold, "mul", 0.4, 0.1),
    "fresh": Climate(lambda c: 1.5e-5 * c.fields["aice"] * c.warm, "mul", 0.4, 0.1),
    # ---- atmosphere
    "prect": Climate(lambda c: _precipitation(c) / 1e3, "mul", 0.3, 0.1, (0.0, np.inf)),
    "qflx": Climate(_evaporation, "mul", 0.3, 0.1),
    "lhflx": Climate(lambda c: _LATENT_HEAT * c.fields["qflx"], "add", 10.0, 3.0),
    "shflx": Climate(lambda c: 10.0 + 50.0 * c.cold * c.geo.convection
                     + 15.0 * c.geo.cells.land_frac * c.warm, "add", 8.0, 3.0),
    "u10": Climate(lambda c: 5.0 + 5.0 * _gauss(np.abs(c.geo.lat), 50.0, 12.0)
                   * (1.0 + 0.3 * c.winter) + 2.0 * _gauss(c.geo.lat, 15.0, 8.0),
                   "mul", 0.2, 0.05, (0.0, np.inf)),
    "taux": Climate(lambda c: -0.12 * _gauss(np.abs(c.geo.lat), 48.0, 10.0)
                    * (1.0 + 0.4 * c.winter) + 0.06 * _gauss(np.abs(c.geo.lat), 15.0, 8.0),
                    "add", 0.02, 0.005),
    "tauy": Climate(lambda c: 0.02 * np.sin(2.0 * np.radians(c.geo.cells.lon))
                    * _gauss(np.abs(c.geo.lat), 50.0, 15.0), "add", 0.02, 0.005),
    "psl": Climate(lambda c: 101325.0 - 1200.0 * _gauss(np.abs(c.geo.lat), 60.0, 12.0)
                   + 800.0 * _gauss(np.abs(c.geo.lat), 30.0, 10.0)
                   - 1500.0 * c.geo.iceland_low * (1.0 + 0.5 * c.winter)
                   + 1200.0 * c.geo.azores_high, "add", 150.0, 50.0, (8.5e4, 1.1e5)),
    "ts": Climate(lambda c: 273.15 + 28.0 * c.geo.coslat**3 - 1.0
                  - (2.0 + 20.0 * c.geo.cells.land_frac) * c.geo.abssin * c.winter,
                  noise=0.3),
    "landfrac": Climate(lambda c: c.geo.cells.land_frac),
    "icefrac": Climate(lambda c: c.fields["aice"] * c.geo.cells.ocean_frac),
    "ocnfrac": Climate(lambda c: c.geo.cells.ocean_frac - c.fields["icefrac"]),
    # ---- land
    "qrunoff": Climate(lambda c: 5e-6 + 2.5e-5 * c.peak(5.5, 1.5)
                       / (1.0 + np.exp(-(c.geo.lat - 45.0) / 5.0)), "mul", 0.4, 0.1,
                       (0.0, np.inf)),
    "qice_melt": Climate(lambda c: 2e-5 * c.geo.greenland * c.peak(7, 1.2), "mul", 0.4, 0.1,
                         (0.0, np.inf)),
    "qsnomelt": Climate(lambda c: 3e-5 * c.peak(4.5, 1.2)
                        / (1.0 + np.exp(-(c.geo.lat - 40.0) / 5.0)), "mul", 0.4, 0.1,
                        (0.0, np.inf)),
    "eflx_lh_tot": Climate(lambda c: 15.0 + 60.0 * c.warm * c.geo.coslat, "add", 5.0, 2.0),
    "fsh": Climate(lambda c: 10.0 + 50.0 * c.warm - 20.0 * c.cold * c.geo.abssin, "add",
                   5.0, 2.0),
    "tsa": Climate(lambda c: 263.15 + 30.0 * c.geo.coslat**2 - 15.0 * c.geo.greenland
                   - 18.0 * c.geo.abssin * c.winter, "add", 1.5, 0.5, (180.0, 330.0)),
}
"""Canonical fields in dependency order (a background may use fields listed before it)."""

DEPENDS: dict[str, tuple[str, ...]] = {
    "tos": ("thetao",), "sos": ("so",), "xmxl": ("hmxl",), "mld_003": ("hmxl",),
    "mlotst": ("hmxl",), "fsitherm": ("aice",), "hi": ("aice",), "hs": ("hi",),
    "dvidtd": ("aice",), "fresh": ("aice",), "lhflx": ("qflx",), "icefrac": ("aice",),
    "ocnfrac": ("icefrac",), "so": ("sos",), "thetao": ("tos",),
}
"""Fields a canonical field needs computed too (3-D columns need their surface field)."""

SIGNAL_ALIASES: dict[str, tuple[str, ...]] = {"mld_003": ("hmxl",), "mlotst": ("hmxl",)}
"""A field without its own signal in a region takes the first alias's signal there: MOM6's
monthly-mean-like MLD_003 and mlotst carry the POP HMXL signal."""

AT_LEAST: tuple[tuple[str, str], ...] = (("xmxl", "hmxl"),)
"""Cell-wise constraints applied after placement: the first field is >= the second."""

SHARES: dict[str, Callable[[Context], np.ndarray]] = {
    "snow": _snow_fraction,
    "rain": lambda c: 1.0 - _snow_fraction(c),
    "convective": _convective_fraction,
    "large_scale": lambda c: 1.0 - _convective_fraction(c),
}
"""Partitions of one canonical field into several file variables (PRECC + PRECL...)."""


def _deep_temperature(upper: np.ndarray, geo: Geography, z: np.ndarray, top: float
                      ) -> np.ndarray:
    """Below the upper layer: relax to 1.5 degC with a warm Irminger-water core near 450 m."""
    decay = np.exp(-(z[:, None] - top) / 600.0)
    core = 1.5 * _gauss(geo.lat, 58.0, 10.0)[None, :] * _gauss(z, 450.0, 350.0)[:, None]
    return 1.5 + (upper[None, :] - 1.5) * decay + core


def _deep_salinity(upper: np.ndarray, geo: Geography, z: np.ndarray, top: float
                   ) -> np.ndarray:
    """Below the upper layer: relax to 34.9 g/kg, saltier Irminger water near 450 m."""
    decay = np.exp(-(z[:, None] - top) / 500.0)
    core = 0.08 * _gauss(geo.lat, 58.0, 10.0)[None, :] * _gauss(z, 450.0, 350.0)[:, None]
    return 34.9 + (upper[None, :] - 34.9) * decay + core


COLUMNS: dict[str, tuple[str, Callable[..., np.ndarray]]] = {
    "thetao": ("tos", _deep_temperature),
    "so": ("sos", _deep_salinity),
}
"""3-D fields: the surface field whose value the top level takes, and the deep profile."""


# ========================================================================================
# Model specs: one table row per model and flavour
# ========================================================================================
@dataclass(frozen=True)
class FileField:
    """One variable of a model's files.

    Attributes
    ----------
    name, units, long_name
        As CESM writes them.
    source
        Canonical field it carries (``None`` for sums of other file variables).
    scale
        File value = canonical value x scale (unit conversion).
    share
        Partition of the canonical field (:data:`SHARES`), e.g. PRECC = convective x prect.
    parts
        File variables (already computed) whose sum this variable is (SFWF, wfo).
    levels
        A 3-D ocean column (``thetao``/``so`` upper mean, surface and deep profile).
    """

    name: str
    units: str
    long_name: str
    source: str | None = None
    scale: float = 1.0
    share: str | None = None
    parts: tuple[str, ...] = ()
    levels: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """Everything that distinguishes one model's files from another's.

    Attributes
    ----------
    model, stream
        File-name tokens (``<case>.<model>.<stream>.<date>.nc``); ``model`` is also the
        registry's source key.
    layout
        Builds the model's :class:`GridLayout` from the grids.
    time
        Time convention.
    fill_value
        ``_FillValue``/``missing_value`` of masked fields, ``None`` where nothing is masked.
    file_format
        netCDF format (CESM2 wrote 64-bit-offset netCDF3, CESM3 defaults to CDF5).
    source
        Global ``source`` attribute.
    fields
        The variables, in writing order (sums after their parts).
    static_stream
        Stream of a once-per-case grid file (MOM6 ``h.static``), if any.
    """

    model: str
    stream: str
    layout: Callable[[SynthGrids], GridLayout]
    time: TimeAxis
    fill_value: float | None
    file_format: NetcdfFormat
    source: str
    fields: tuple[FileField, ...]
    static_stream: str | None = None


_FLUX = "kg/m^2/s"
_POP_FIELDS = (
    FileField("TEMP", "degC", "Potential Temperature", "thetao", levels=True),
    FileField("SALT", "gram/kilogram", "Salinity", "so", levels=True),
    FileField("SST", "degC", "Surface Potential Temperature", "tos"),
    FileField("SSS", "gram/kilogram", "Sea Surface Salinity", "sos"),
    FileField("HMXL", "centimeter", "Mixed-Layer Depth", "hmxl", scale=100.0),
    FileField("XMXL", "centimeter", "Maximum Mixed-Layer Depth", "xmxl", scale=100.0),
    FileField("SHF", "watt/m^2", "Total Surface Heat Flux, Including SW", "hfds"),
    FileField("ROFF_F", _FLUX, "Runoff Flux from Coupler", "friver"),
    FileField("IOFF_F", _FLUX, "Ice Runoff Flux from Coupler due to Land-Model Snow Capping",
              "ficeberg"),
    FileField("MELT_F", _FLUX, "Melt Flux from Coupler", "fsitherm"),
    FileField("PREC_F", _FLUX, "Precipitation Flux from Cpl (rain+snow)", "pr"),
    FileField("SNOW_F", _FLUX, "Snow Flux from Coupler", "pr", share="snow"),
    FileField("EVAP_F", _FLUX, "Evaporation Flux from Coupler", "evs"),
    FileField("SFWF", _FLUX, "Virtual Salt Flux in FW Flux formulation",
              parts=("PREC_F", "EVAP_F", "ROFF_F", "IOFF_F", "MELT_F")),
)
_MOM6_FLUX = "kg m-2 s-1"
_MOM6_FIELDS = (
    FileField("thetao", "degC", "Sea Water Potential Temperature", "thetao", levels=True),
    FileField("so", "psu", "Sea Water Salinity", "so", levels=True),
    FileField("tos", "degC", "Sea Surface Temperature", "tos"),
    FileField("sos", "psu", "Sea Surface Salinity", "sos"),
    FileField("MLD_003", "m", "Mixed layer depth (delta rho = 0.03)", "mld_003"),
    FileField("mlotst", "m", "Ocean Mixed Layer Thickness Defined by Sigma T", "mlotst"),
    FileField("hfds", "W m-2", "Surface ocean heat flux from SW+LW+latent+sensible+masstransfer"
              "+frazil+seaice_melt_heat", "hfds"),
    FileField("friver", _MOM6_FLUX, "Liquid runoff (rivers) into ocean", "friver"),
    FileField("ficeberg", _MOM6_FLUX, "Frozen runoff (calving) and iceberg melt into ocean",
              "ficeberg"),
    FileField("prlq", _MOM6_FLUX, "Liquid precipitation into ocean", "pr", share="rain"),
    FileField("prsn", _MOM6_FLUX, "Frozen precipitation into ocean", "pr", share="snow"),
    FileField("evs", _MOM6_FLUX, "Evaporation at ocean surface (usually negative)", "evs"),
    FileField("fsitherm", _MOM6_FLUX, "water flux to ocean from sea ice melt(> 0) or form(< 0)",
              "fsitherm"),
    FileField("wfo", _MOM6_FLUX, "Water Flux Into Sea Water",
              parts=("prlq", "prsn", "evs", "friver", "ficeberg", "fsitherm")),
)
_CM_PER_DAY_OF_M_PER_S = 100.0 * 86400.0
_CM_PER_DAY_OF_KG_M2_S = 0.1 * 86400.0  # 1 kg m-2 of water is 1 mm
_CICE_FIELDS = (
    FileField("aice", "1", "ice area  (aggregate)", "aice"),
    FileField("hi", "m", "grid cell mean ice thickness", "hi"),
    FileField("hs", "m", "grid cell mean snow thickness", "hs"),
    FileField("dvidtd", "cm/day", "ice volume tendency dynamics", "dvidtd",
              scale=_CM_PER_DAY_OF_M_PER_S),
    FileField("fresh", "cm/day", "freshwtr flx ice to ocn", "fresh",
              scale=_CM_PER_DAY_OF_KG_M2_S),
)
_CAM_FIELDS = (
    FileField("PRECC", "m/s", "Convective precipitation rate (liq + ice)", "prect",
              share="convective"),
    FileField("PRECL", "m/s", "Large-scale (stable) precipitation rate (liq + ice)", "prect",
              share="large_scale"),
    FileField("QFLX", "kg/m2/s", "Surface water flux", "qflx"),
    FileField("LHFLX", "W/m2", "Surface latent heat flux", "lhflx"),
    FileField("SHFLX", "W/m2", "Surface sensible heat flux", "shflx"),
    FileField("U10", "m/s", "10m wind speed", "u10"),
    FileField("TAUX", "N/m2", "Zonal surface stress", "taux"),
    FileField("TAUY", "N/m2", "Meridional surface stress", "tauy"),
    FileField("PSL", "Pa", "Sea level pressure", "psl"),
    FileField("TS", "K", "Surface temperature (radiative)", "ts"),
    FileField("LANDFRAC", "fraction", "Fraction of sfc area covered by land", "landfrac"),
    FileField("OCNFRAC", "fraction", "Fraction of sfc area covered by ocean", "ocnfrac"),
    FileField("ICEFRAC", "fraction", "Fraction of sfc area covered by sea-ice", "icefrac"),
)
_PRECT = FileField("PRECT", "m/s", "Total (convective and large-scale) precipitation rate "
                   "(liq + ice)", "prect")
_CLM_FIELDS = (
    FileField("QRUNOFF", "mm/s", "total liquid runoff not including correction for land use "
              "change", "qrunoff"),
    FileField("QICE_MELT", "mm/s", "ice melt", "qice_melt"),
    FileField("QSNOMELT", "mm/s", "snow melt rate", "qsnomelt"),
    FileField("EFLX_LH_TOT", "W/m^2", "total latent heat flux [+ to atm]", "eflx_lh_tot"),
    FileField("FSH", "W/m^2", "sensible heat not including correction for land use change and "
              "rain/snow conversion", "fsh"),
    FileField("TSA", "K", "2m air temperature", "tsa"),
)

_CESM2_CICE = ModelSpec(
    model="cice", stream="h", layout=_cice_layout,
    time=TimeAxis(stamp="end", bounds="time_bounds", bounds_dim="d2"), fill_value=1e30,
    file_format="NETCDF3_64BIT_OFFSET", source="Los Alamos Sea Ice Model (CICE) Version 5",
    fields=_CICE_FIELDS,
)
_CESM2_CAM = ModelSpec(
    model="cam", stream="h0", layout=_cam_fv_layout, time=TimeAxis(stamp="end"),
    fill_value=None, file_format="NETCDF3_64BIT_OFFSET", source="CAM", fields=_CAM_FIELDS,
)
_CESM2_CLM = ModelSpec(
    model="clm2", stream="h0", layout=_clm_latlon_layout,
    time=TimeAxis(stamp="end", bounds="time_bounds", bounds_dim="hist_interval"),
    fill_value=1e36, file_format="NETCDF3_64BIT_OFFSET", source="Community Land Model CLM5.0",
    fields=_CLM_FIELDS,
)
_CESM3_FORMAT: NetcdfFormat = "NETCDF3_64BIT_DATA"

MODELS: dict[str, dict[str, ModelSpec]] = {
    "cesm2": {
        "ocn": ModelSpec(
            model="pop", stream="h", layout=_pop_layout,
            time=TimeAxis(epoch_year=0, stamp="end",
                          bounds="time_bound", bounds_dim="d2"),
            fill_value=9.96921e36, file_format="NETCDF3_64BIT_OFFSET",
            source="CCSM POP2, the CCSM Ocean Component", fields=_POP_FIELDS,
        ),
        "ice": _CESM2_CICE,
        "atm": _CESM2_CAM,
        "lnd": _CESM2_CLM,
    },
    "cesm3": {
        "ocn": ModelSpec(
            model="mom6", stream="h.z", layout=_mom6_layout,
            time=TimeAxis(stamp="mid", bounds="time_bnds", bounds_dim="nv"), fill_value=1e20,
            file_format=_CESM3_FORMAT, source="MOM6", fields=_MOM6_FIELDS,
            static_stream="h.static",
        ),
        "ice": dataclasses.replace(
            _CESM2_CICE, time=TimeAxis(stamp="mid", bounds="time_bounds"),
            file_format=_CESM3_FORMAT, source="Los Alamos Sea Ice Model (CICE) Version 6",
        ),
        "atm": dataclasses.replace(
            _CESM2_CAM, stream="h0a", layout=_cam_se_layout, time=TimeAxis(stamp="mid"),
            file_format=_CESM3_FORMAT, fields=(_PRECT, *_CAM_FIELDS),
        ),
        "lnd": dataclasses.replace(
            _CESM2_CLM, stream="h0a", layout=_clm_lndgrid_layout,
            time=dataclasses.replace(_CESM2_CLM.time, stamp="mid"),
            file_format=_CESM3_FORMAT, source="Community Terrestrial Systems Model CTSM",
        ),
    },
}
"""Per flavour and component, the model whose files :func:`write_case` writes."""


# ========================================================================================
# Signals and their placement
# ========================================================================================
def _signal_targets(names: Iterable[str]) -> tuple[dict[tuple[str, str], str], list[str]]:
    """Map ``(canonical field, region) -> signal name``; also return unrecognised names.

    Registry features are looked up directly; other ``<var>[_upper]_<region>`` names of a
    known variable and region are accepted too, so a new region needs no code.
    """
    known = features()
    region_names = sorted(regions(), key=len, reverse=True)
    targets: dict[tuple[str, str], str] = {}
    unknown: list[str] = []
    for name in names:
        if name in known:
            targets[known[name].variable, known[name].region] = name
            continue
        parsed = _parse_signal(name, region_names)
        if parsed is None:
            unknown.append(name)
        else:
            targets[parsed] = name
    return targets, unknown


def _parse_signal(name: str, region_names: list[str]) -> tuple[str, str] | None:
    """``(variable, region)`` of a ``<var>[_upper]_<region>`` name, or ``None``."""
    for region in region_names:
        if not name.endswith("_" + region):
            continue
        stem = name[: -len(region) - 1]
        variable = stem.removesuffix("_upper")
        spec = variables().get(variable)
        if spec is not None and stem.endswith("_upper") == (spec.vertical == "upper"):
            return variable, region
    return None


@dataclass(frozen=True, eq=False)
class Placement:
    """Where and how one signal sets one canonical field (static over the months).

    Attributes
    ----------
    signal, region
        The signal's name and its region.
    to_mean
        Multiplies the signal into the region's target mean in canonical units (1 for means;
        mSv -> flux density for integrals).
    free, free_weight
        Flat indices (and domain weights, m2) of the cells this placement sets.
    fixed, fixed_weight
        Region cells set before by smaller regions; the target corrects for them.
    total_weight
        Domain weight of the whole region.
    pattern
        Smooth pattern on the free cells.
    noise_key
        Seeds the monthly noise of the pattern (shared by fields with the same pattern key).
    """

    signal: str
    region: str
    to_mean: float
    free: np.ndarray
    free_weight: np.ndarray
    fixed: np.ndarray
    fixed_weight: np.ndarray
    total_weight: float
    pattern: np.ndarray
    noise_key: tuple[int, ...]

    def target(self, signal: float, values: np.ndarray) -> float:
        """Mean the free cells need so that the whole region reduces to ``signal``."""
        fixed_sum = float(self.fixed_weight @ values[self.fixed])
        need = signal * self.to_mean * self.total_weight - fixed_sum
        return need / float(self.free_weight.sum())

    def miss(self, excess: float) -> float:
        """Error of the region's reduction (signal units) when the target is off by excess."""
        return excess * float(self.free_weight.sum()) / (self.to_mean * self.total_weight)


def _to_mean(canonical: str, weight: float) -> float:
    """Factor from a signal to the region's mean field value, in canonical units.

    Means are in canonical units already. Integrals are mSv of water: mSv -> m3/s, times the
    water density for mass fluxes (kg m-2 s-1), divided by the region's area.
    """
    spec = variables().get(canonical)
    if spec is None or spec.reduction == "mean":
        return 1.0
    density = {"kg m-2 s-1": registry().water_density, "m s-1": 1.0}.get(spec.units)
    if density is None:
        raise ConfigurationError(
            f"registry variable {canonical!r}: integral of units {spec.units!r} is not a water "
            "flux (expected kg m-2 s-1 or m s-1)"
        )
    return MSV_IN_M3_S * density / weight


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _placements(
    canonical: str, signals: Mapping[str, str], cells: Cells, seed: int
) -> tuple[list[Placement], list[str]]:
    """Placements of one canonical field, smallest region first; also unplaceable signals.

    Parameters
    ----------
    canonical
        The field.
    signals
        Region -> signal name for this field.
    cells
        The grid's flat cells.
    seed
        Seeds the patterns.
    """
    regions_ = regions()
    key = CLIMATE[canonical].pattern or canonical
    found = []
    skipped = []
    for region, signal in signals.items():
        index, weight = cells.region(region, regions_[region].domain)
        if index.size == 0:
            skipped.append(signal)
        else:
            found.append((float(weight.sum()), region, signal, index, weight))
    taken = np.zeros(cells.size, dtype=bool)
    out = []
    for total, region, signal, index, weight in sorted(found, key=lambda item: item[:2]):
        is_free = ~taken[index]
        if not is_free.any():
            skipped.append(signal)
            continue
        free = index[is_free]
        taken[free] = True
        out.append(Placement(
            signal=signal,
            region=region,
            to_mean=_to_mean(canonical, total),
            free=free,
            free_weight=weight[is_free],
            fixed=index[~is_free],
            fixed_weight=weight[~is_free],
            total_weight=total,
            pattern=2.0 * smooth_field(cells.lat[free], cells.lon[free], key + region, seed) - 1.0,
            noise_key=(seed, _crc(key), _crc(region)),
        ))
    return out, skipped


def _month_pattern(placement: Placement, month_offset: int) -> np.ndarray:
    """The placement's pattern plus monthly noise, weighted-zero-mean, max |value| 1."""
    rng = np.random.default_rng([*placement.noise_key, month_offset])
    pattern = placement.pattern + _PATTERN_NOISE * rng.standard_normal(placement.pattern.size)
    pattern = pattern - (placement.free_weight @ pattern) / placement.free_weight.sum()
    peak = np.abs(pattern).max()
    return pattern / peak if peak > 0 else pattern


def _shape(target: float, pattern: np.ndarray, climate: Climate) -> np.ndarray:
    """Field values with the given weighted mean: the target shaped by a zero-mean pattern."""
    amplitude = climate.amplitude
    if climate.form == "add":
        return target + amplitude * pattern
    if climate.form == "unit" and target > 0.5:
        return 1.0 - (1.0 - target) * (1.0 + amplitude * pattern)
    return target * (1.0 + amplitude * pattern)


@dataclass
class Misses:
    """Placements whose target had to be clipped to physical bounds (signal units)."""

    worst: dict[str, float] = field(default_factory=dict)

    def add(self, signal: str, miss: float) -> None:
        self.worst[signal] = max(self.worst.get(signal, 0.0), abs(miss))

    def report(self, case: str) -> None:
        if self.worst:
            detail = ", ".join(f"{name} by up to {miss:.3g}" for name, miss in self.worst.items())
            logger.info(
                "%s: nested/overlapping regions needed values outside physical bounds, so "
                "these signals are not recovered exactly: %s", case, detail,
            )


def _place(values: np.ndarray, placement: Placement, signal: float, climate: Climate,
           month_offset: int, misses: Misses) -> None:
    """Set the placement's free cells so the region reduces to ``signal``."""
    target = placement.target(signal, values)
    clipped = float(np.clip(target, *climate.bounds))
    if clipped != target:
        misses.add(placement.signal, placement.miss(target - clipped))
    values[placement.free] = _shape(clipped, _month_pattern(placement, month_offset), climate)


# ========================================================================================
# One model in one case: static plan, monthly fields
# ========================================================================================
@dataclass(frozen=True, eq=False)
class ModelRun:
    """Everything about one model that does not change from month to month.

    Signals also shape fields the model only uses internally (the ice cover behind CAM's
    ICEFRAC or POP's MELT_F, HMXL behind MOM6's mixed layers), which keeps the components
    consistent; only fields written to the files (``written``) count as placing a signal
    and report misses.
    """

    spec: ModelSpec
    layout: GridLayout
    geo: Geography
    names: tuple[str, ...]
    placements: dict[str, list[Placement]]
    deep: dict[str, np.ndarray]
    upper_weights: np.ndarray | None
    written: frozenset[str]
    placed: frozenset[str]
    seed: int


def _needed(spec: ModelSpec) -> tuple[str, ...]:
    """Canonical fields a model needs, with dependencies, in :data:`CLIMATE` order."""
    wanted = {f.source for f in spec.fields if f.source is not None}
    stack = list(wanted)
    while stack:
        for dep in DEPENDS.get(stack.pop(), ()):
            if dep not in wanted:
                wanted.add(dep)
                stack.append(dep)
    return tuple(name for name in CLIMATE if name in wanted)


def _signals_by_field(names: tuple[str, ...], targets: Mapping[tuple[str, str], str]
                      ) -> dict[str, dict[str, str]]:
    """Per canonical field, region -> signal, aliases filling regions without own signal."""
    out: dict[str, dict[str, str]] = {}
    for name in names:
        own = {region: sig for (var, region), sig in targets.items() if var == name}
        for alias in SIGNAL_ALIASES.get(name, ()):
            for (var, region), sig in targets.items():
                if var == alias:
                    own.setdefault(region, sig)
        if own:
            out[name] = own
    return out


def _upper_weights(layout: GridLayout) -> np.ndarray | None:
    """Thickness (m) of each level inside the registry's upper-ocean layer."""
    if layout.z_top is None or layout.z_bot is None:
        return None
    top, bottom = registry().upper_ocean_m
    return np.clip(np.minimum(layout.z_bot, bottom) - np.maximum(layout.z_top, top), 0.0, None)


def _deep_profiles(layout: GridLayout, geo: Geography, names: tuple[str, ...]
                   ) -> dict[str, np.ndarray]:
    """Static 3-D profiles below the upper layer, from the annual-mean background only,
    so that deep values do not depend on any signal."""
    if layout.z_top is None or layout.z_bot is None:
        return {}
    annual = Context(geo, None)
    for name in names:
        annual.fields[name] = CLIMATE[name].background(annual)
    z = 0.5 * (layout.z_top + layout.z_bot)
    top = registry().upper_ocean_m[1]
    return {name: deep(annual.fields[name], geo, z, top)
            for name, (_, deep) in COLUMNS.items() if name in names}


@lru_cache(maxsize=16)
def _static(spec: ModelSpec, grids: SynthGrids
            ) -> tuple[GridLayout, Geography, tuple[str, ...], dict[str, np.ndarray]]:
    """What depends on the model and grid only, computed once per grid and shared by cases:
    layout, geography, canonical fields and deep ocean profiles (never mutated)."""
    layout = spec.layout(grids)
    geo = Geography(layout.cells)
    names = _needed(spec)
    return layout, geo, names, _deep_profiles(layout, geo, names)


def _model_run(spec: ModelSpec, grids: SynthGrids, targets: Mapping[tuple[str, str], str],
               seed: int) -> ModelRun:
    """Plan one model in one case: the static part plus this case's placements."""
    layout, geo, names, deep = _static(spec, grids)
    written = frozenset(f.source for f in spec.fields if f.source is not None)
    placements: dict[str, list[Placement]] = {}
    placed: set[str] = set()
    for name, by_region in _signals_by_field(names, targets).items():
        plan, skipped = _placements(name, by_region, layout.cells, seed)
        if name in written:
            for signal in skipped:
                logger.debug("%s: signal %s has no cells on this grid", spec.model, signal)
            placed |= {p.signal for p in plan}
        placements[name] = plan
    return ModelRun(
        spec=spec, layout=layout, geo=geo, names=names, placements=placements,
        deep=deep, upper_weights=_upper_weights(layout), written=written,
        placed=frozenset(placed), seed=seed,
    )


def _with_noise(background: np.ndarray, climate: Climate, rng: np.random.Generator
                ) -> np.ndarray:
    """Background plus small month-to-month noise, kept within bounds."""
    values = np.array(background, dtype=float)
    if climate.noise:
        noise = climate.noise * rng.standard_normal(values.shape)
        values = values * (1.0 + noise) if climate.form == "mul" else values + noise
    return np.clip(values, *climate.bounds)


def _canonical_fields(run: ModelRun, month_offset: int, month: int,
                      signals: Mapping[str, np.ndarray], index: int, misses: Misses
                      ) -> Context:
    """All canonical fields of one month: background, noise, then the placed signals."""
    ctx = Context(run.geo, month)
    rng = np.random.default_rng([run.seed, _crc(run.spec.model), month_offset])
    size = run.layout.cells.size
    for name in run.names:
        climate = CLIMATE[name]
        background = np.broadcast_to(climate.background(ctx), (size,))
        values = _with_noise(background, climate, rng)
        field_misses = misses if name in run.written else Misses()
        for placement in run.placements.get(name, ()):
            signal = float(signals[placement.signal][index])
            if np.isfinite(signal):
                _place(values, placement, signal, climate, month_offset, field_misses)
        ctx.fields[name] = values
    for high, low in AT_LEAST:
        if high in ctx.fields and low in ctx.fields:
            ctx.fields[high] = np.maximum(ctx.fields[high], ctx.fields[low])
    return ctx


def _column(run: ModelRun, name: str, ctx: Context) -> np.ndarray:
    """A 3-D column: top level = surface field, linear through the upper layer so that its
    thickness-weighted mean is the upper field, static deep profile below."""
    weights = run.upper_weights
    assert weights is not None and run.layout.z_top is not None and run.layout.z_bot is not None
    surface = ctx.fields[COLUMNS[name][0]]
    upper = ctx.fields[name]
    z = 0.5 * (run.layout.z_top + run.layout.z_bot)
    inside = weights > 0
    depth_below_top = z[inside] - z[0]
    slope = (upper - surface) * weights.sum() / float(weights[inside] @ depth_below_top)
    column = run.deep[name].copy()
    column[inside] = surface[None, :] + slope[None, :] * depth_below_top[:, None]
    column[0] = surface
    return column


def _file_values(run: ModelRun, ctx: Context) -> dict[str, np.ndarray]:
    """File variables of one month in file units and shapes, masked cells filled."""
    layout = run.layout
    raw: dict[str, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for f in run.spec.fields:
        if f.parts:
            value = np.sum([raw[part] for part in f.parts], axis=0)
        elif f.levels:
            value = _column(run, f.source, ctx) * f.scale  # type: ignore[arg-type]
        else:
            share = SHARES[f.share](ctx) if f.share else 1.0
            value = ctx.fields[f.source] * share * f.scale  # type: ignore[index]
        raw[f.name] = value
        out[f.name] = _masked(value, layout, run.spec.fill_value)
    return out


def _masked(value: np.ndarray, layout: GridLayout, fill: float | None) -> np.ndarray:
    """float32 file array: invalid cells (land, below KMT) set to the fill value."""
    out = np.asarray(value, dtype=np.float32)
    if fill is not None:
        valid = layout.valid
        if out.ndim == 2:
            assert layout.kmt is not None
            valid = valid[None, :] & (np.arange(out.shape[0])[:, None] < layout.kmt[None, :])
        out = np.where(valid, out, np.float32(fill))
    return out.reshape(out.shape[:-1] + layout.cells.shape)


# ========================================================================================
# netCDF output
# ========================================================================================
def _template(run: ModelRun, case: str, fields: Iterable[FileField]) -> bytes:
    """Bytes of a file with everything but the records: global attributes, time axis with
    bounds, grid variables and the declared ``fields``, with zero time steps.

    Built once per model (or variable) in memory and copied for every month: netCDF3 moves
    all data already defined on every switch between define and data mode, so declaring a
    file from scratch each month would cost far more than writing its records.
    """
    spec, layout = run.spec, run.layout
    ds = netCDF4.Dataset("template", "w", format=spec.file_format, memory=1 << 16)
    ds.set_fill_off()  # every value is written; pre-filling would write the data twice
    ds.setncatts(_global_attrs(case, spec))
    ds.createDimension("time", None)
    ds.createDimension(spec.time.bounds_dim, 2)
    for name, size in layout.dims:
        ds.createDimension(name, size)
    time = ds.createVariable("time", "f8", ("time",))
    time.setncatts({"long_name": "time", "units": spec.time.units, "calendar": "noleap",
                    "bounds": spec.time.bounds})
    bounds = ds.createVariable(spec.time.bounds, "f8", ("time", spec.time.bounds_dim))
    bounds.setncatts({"long_name": "boundaries for time-averaging interval",
                      "units": spec.time.units})
    for f in fields:
        _define_field(ds, f, run)
    pending = [_define_grid_var(ds, var, layout, spec.fill_value) for var in layout.grid_vars]
    for name, values in pending:
        ds[name][:] = values
    return bytes(ds.close())


def _open_copy(path: Path, template: bytes) -> netCDF4.Dataset:
    """Write the template to ``path`` and open it for appending records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(template)
    ds = netCDF4.Dataset(path, "r+")
    ds.set_fill_off()
    return ds


def _global_attrs(case: str, spec: ModelSpec) -> dict[str, str]:
    return {
        "title": case,
        "case": case,
        "source": spec.source,
        "Conventions": "CF-1.0",
        "history": "synthetic CESM-like output written by esmwatch (synth)",
    }


def _define_grid_var(ds: netCDF4.Dataset, var: GridVar, layout: GridLayout,
                     fill: float | None) -> tuple[str, np.ndarray]:
    """Declare one time-invariant variable; return the values to write once declared.

    ``fill`` variables (CLM area, MOM6 deptho) are masked off the valid cells.
    """
    if np.issubdtype(var.values.dtype, np.integer):
        dtype = "i4"
    else:
        dtype = "f4" if var.values.dtype == np.float32 else "f8"
    if not (var.fill and fill is not None):
        ds.createVariable(var.name, dtype, var.dims).setncatts(dict(var.attrs))
        return var.name, var.values
    out = ds.createVariable(var.name, dtype, var.dims, fill_value=fill)
    out.setncatts({**var.attrs, "missing_value": np.array(fill, dtype=dtype)})
    return var.name, np.where(layout.valid.reshape(var.values.shape), var.values, fill)


def _define_field(ds: netCDF4.Dataset, f: FileField, run: ModelRun) -> None:
    """Declare one data variable with CESM-like attributes."""
    layout, fill = run.layout, run.spec.fill_value
    dims = ("time", *((layout.vertical,) if f.levels else ()), *layout.horizontal)
    var = ds.createVariable(f.name, "f4", dims, fill_value=np.float32(fill) if fill else None)
    attrs: dict[str, object] = {"long_name": f.long_name, "units": f.units,
                                "cell_methods": "time: mean"}
    coordinates = layout.coordinates[1 if f.levels else 0]
    if coordinates:
        attrs["coordinates"] = coordinates
    if fill is not None:
        attrs["missing_value"] = np.float32(fill)
    var.setncatts(attrs)


def _write_static(run: ModelRun, directory: Path, case: str) -> list[Path]:
    """The once-per-case grid file (MOM6 ``h.static``), if the model has one."""
    spec, layout = run.spec, run.layout
    if spec.static_stream is None:
        return []
    path = directory / f"{case}.{spec.model}.{spec.static_stream}.nc"
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format=spec.file_format) as ds:
        ds.setncatts(_global_attrs(case, spec))
        for name, size in layout.dims:
            if name in layout.horizontal:
                ds.createDimension(name, size)
        horizontal = [var for var in layout.grid_vars if set(var.dims) <= set(layout.horizontal)]
        pending = [_define_grid_var(ds, var, layout, spec.fill_value)
                   for var in (*horizontal, *layout.static)]
        for name, values in pending:
            ds[name][:] = values
    return [path]


def _write_time(ds: netCDF4.Dataset, slot: int, run: ModelRun, stamps: tuple[float, ...]
                ) -> None:
    ds["time"][slot] = stamps[0]
    ds[run.spec.time.bounds][slot, :] = stamps[1:]


class _HistorySink:
    """One file per month holding every variable: ``<case>.<model>.<stream>.YYYY-MM.nc``."""

    def __init__(self, run: ModelRun, directory: Path, case: str) -> None:
        self.run, self.directory, self.case = run, directory, case
        self.template = _template(run, case, run.spec.fields)
        self.paths: list[Path] = []

    def write(self, year: int, month: int, stamps: tuple[float, ...],
              values: Mapping[str, np.ndarray]) -> None:
        spec = self.run.spec
        path = self.directory / f"{self.case}.{spec.model}.{spec.stream}.{year:04d}-{month:02d}.nc"
        with _open_copy(path, self.template) as ds:
            _write_time(ds, 0, self.run, stamps)
            for f in spec.fields:
                ds[f.name][0] = values[f.name]
        self.paths.append(path)

    def close(self) -> list[Path]:
        return self.paths


class _TseriesSink:
    """One file per variable for the whole run:
    ``<case>.<model>.<stream>.<VAR>.<YYYYMM>-<YYYYMM>.nc`` with the grid variables.

    Months are buffered and written a block at a time: netCDF4 writes along the unlimited
    time dimension cost far more per call than per byte.
    """

    BLOCK = 60  # months per write; bounds the buffer for 3-D ocean fields

    def __init__(self, run: ModelRun, directory: Path, case: str, span: str) -> None:
        self.run = run
        self.slot = 0
        spec = run.spec
        self.files: dict[str, tuple[Path, netCDF4.Dataset]] = {}
        for f in spec.fields:
            path = directory / f"{case}.{spec.model}.{spec.stream}.{f.name}.{span}.nc"
            self.files[f.name] = (path, _open_copy(path, _template(run, case, (f,))))
        self.stamps: list[tuple[float, ...]] = []
        self.values: dict[str, list[np.ndarray]] = {name: [] for name in self.files}

    def write(self, year: int, month: int, stamps: tuple[float, ...],
              values: Mapping[str, np.ndarray]) -> None:
        self.stamps.append(stamps)
        for name in self.files:
            self.values[name].append(np.asarray(values[name]))
        if len(self.stamps) >= self.BLOCK:
            self._flush()

    def _flush(self) -> None:
        if not self.stamps:
            return
        start, stop = self.slot, self.slot + len(self.stamps)
        stamps = np.asarray(self.stamps)
        for name, (_, ds) in self.files.items():
            ds["time"][start:stop] = stamps[:, 0]
            ds[self.run.spec.time.bounds][start:stop, :] = stamps[:, 1:]
            ds[name][start:stop] = np.stack(self.values[name])
            self.values[name].clear()
        self.slot = stop
        self.stamps.clear()

    def close(self) -> list[Path]:
        self._flush()
        for _, ds in self.files.values():
            ds.close()
        return [path for path, _ in self.files.values()]


# ========================================================================================
# Public entry point
# ========================================================================================
def write_case(
    root: Path,
    case: str,
    signals: xr.Dataset,
    grids: SynthGrids,
    *,
    components: Collection[str] = COMPONENTS,
    layout: Literal["history", "tseries"] = "history",
    seed: int = 0,
) -> list[Path]:
    """Write one synthetic CESM case whose regional reductions reproduce ``signals``.

    Parameters
    ----------
    root
        Archive root; files go to ``root/<case>/<comp>/hist`` (history) or
        ``root/<case>/<comp>/proc/tseries/month_1`` (time series).
    case
        Case name, used in file names and global attributes.
    signals
        Dims ``(time,)``; ``time`` holds consecutive integer month offsets counted from
        January of model year ``attrs["start_year"]`` (default 1), normally ``0..n-1``.
        Variables are named like registry features (``so_upper_labsea``,
        ``qrunoff_greenland``...), in canonical units for means and in mSv for integrals.
        NaN months keep the background; names that cannot be placed are logged at debug level.
    grids
        From :func:`synth.grids.make_grids`; its flavour picks the models.
    components
        Any of ``ocn``, ``ice``, ``atm``, ``lnd``.
    layout
        ``"history"`` (one file per month) or ``"tseries"`` (one file per variable).
    seed
        Seeds the background noise and the placement patterns (one per member).

    Returns
    -------
    list of Path
        Every file written, the MOM6 static file included.
    """
    offsets, start_year = _months(signals)
    models = _models(grids.flavour, components)
    if layout not in ("history", "tseries"):
        raise ConfigurationError(f"unknown layout {layout!r}; expected 'history' or 'tseries'")
    targets, unknown = _signal_targets(str(name) for name in signals.data_vars)
    _check_dims(signals, targets.values())
    values = {name: np.asarray(signals[name].values, dtype=float) for name in targets.values()}
    misses = Misses()
    paths: list[Path] = []
    placed: set[str] = set()
    for component, spec in models:
        run = _model_run(spec, grids, targets, seed)
        placed |= run.placed
        directory = Path(root) / case / component / (
            "hist" if layout == "history" else "proc/tseries/month_1")
        paths += _write_static(run, directory, case)
        paths += _write_model(run, directory, case, layout, offsets, start_year, values, misses)
    for name in [*unknown, *sorted(set(targets.values()) - placed)]:
        logger.debug("%s: signal %s cannot be placed in the %s files written", case, name,
                     grids.flavour)
    misses.report(case)
    logger.info("%s: wrote %d files for %d months", case, len(paths), len(offsets))
    return paths


def _months(signals: xr.Dataset) -> tuple[list[int], int]:
    """Month offsets from the ``time`` coordinate and the start year; validated."""
    if "time" not in signals.dims:
        raise ConfigurationError("signals need a 'time' dimension of month offsets")
    n = signals.sizes["time"]
    raw = signals["time"].values if "time" in signals.coords else np.arange(n)
    offsets = np.asarray(raw)
    if not np.issubdtype(offsets.dtype, np.integer) or (n > 1 and np.any(np.diff(offsets) != 1)):
        raise ConfigurationError("signals 'time' must be consecutive integer month offsets")
    if n and offsets[0] < 0:
        raise ConfigurationError("signals 'time' month offsets must not be negative")
    return [int(k) for k in offsets], int(signals.attrs.get("start_year", 1))


def _check_dims(signals: xr.Dataset, names: Iterable[str]) -> None:
    """Every signal to place is a plain monthly series."""
    for name in names:
        if signals[name].dims != ("time",):
            raise ConfigurationError(
                f"signal {name!r} has dims {signals[name].dims}; expected ('time',): write "
                "one case per member"
            )


def _models(flavour: str, components: Collection[str]) -> list[tuple[str, ModelSpec]]:
    """The model specs to write, in CESM component order."""
    if flavour not in MODELS:
        raise ConfigurationError(f"unknown grid flavour {flavour!r}; expected {sorted(MODELS)}")
    bad = set(components) - set(COMPONENTS)
    if bad:
        raise ConfigurationError(f"unknown components {sorted(bad)}; expected {COMPONENTS}")
    return [(c, MODELS[flavour][c]) for c in COMPONENTS if c in components]


def _write_model(run: ModelRun, directory: Path, case: str, layout: FileLayout,
                 offsets: list[int], start_year: int, signals: Mapping[str, np.ndarray],
                 misses: Misses) -> list[Path]:
    """Write every month of one model through the layout's sink."""
    if not offsets:
        return []
    if layout == "history":
        sink: _HistorySink | _TseriesSink = _HistorySink(run, directory, case)
    else:
        first = _year_month(offsets[0], start_year)
        last = _year_month(offsets[-1], start_year)
        span = f"{first[0]:04d}{first[1]:02d}-{last[0]:04d}{last[1]:02d}"
        sink = _TseriesSink(run, directory, case, span)
    try:
        for index, offset in enumerate(offsets):
            year, month = _year_month(offset, start_year)
            ctx = _canonical_fields(run, offset, month, signals, index, misses)
            sink.write(year, month, run.spec.time.stamps(year, month), _file_values(run, ctx))
    finally:
        paths = sink.close()
    return paths
