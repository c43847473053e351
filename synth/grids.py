"""Synthetic model grids with a crude but recognisable North Atlantic.

Every synthetic history file is written on one of these grids, so the geography here decides
whether each region of ``data/regions.yaml`` has cells: Greenland, Labrador/Quebec, Baffin
Island, Hudson Bay, Iceland, Europe and Scandinavia are drawn as polygons, and the rest of the
world only as well as a plausible global mean needs.

The grids mimic what CESM writes, at toy sizes (docs/design.md, "Synthetic data sizes"):

* ocean and sea ice share one global 2-D latitude/longitude grid (POP ``nlat, nlon`` in CESM2,
  MOM6 ``yh, xh`` in CESM3) whose latitude spacing is finer north of 40N and whose longitude
  spacing is finer in the Atlantic, so the Labrador Sea has enough cells. Depth levels put an
  interface at the bottom of the registry's upper-ocean layer (100 m) and the bathymetry is
  snapped to level bottoms, as POP's ``KMT``/``HT`` are. Columns start at 320E for POP (like
  gx1v7) and at 60E for MOM6, whose ``geolon`` then runs -300..60 as on tripolar grids;
* CAM-FV (CESM2) is a regular grid with pole points and ``gw``; CAM-SE (CESM3) is a
  Fibonacci sphere, Schmidt-stretched towards the Labrador Sea like a regionally refined
  (RRM) mesh so that even the small grid has several columns there, with ``area`` on the unit
  sphere summing to 4 pi;
* CLM shares the CAM-FV grid in CESM2 (``lat, lon``, ocean points masked) and uses its own,
  finer stretched Fibonacci set of land points (``lndgrid``) in CESM3.

All arrays are read-only and :func:`make_grids` is cached, so grids can be shared freely.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np

from ensembles.regions import Domain, region_mask

logger = logging.getLogger(__name__)

EARTH_RADIUS_M = 6.37122e6
"""CESM's ``SHR_CONST_REARTH``: turns unit-sphere areas (CAM ``area``, ``gw``) into m2."""

Flavour = Literal["cesm2", "cesm3"]
Size = Literal["small", "default"]

# ----------------------------------------------------------------------------------------
# Geography: polygons of (lon, lat) vertices in degrees east, listed once.
# A polygon may cross the date line by using longitudes beyond 180.
# ----------------------------------------------------------------------------------------
_LAND: dict[str, tuple[tuple[float, float], ...]] = {
    "greenland": (
        (-73, 78.2), (-66, 80.5), (-58, 82.2), (-40, 83.6), (-22, 83.2), (-12, 81.5),
        (-18, 77), (-19, 74), (-22, 70.5), (-26, 68.5), (-33, 68), (-37, 65.8), (-40, 65),
        (-42, 62.5), (-43.5, 60), (-45, 59.8), (-48, 61), (-50.5, 63.5), (-52, 66),
        (-52.5, 68), (-53, 70), (-55, 71.5), (-56.5, 74), (-58.5, 75.8), (-64, 76.2),
        (-69, 76.6), (-72, 77.5),
    ),
    "north_america": (
        (-166, 68.5), (-157, 71.2), (-141, 69.7), (-128, 70), (-115, 68.8), (-100, 68),
        (-90, 69.5), (-82, 69), (-73, 62.5), (-64.5, 60.3), (-61.5, 57.5), (-59.5, 55),
        (-56, 52.5), (-55.8, 51.6), (-59, 50.2), (-64, 50), (-64.5, 48.5), (-61, 45.5),
        (-66, 43.8), (-70, 41.5), (-74, 40.5), (-76, 35), (-81, 31), (-80.5, 25.5),
        (-82.5, 28), (-85, 30), (-90, 29), (-97, 27.5), (-97.5, 21), (-96, 18.5), (-91, 21),
        (-87, 21.5), (-88, 16), (-83.5, 15), (-83.5, 11), (-77.5, 8.5), (-80, 7.5),
        (-86, 11), (-92, 14.5), (-105, 20), (-114.5, 31.5), (-117, 32.5), (-121, 35),
        (-124, 40.5), (-124.5, 48), (-130, 54.5), (-137, 58.5), (-147, 60.5), (-152, 59),
        (-158, 56.5), (-163, 55), (-158, 58.5), (-162, 60), (-165, 62.5), (-164.5, 65.5),
    ),
    "newfoundland": ((-59.4, 47.6), (-55.5, 51.6), (-53, 49.5), (-52.6, 47.5), (-55, 46.8)),
    "baffin_island": (
        (-61.5, 66.6), (-64.5, 63.5), (-66, 62.3), (-72, 62.6), (-78, 64.5), (-76, 67.5),
        (-82, 69.5), (-89, 73.5), (-80, 73.8), (-76, 72.5), (-68.5, 70.5), (-65, 68.5),
    ),
    "arctic_archipelago": (
        (-125, 71.5), (-118, 77.5), (-105, 79), (-92, 81.5), (-80, 83), (-63, 82.8),
        (-70, 80.5), (-76, 78.5), (-80, 76.5), (-90, 76), (-95, 74.5), (-96, 72),
        (-105, 70), (-115, 70.5),
    ),
    "iceland": ((-24.5, 65.5), (-22.5, 66.4), (-16, 66.5), (-13.5, 65.2), (-18, 63.4),
                (-22.5, 63.8)),
    "great_britain": (
        (-5.5, 50), (1.5, 51.2), (1.7, 52.8), (-0.2, 54), (-2, 56), (-1.8, 57.6),
        (-3.2, 58.6), (-5, 58.6), (-6.2, 56.5), (-5, 55), (-3, 54), (-4.8, 52.5),
        (-4.5, 51.6),
    ),
    "ireland": ((-10, 51.5), (-6, 52), (-6, 55.2), (-8.5, 55.2), (-10, 54)),
    "svalbard": ((11, 78), (16, 80), (27, 80.5), (24, 77.2), (16, 76.5)),
    "afro_eurasia": (
        (-9.5, 43.5), (-1.5, 46), (-4.5, 48.5), (1.5, 50.8), (4.5, 52.5), (8.5, 54),
        (8, 57), (10.5, 57.8), (7, 58), (5, 60), (5, 62), (10, 64), (14, 67.5), (18, 69.8),
        (25, 71.1), (31, 70), (41, 67.5), (44, 68.5), (55, 68.5), (60, 69.8), (68, 69),
        (75, 72.5), (80, 73.5), (87, 75), (100, 76.5), (105, 77.5), (113, 73.6), (130, 71),
        (140, 72.5), (150, 71), (160, 69.7), (170, 70), (180, 69), (190, 66), (180, 62.5),
        (163, 59.5), (160, 54), (143, 59.5), (141, 53), (135, 43), (129, 35), (126, 37.5),
        (121, 31), (119, 25), (110, 21), (106, 10.5), (104, 1.5), (100, 5), (98, 16),
        (92, 21.5), (87, 21.5), (80, 15), (77, 8), (73, 20), (67, 25), (57, 25.5),
        (59, 22), (52, 16.5), (43, 12.5), (51, 11.8), (51, 10), (42, 0), (39, -5),
        (40, -15), (35, -24), (32.5, -29), (27, -34), (20, -35), (18, -32), (12, -17),
        (13, -9), (9, -1), (9.5, 4), (5, 6), (-3, 5), (-8, 4.5), (-13, 8), (-17, 14.5),
        (-16.5, 21), (-13, 27.5), (-9.5, 30.5), (-6, 35.8), (-9.5, 36.8),
    ),
    "south_america": (
        (-77.5, 8.5), (-72, 12), (-62, 10.5), (-51, 4), (-50, 0), (-44, -2.5), (-35, -5.5),
        (-39, -13), (-41, -22), (-48, -26), (-53, -34), (-58, -38.5), (-62, -39),
        (-65, -45), (-68, -50.5), (-68.5, -54.5), (-74.5, -52), (-73.5, -43), (-71.5, -30),
        (-70.5, -18), (-76.5, -13.5), (-81, -5), (-80, 0), (-77, 4),
    ),
    "australia": (
        (114, -22), (114.5, -34), (118, -35), (124, -33.5), (131, -31.5), (137, -35),
        (141, -38), (146, -39), (150, -37), (153.5, -28), (153, -25), (145.5, -15),
        (142.5, -10.8), (141.5, -17), (136, -12), (130, -11.5), (125, -14), (121.5, -19),
    ),
    "antarctica": (
        (-180, -90), (180, -90), (180, -77), (150, -69), (90, -66), (30, -69), (0, -70),
        (-30, -76), (-60, -64), (-75, -72), (-100, -73), (-150, -77), (-180, -77),
    ),
}
"""Land polygons; inland seas are cut out again by :data:`_WATER`."""

_WATER: dict[str, tuple[tuple[float, float], ...]] = {
    "hudson_bay": (
        (-95, 59), (-93, 61.5), (-90, 64), (-87, 66.5), (-81, 68), (-77, 65), (-72, 63.2),
        (-65, 62), (-64.5, 60.8), (-70, 61), (-77, 62), (-78, 59), (-79, 55), (-81, 51.2),
        (-85, 55), (-90, 57),
    ),
    "mediterranean": (
        (-5.5, 35.8), (-1, 37.6), (3.5, 43.3), (9, 44.2), (13, 41), (15.5, 40), (18.5, 40),
        (13, 45.5), (19, 42), (23, 40.5), (27, 41), (36, 36.7), (35, 32), (30, 31.3),
        (20, 30.5), (10.5, 34), (10.5, 37), (0, 35.8),
    ),
    "black_sea": ((28, 41.5), (28.5, 46), (34, 46), (38, 47), (41.5, 42), (35, 41.8)),
    "baltic": (
        (10, 54), (13, 56), (17.5, 57), (18, 60), (17.5, 62.5), (21.5, 65.7), (25.5, 65),
        (21.5, 62.5), (23, 60), (29.5, 60), (22, 57.5), (21, 55), (14, 54),
    ),
}
"""Water polygons inside the land polygons (Hudson Bay and Strait, enclosed seas)."""

_LABSEA_FOCUS = (58.0, -52.0)
"""(lat, lon) the CAM-SE and CLM point sets are refined towards."""


# ----------------------------------------------------------------------------------------
# Grid size table
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridSizes:
    """Sizes of every synthetic grid at one size setting.

    Attributes
    ----------
    ocean_nlon, ocean_nlat
        Ocean/ice grid columns and rows.
    level_edges_m
        Ocean level interfaces, top to bottom, in m; one must sit at 100 m.
    fv_nlat, fv_nlon
        CAM-FV (and CESM2 CLM) grid, pole points included.
    se_ncol
        CAM-SE columns.
    lnd_sphere_points
        Points of the stretched Fibonacci sphere whose land points become CESM3's lndgrid.
    stretch
        Schmidt stretching factor of the point sets (1 = uniform).
    """

    ocean_nlon: int
    ocean_nlat: int
    level_edges_m: tuple[float, ...]
    fv_nlat: int
    fv_nlon: int
    se_ncol: int
    lnd_sphere_points: int
    stretch: float


SIZES: dict[str, GridSizes] = {
    "default": GridSizes(
        ocean_nlon=100,
        ocean_nlat=116,
        level_edges_m=(0, 10, 25, 50, 100, 150, 250, 400, 600, 800, 1000, 1500, 2000, 3000,
                       4000, 5000),
        fv_nlat=56,
        fv_nlon=84,
        se_ncol=1000,
        lnd_sphere_points=4000,
        stretch=2.0,
    ),
    "small": GridSizes(
        ocean_nlon=40,
        ocean_nlat=48,
        level_edges_m=(0, 20, 50, 100, 200, 400, 700, 1000, 2000, 3000, 4500),
        fv_nlat=26,
        fv_nlon=40,
        se_ncol=300,
        lnd_sphere_points=900,
        stretch=2.0,
    ),
}
"""Grid sizes; ``default`` stays within docs/design.md's limits, ``small`` is for fast tests."""

_SHELF_M = (250.0, 450.0)
_SLOPE_M = (1200.0, 1900.0)
_SLOPE_KM = 320.0
_DEEP_M = (3300.0, 4600.0)
_HUDSON_BAY_M = 150.0


# ----------------------------------------------------------------------------------------
# Grid records
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Cells:
    """The horizontal cells of any grid, flattened: the one view the writers place data on.

    Attributes
    ----------
    lat, lon
        Cell-centre coordinates in degrees, exactly as written to the files.
    area_m2
        Cell area in m2.
    ocean_frac, land_frac
        Fraction of each cell on the ocean and the land domain (0/1 on the ocean grid, 0 for
        the ocean on the land grid, fractional on CAM).
    depth_m
        Bathymetry in m where a reader of the files can see it (POP ``HT``, MOM6
        ``deptho``), else ``None`` so that regions fall back to boxes as readers do.
    coast
        Cells where runoff enters the ocean (ocean cells next to land) or coastal land.
    shape
        Horizontal shape of the file arrays the flat cells reshape to.
    """

    lat: np.ndarray
    lon: np.ndarray
    area_m2: np.ndarray
    ocean_frac: np.ndarray
    land_frac: np.ndarray
    depth_m: np.ndarray | None
    coast: np.ndarray
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of cells."""
        return int(self.lat.size)

    def domain_weight(self, domain: Domain) -> np.ndarray:
        """Area (m2) of each cell that belongs to a region's domain: the reduction weight."""
        if domain == "ocean":
            return self.area_m2 * self.ocean_frac
        if domain == "land":
            return self.area_m2 * self.land_frac
        return self.area_m2

    def region(self, name: str, domain: Domain) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices and domain weights (m2) of the cells of region ``name``.

        Cells with no area on the domain are left out: they cannot change a reduction.
        """
        mask, _ = region_mask(name, self.lat, self.lon, self.depth_m)
        weight = self.domain_weight(domain)
        index = np.flatnonzero(mask.ravel() & (weight > 0))
        return index, weight[index]


@dataclass(frozen=True, eq=False)
class OceanGrid:
    """Ocean and sea-ice grid: 2-D (``nlat, nlon``) latitude/longitude and depth levels.

    Attributes
    ----------
    lat, lon
        Cell centres (degrees north, degrees east in 0-360), shape ``(nlat, nlon)``.
    z_top, z_bot
        Level interfaces above and below each level, m, shape ``(nz,)``.
    depth
        Bathymetry (m), snapped to level bottoms as POP's ``HT``; 0 on land.
    mask
        Ocean cells.
    area
        Cell area, m2.
    basin
        POP ``REGION_MASK``-style basin codes (0 land, 8 Labrador Sea, ...).
    lon_origin
        Longitude (0-360) of the first column.
    """

    lat: np.ndarray
    lon: np.ndarray
    z_top: np.ndarray
    z_bot: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    area: np.ndarray
    basin: np.ndarray
    lon_origin: float

    @property
    def shape(self) -> tuple[int, int]:
        """``(nlat, nlon)``."""
        return self.lat.shape  # type: ignore[return-value]

    @property
    def nz(self) -> int:
        """Number of depth levels."""
        return int(self.z_top.size)

    @property
    def z_mid(self) -> np.ndarray:
        """Level centres, m."""
        return 0.5 * (self.z_top + self.z_bot)

    @property
    def dz(self) -> np.ndarray:
        """Level thicknesses, m."""
        return self.z_bot - self.z_top

    @property
    def kmt(self) -> np.ndarray:
        """Number of ocean levels in each column (POP ``KMT``), 0 on land."""
        return np.searchsorted(self.z_bot, self.depth, side="right").astype(np.int32)

    def cells(self, *, with_depth: bool = True, lon: np.ndarray | None = None) -> Cells:
        """Flat cells; ``with_depth=False`` for CICE, whose files carry no bathymetry.

        ``lon`` replaces the longitudes by the representation a model writes (MOM6's
        shifted ``geolon``) so that region masks see exactly what a reader sees.
        """
        ocean = self.mask.ravel().astype(float)
        return Cells(
            lat=self.lat.ravel(),
            lon=(self.lon if lon is None else lon).ravel(),
            area_m2=self.area.ravel(),
            ocean_frac=ocean,
            land_frac=np.zeros_like(ocean),
            depth_m=self.depth.ravel() if with_depth else None,
            coast=_next_to(~self.mask).ravel() & self.mask.ravel(),
            shape=self.shape,
        )


@dataclass(frozen=True, eq=False)
class AtmGrid:
    """CAM grid: spectral-element columns (``se``) or finite-volume lat/lon (``fv``).

    Attributes
    ----------
    kind
        ``"se"`` (CESM3, dim ``ncol``) or ``"fv"`` (CESM2, dims ``lat, lon``).
    lat, lon
        ``(ncol,)`` column centres, or the 1-D FV axes.
    area
        Cell areas on the unit sphere (sum 4 pi): ``(ncol,)`` or ``(nlat, nlon)``.
    landfrac
        Land fraction, same shape as ``area``.
    gw
        FV latitude weights (sum 2), ``None`` for SE.
    """

    kind: Literal["se", "fv"]
    lat: np.ndarray
    lon: np.ndarray
    area: np.ndarray
    landfrac: np.ndarray
    gw: np.ndarray | None = None

    def cells(self) -> Cells:
        """Flat cells with CAM's fractional land/ocean weights."""
        lat, lon = _cell_coordinates(self.kind, self.lat, self.lon)
        land = self.landfrac.ravel()
        return Cells(
            lat=lat,
            lon=lon,
            area_m2=self.area.ravel() * EARTH_RADIUS_M**2,
            ocean_frac=1.0 - land,
            land_frac=land,
            depth_m=None,
            coast=(land > 0) & (land < 1),
            shape=self.area.shape,
        )


@dataclass(frozen=True, eq=False)
class LandGrid:
    """CLM grid: ``lndgrid`` land points (CESM3) or the CAM-FV ``lat, lon`` grid (CESM2).

    Attributes
    ----------
    kind
        ``"lndgrid"`` or ``"latlon"``.
    lat, lon
        ``(n,)`` point coordinates, or the 1-D axes.
    area
        Cell area, km2 (CLM's unit), shape ``(n,)`` or ``(nlat, nlon)``.
    landfrac
        Land fraction of each cell.
    landmask
        1 on cells with land, 0 elsewhere (ocean points of the lat/lon grid).
    """

    kind: Literal["lndgrid", "latlon"]
    lat: np.ndarray
    lon: np.ndarray
    area: np.ndarray
    landfrac: np.ndarray
    landmask: np.ndarray

    def cells(self) -> Cells:
        """Flat cells weighted by land fraction; the ocean domain is empty here."""
        lat, lon = _cell_coordinates("se" if self.kind == "lndgrid" else "fv", self.lat, self.lon)
        land = self.landfrac.ravel()
        return Cells(
            lat=lat,
            lon=lon,
            area_m2=self.area.ravel() * 1e6,
            ocean_frac=np.zeros_like(land),
            land_frac=land,
            depth_m=None,
            coast=(land > 0) & (land < 1),
            shape=self.area.shape,
        )


@dataclass(frozen=True, eq=False)
class SynthGrids:
    """The grids of one model flavour: ocean/ice, atmosphere and land."""

    flavour: str
    ocean: OceanGrid
    atm: AtmGrid
    land: LandGrid


# ----------------------------------------------------------------------------------------
# Public constructor
# ----------------------------------------------------------------------------------------
@cache
def make_grids(
    flavour: Literal["cesm2", "cesm3"], size: Literal["small", "default"] = "default", seed: int = 0
) -> SynthGrids:
    """Build (once per argument set) the synthetic grids of a CESM flavour.

    Parameters
    ----------
    flavour
        ``"cesm2"`` (POP, CAM-FV, CLM on lat/lon) or ``"cesm3"`` (MOM6, CAM-SE, CLM lndgrid).
    size
        ``"default"`` (docs/design.md limits) or ``"small"`` (fast tests).
    seed
        Varies the small-scale bathymetry; the geography is fixed.

    Returns
    -------
    SynthGrids
        Read-only grids, shared between calls with the same arguments.
    """
    if flavour not in ("cesm2", "cesm3"):
        raise ValueError(f"unknown flavour {flavour!r}; expected 'cesm2' or 'cesm3'")
    if size not in SIZES:
        raise ValueError(f"unknown grid size {size!r}; expected one of {sorted(SIZES)}")
    sizes = SIZES[size]
    ocean = _ocean_grid(sizes, lon_origin=320.0 if flavour == "cesm2" else 60.0, seed=seed)
    if flavour == "cesm2":
        atm = _fv_grid(sizes.fv_nlat, sizes.fv_nlon)
        land = _latlon_land_grid(atm)
    else:
        atm = _se_grid(sizes.se_ncol, sizes.stretch)
        land = _lndgrid_land_grid(sizes.lnd_sphere_points, sizes.stretch)
    grids = SynthGrids(flavour=flavour, ocean=ocean, atm=atm, land=land)
    _freeze(grids)
    logger.debug(
        "synthetic %s grids (%s): ocean %s x %d levels, atm %s, land %s",
        flavour, size, ocean.shape, ocean.nz, atm.area.shape, land.area.shape,
    )
    return grids


def _freeze(grids: SynthGrids) -> None:
    """Make every array read-only: the cached grids are shared by all callers."""
    for part in (grids.ocean, grids.atm, grids.land):
        for value in vars(part).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False


# ----------------------------------------------------------------------------------------
# Geography helpers
# ----------------------------------------------------------------------------------------
def is_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Whether points fall on the synthetic land (any longitude convention)."""
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    land = np.zeros(lat.shape, dtype=bool)
    for polygon in _LAND.values():
        land |= _in_polygon(polygon, lat, lon)
    for polygon in _WATER.values():
        land &= ~_in_polygon(polygon, lat, lon)
    return land


def _in_polygon(polygon: tuple[tuple[float, float], ...], lat: np.ndarray, lon: np.ndarray
                ) -> np.ndarray:
    """Even-odd point-in-polygon test on the lon/lat plane, longitudes wrapped to the polygon."""
    vertices = np.asarray(polygon, dtype=float)
    x0 = vertices[:, 0].min()
    x = np.mod(lon - x0, 360.0) + x0
    near = (
        (lat >= vertices[:, 1].min()) & (lat <= vertices[:, 1].max()) & (x <= vertices[:, 0].max())
    )
    inside = np.zeros(lat.shape, dtype=bool)
    px, py = x[near], lat[near]
    hit = np.zeros(px.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        if y1 == y2:
            continue
        crosses = (y1 > py) != (y2 > py)
        x_cross = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        hit ^= crosses & (px < x_cross)
    inside[near] = hit
    return inside


def _land_fraction_boxes(
    lat_edges: np.ndarray, lon_west: np.ndarray, lon_east: np.ndarray, nsub: int
) -> np.ndarray:
    """Land fraction of rectangular cells from ``nsub x nsub`` sample points each.

    ``lat_edges`` has ``nlat + 1`` values; ``lon_west``/``lon_east`` have ``nlon`` values.
    """
    frac = (np.arange(nsub) + 0.5) / nsub
    south, north = lat_edges[:-1], lat_edges[1:]
    width = np.mod(lon_east - lon_west, 360.0)
    width = np.where(width == 0, 360.0, width)
    sub_lat = south[:, None] + (north - south)[:, None] * frac[None, :]  # (nlat, nsub)
    sub_lon = lon_west[:, None] + width[:, None] * frac[None, :]  # (nlon, nsub)
    lat4 = np.broadcast_to(sub_lat[:, None, :, None], (south.size, lon_west.size, nsub, nsub))
    lon4 = np.broadcast_to(sub_lon[None, :, None, :], lat4.shape)
    return is_land(lat4, lon4).mean(axis=(2, 3))


def _land_fraction_points(lat: np.ndarray, lon: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Land fraction of unstructured cells from a 19-point stencil within each cell."""
    radius = np.sqrt(area / np.pi)  # radians on the unit sphere
    offsets = [(0.0, 0.0)]
    for ring, count in ((0.45, 6), (0.85, 12)):
        angles = 2 * np.pi * (np.arange(count) + 0.5 * (ring > 0.5)) / count
        offsets += [(ring * np.cos(a), ring * np.sin(a)) for a in angles]
    north, east = np.asarray(offsets).T
    sample_lat = lat[:, None] + np.degrees(radius[:, None] * north[None, :])
    coslat = np.maximum(np.cos(np.radians(lat)), 0.05)
    sample_lon = lon[:, None] + np.degrees(radius[:, None] * east[None, :]) / coslat[:, None]
    return is_land(np.clip(sample_lat, -90, 90), sample_lon).mean(axis=1)


def _next_to(mask: np.ndarray) -> np.ndarray:
    """Cells with a 4-neighbour in ``mask`` (periodic in the last axis, closed in the first)."""
    out = np.roll(mask, 1, axis=1) | np.roll(mask, -1, axis=1)
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    return out


def _steps_from(mask: np.ndarray, max_steps: int) -> np.ndarray:
    """Grid steps (4-connectivity) from the nearest ``mask`` cell, capped at ``max_steps``."""
    steps = np.full(mask.shape, max_steps, dtype=int)
    reached = mask.copy()
    steps[reached] = 0
    for step in range(1, max_steps):
        grown = _next_to(reached) & ~reached
        steps[grown] = step
        reached |= grown
    return steps


def smooth_field(lat: np.ndarray, lon: np.ndarray, key: str, seed: int) -> np.ndarray:
    """A smooth field in [0, 1] from a few random waves: small-scale variety, reproducibly.

    Parameters
    ----------
    lat, lon
        Coordinates in degrees, any shape.
    key
        Names the field, so different uses draw different waves.
    seed
        Varies the waves reproducibly.
    """
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    phi, lam = np.radians(lat), np.radians(lon)
    out = np.zeros(np.shape(lat))
    for _ in range(3):
        k, m = rng.integers(2, 9, size=2)
        out += np.cos(k * lam + m * phi + rng.uniform(0, 2 * np.pi))
    return (out + 3.0) / 6.0


def _stretched_edges(
    lo: float, hi: float, n: int, density: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``n + 1`` cell edges from ``lo`` to ``hi`` with cell size inversely prop. to ``density``."""
    fine = np.linspace(lo, hi, 8193)
    dens = density(fine)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(fine))])
    return np.interp(np.linspace(0.0, 1.0, n + 1), cdf / cdf[-1], fine)


def _lat_density(lat: np.ndarray) -> np.ndarray:
    """Five times more rows per degree north of 40N than south of it."""
    return 1.0 + 4.0 / (1.0 + np.exp(-(lat - 40.0) / 3.0))


def _lon_density(lon: np.ndarray) -> np.ndarray:
    """Three times more columns per degree over the western North Atlantic (305E)."""
    distance = np.abs(np.mod(lon - 305.0 + 180.0, 360.0) - 180.0)
    return 1.0 + 2.0 * np.exp(-((distance / 35.0) ** 2))


def _cell_coordinates(kind: str, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat cell-centre coordinates for point sets (``se``) or 1-D lat/lon axes (``fv``)."""
    if kind == "se":
        return lat, lon
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    return lat2.ravel(), lon2.ravel()


# ----------------------------------------------------------------------------------------
# Ocean grid
# ----------------------------------------------------------------------------------------
def _ocean_grid(sizes: GridSizes, lon_origin: float, seed: int) -> OceanGrid:
    """The shared ocean/ice grid: stretched lat/lon axes, land mask, levels and bathymetry."""
    lat_edges = _stretched_edges(-79.0, 89.5, sizes.ocean_nlat, _lat_density)
    lon_edges = _stretched_edges(0.0, 360.0, sizes.ocean_nlon, _lon_density)
    first = int(np.searchsorted(lon_edges, lon_origin, side="right")) - 1
    order = np.roll(np.arange(sizes.ocean_nlon), -first)
    west, east = lon_edges[:-1][order], lon_edges[1:][order]
    lat1 = 0.5 * (lat_edges[:-1] + lat_edges[1:])
    lon1 = 0.5 * (west + east)
    lat, lon = np.meshgrid(lat1, lon1, indexing="ij")
    band = np.sin(np.radians(lat_edges[1:])) - np.sin(np.radians(lat_edges[:-1]))
    area = EARTH_RADIUS_M**2 * np.outer(band, np.radians(east - west))
    mask = _land_fraction_boxes(lat_edges, west, east, nsub=4) < 0.5
    edges = np.asarray(sizes.level_edges_m, dtype=float)
    z_top, z_bot = edges[:-1], edges[1:]
    depth = _bathymetry(lat, lon, mask, area, z_bot, seed)
    return OceanGrid(
        lat=lat,
        lon=lon,
        z_top=z_top,
        z_bot=z_bot,
        depth=depth,
        mask=mask,
        area=area,
        basin=_basins(lat, lon, mask),
        lon_origin=float(lon1[0]),
    )


def _bathymetry(
    lat: np.ndarray,
    lon: np.ndarray,
    mask: np.ndarray,
    area: np.ndarray,
    z_bot: np.ndarray,
    seed: int,
) -> np.ndarray:
    """Shelves (< 500 m) next to land, deep basins (> 2000 m) beyond, snapped to level bottoms.

    The distance to land is counted in grid steps times the cell size, so the shelf is one
    cell wide on a coarse grid and the continental slope appears only where cells are small
    enough to resolve it. Hudson Bay is a shallow sea. Every ocean column keeps at least the
    levels of the upper 100 m so that the registry's upper-ocean mean is defined everywhere.
    """
    steps = _steps_from(~mask, max_steps=8)
    distance_km = steps * np.sqrt(area) / 1e3
    wiggle = smooth_field(lat, lon, "bathymetry", seed)
    raw = np.select(
        [steps <= 1, distance_km < _SLOPE_KM],
        [
            _SHELF_M[0] + (_SHELF_M[1] - _SHELF_M[0]) * wiggle,
            _SLOPE_M[0] + (_SLOPE_M[1] - _SLOPE_M[0]) * wiggle,
        ],
        _DEEP_M[0] + (_DEEP_M[1] - _DEEP_M[0]) * wiggle,
    )
    hudson, _ = region_mask("hudson_bay", lat, lon)
    raw = np.where(hudson, _HUDSON_BAY_M, raw)
    levels = np.searchsorted(z_bot, raw, side="right")
    upper_levels = int(np.searchsorted(z_bot, 100.0, side="left")) + 1
    levels = np.clip(levels, upper_levels, z_bot.size)
    return np.where(mask, z_bot[levels - 1], 0.0)


_BASIN_CODES = {"labsea": 8, "nordic_seas": 9, "arctic": 10, "hudson_bay": 11}
"""POP ``REGION_MASK`` codes of the marginal seas drawn from regions.yaml."""


def _basins(lat: np.ndarray, lon: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """POP-style ``REGION_MASK``: 1 Southern, 2 Pacific, 3 Indian, 6 Atlantic, 8 Labrador...."""
    east = np.mod(lon, 360.0)
    atlantic = ((east >= 260.0) | (east <= 20.0)) & (lat > -35.0)
    indian = (east > 20.0) & (east < 120.0) & (lat > -35.0) & (lat < 30.0)
    code = np.select([lat <= -35.0, atlantic, indian], [1, 6, 3], 2)
    for name, value in _BASIN_CODES.items():
        inside, _ = region_mask(name, lat, lon)
        code = np.where(inside, value, code)
    return np.where(mask, code, 0).astype(np.int32)


# ----------------------------------------------------------------------------------------
# Atmosphere and land grids
# ----------------------------------------------------------------------------------------
def _fv_grid(nlat: int, nlon: int) -> AtmGrid:
    """CAM-FV: pole points, half-size polar cells, ``gw`` summing to 2."""
    lat = np.linspace(-90.0, 90.0, nlat)
    lon = np.arange(nlon) * 360.0 / nlon
    lat_edges = np.concatenate([[-90.0], 0.5 * (lat[1:] + lat[:-1]), [90.0]])
    gw = np.diff(np.sin(np.radians(lat_edges)))
    area = np.outer(gw, np.full(nlon, 2 * np.pi / nlon))
    half = 180.0 / nlon
    landfrac = _land_fraction_boxes(lat_edges, lon - half, lon + half, nsub=5)
    return AtmGrid(kind="fv", lat=lat, lon=lon, area=area, landfrac=landfrac, gw=gw)


def _se_grid(ncol: int, stretch: float) -> AtmGrid:
    """CAM-SE-like columns: a stretched Fibonacci sphere with unit-sphere areas."""
    lat, lon, area = _stretched_fibonacci(ncol, stretch)
    landfrac = _land_fraction_points(lat, lon, area)
    return AtmGrid(kind="se", lat=lat, lon=lon, area=area, landfrac=landfrac)


def _latlon_land_grid(atm: AtmGrid) -> LandGrid:
    """CESM2 CLM on the CAM-FV grid: area in km2, ocean points masked by ``landmask``."""
    area_km2 = atm.area * (EARTH_RADIUS_M / 1e3) ** 2
    landfrac = atm.landfrac.copy()
    return LandGrid(
        kind="latlon",
        lat=atm.lat.copy(),
        lon=atm.lon.copy(),
        area=area_km2,
        landfrac=landfrac,
        landmask=(landfrac > 0).astype(np.int32),
    )


def _lndgrid_land_grid(points: int, stretch: float) -> LandGrid:
    """CESM3 CLM ``lndgrid``: the land points of a stretched Fibonacci sphere."""
    lat, lon, area = _stretched_fibonacci(points, stretch)
    landfrac = _land_fraction_points(lat, lon, area)
    keep = landfrac > 0
    return LandGrid(
        kind="lndgrid",
        lat=lat[keep],
        lon=lon[keep],
        area=area[keep] * (EARTH_RADIUS_M / 1e3) ** 2,
        landfrac=landfrac[keep],
        landmask=np.ones(int(keep.sum()), dtype=np.int32),
    )


def _stretched_fibonacci(n: int, stretch: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fibonacci points Schmidt-stretched towards the Labrador Sea, with their areas.

    The uniform Fibonacci sphere gives each point the area 4 pi / n; the Schmidt
    transformation ``tan(t/2) = tan(t'/2) / c`` (colatitude ``t`` about the focus) packs
    points ``c**2`` times denser at the focus and scales each area by its Jacobian. Areas are
    renormalised to sum to exactly 4 pi, as CAM-SE's ``area`` does.

    Returns
    -------
    lat, lon, area
        Degrees north, degrees east (0-360), steradians.
    """
    index = np.arange(n)
    z = 1.0 - (2.0 * index + 1.0) / n
    colat_u = np.arccos(z)  # about the focus, before stretching
    azimuth = np.mod(index * np.pi * (3.0 - np.sqrt(5.0)), 2 * np.pi)
    t_u = np.tan(colat_u / 2.0)
    colat = 2.0 * np.arctan(t_u / stretch)
    jacobian = (1.0 + t_u**2) ** 2 / (stretch**2 * (1.0 + (t_u / stretch) ** 2) ** 2)
    area = 4.0 * np.pi / n * jacobian
    area *= 4.0 * np.pi / area.sum()
    lat, lon = _rotate_from_focus(colat, azimuth, *_LABSEA_FOCUS)
    return lat, lon, area


def _rotate_from_focus(
    colat: np.ndarray, azimuth: np.ndarray, focus_lat: float, focus_lon: float
) -> tuple[np.ndarray, np.ndarray]:
    """Geographic lat/lon of points given by colatitude/azimuth about a focus point."""
    x = np.sin(colat) * np.cos(azimuth)
    y = np.sin(colat) * np.sin(azimuth)
    z = np.cos(colat)
    tilt = np.radians(90.0 - focus_lat)
    x, z = x * np.cos(tilt) + z * np.sin(tilt), -x * np.sin(tilt) + z * np.cos(tilt)
    lat = np.degrees(np.arcsin(np.clip(z, -1.0, 1.0)))
    lon = np.mod(np.degrees(np.arctan2(y, x)) + focus_lon, 360.0)
    return lat, lon
