"""Horizontal and vertical grids of every CESM component, read from the files themselves.

Reductions are always weighted by the model's own cell areas (never unweighted), times the
fraction of the cell that belongs to the region's domain: the ocean mask for POP/MOM6/CICE,
``1 - LANDFRAC`` or ``LANDFRAC`` for CAM, ``landfrac`` for CLM.  A grid is read once per
case and model and reused for every file of that case.

Real archives lack some of these (reduced output lists, time series that did not
post-process the grid variables, regional extracts), so each grid variable has a fallback
chain over the other files of the case (:class:`CaseFiles`), and every link taken is
recorded in :attr:`Grid.choices`, which reaches the features' attrs and the result notes:

- CAM masks: ``LANDFRAC`` -> ``OCNFRAC`` (+ ``ICEFRAC``) -> the land model's ``landfrac``
  matched by lat/lon -> the ocean model's wet mask by nearest neighbour -> the unmasked
  box, said plainly;
- CAM-SE ``area`` without units: steradians whenever every cell is < 4 pi;
- CLM ``landfrac`` -> ``landmask``;
- POP ``KMT``, ``REGION_MASK``, ``TAREA``, ``TLAT``... from another file of the case.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import netCDF4
import numpy as np

from ensembles.errors import InputFileError, UnitError
from ensembles.ncread import read_values
from ensembles.units import conversion

log = logging.getLogger(__name__)

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
    choices: tuple[str, ...] = ()  # fallbacks taken, in words: attrs and result notes
    # lengths (m) of the faces normal velocities cross, x faces then y faces, in the native
    # layout (POP HTE/HTN on T cells; MOM6 dyCu on (yh, xq), dxCv on (yq, xh)); None when the
    # files lack them: section transports of velocities need them (ensembles.transport)
    face_length_m: tuple[np.ndarray, np.ndarray] | None = None

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
    values = _read(nc, name, path)  # first: a missing area is reported by name
    scale, _ = conversion(getattr(nc.variables[name], "units", default_units), "m2")
    return values * scale


def _optional(nc: netCDF4.Dataset, name: str) -> np.ndarray | None:
    if name not in nc.variables:
        return None
    var = nc.variables[name]
    return _first_time(read_values(var), var)


class CaseFiles:
    """Other files of a case that can complete a grid, each opened at most once.

    One object serves a whole batch of files (one case and model), so a fallback that
    reads another file of the case costs one open per batch, not one per file. Files are
    opened only when a link of a chain needs them.
    """

    def __init__(self, paths: Sequence[str] = (), opened: Sequence[netCDF4.Dataset] = ()) -> None:
        self._paths = list(paths)
        self._open: dict[str, netCDF4.Dataset | None] = {nc.filepath(): nc for nc in opened}
        self._owned: list[netCDF4.Dataset] = []
        self.used: set[str] = set()  # files a fallback took values from: the cache key

    def first_with(self, *names: str) -> netCDF4.Dataset | None:
        """The first file of the case that holds every variable in ``names``."""
        for path in [*self._open, *self._paths]:
            nc = self._dataset(path)
            if nc is not None and all(name in nc.variables for name in names):
                self.used.add(path)
                return nc
        return None

    def _dataset(self, path: str) -> netCDF4.Dataset | None:
        if path not in self._open:
            try:
                self._open[path] = netCDF4.Dataset(path)
                self._owned.append(self._open[path])
            except OSError as err:
                log.warning("%s: cannot open to complete a grid: %s", path, err)
                self._open[path] = None
        return self._open[path]

    def close(self) -> None:
        """Close the files this object opened (not those it was given open)."""
        for nc in self._owned:
            nc.close()
        self._owned.clear()


def _same_grid(nc: netCDF4.Dataset, other: netCDF4.Dataset, name: str) -> bool:
    """Whether ``other``'s ``name`` lies on the dims of ``nc`` (a global grid file cannot
    complete a regional extract)."""
    dims = other.variables[name].dimensions[-2:]
    return all(
        d in nc.dimensions and len(nc.dimensions[d]) == len(other.dimensions[d]) for d in dims
    )


def _from_case(
    nc: netCDF4.Dataset, name: str, case: CaseFiles, used: dict[str, str]
) -> np.ndarray | None:
    """``name`` from the file itself, else from another file of the case on the same grid."""
    if name in nc.variables:
        return _optional(nc, name)
    other = case.first_with(name)
    if other is None or not _same_grid(nc, other, name):
        return None
    used[name] = other.filepath().rsplit("/", 1)[-1]
    return _optional(other, name)


def _pop(nc: netCDF4.Dataset, path: str, case: CaseFiles) -> Grid:
    used: dict[str, str] = {}
    names = nc.variables
    complete = {"TLAT", "TLONG", "TAREA"} <= set(names) and (
        "KMT" in names or "REGION_MASK" in names
    )
    # a file with its own grid reads no other file (a rescan then stats nothing more)
    lender = CaseFiles() if complete else case
    values = {
        name: _from_case(nc, name, lender, used)
        for name in ("KMT", "REGION_MASK", "TLAT", "TLONG", "TAREA", "HT", "HTE", "HTN")
    }
    mask_source = values["KMT"] if values["KMT"] is not None else values["REGION_MASK"]
    if mask_source is None:
        raise InputFileError(
            path,
            "POP file has neither KMT nor REGION_MASK, and no other file of its case "
            "(pop.h.once.nc, another history or time-series file) on the same grid has them: "
            "cannot tell ocean cells",
        )
    for name in ("TLAT", "TLONG", "TAREA"):
        if values[name] is None:
            raise InputFileError(
                path, f"grid variable {name!r} is missing here and in the case's other files"
            )
    source = {name: case.first_with(name) if name in used else nc for name in values}
    area_units = getattr(source["TAREA"].variables["TAREA"], "units", "cm^2")
    depth = values["HT"]
    if depth is not None:
        depth = depth * conversion(getattr(source["HT"].variables["HT"], "units", "cm"), "m")[0]
    choices = tuple(
        f"POP grid variable{'s' if len(names) > 1 else ''} {', '.join(names)} from {where}"
        for where, names in _by_file(used).items()
    )
    return Grid(
        model="pop",
        dims=("nlat", "nlon"),
        lat=values["TLAT"],
        lon=values["TLONG"],
        area_m2=values["TAREA"] * conversion(area_units, "m2")[0],
        ocean_fraction=(np.nan_to_num(mask_source) > 0).astype(float),
        depth_m=depth,
        levels=_pop_levels(nc, path),
        choices=choices,
        face_length_m=_face_lengths(values["HTE"], values["HTN"], source, ("HTE", "HTN"), "cm"),
    )


def _face_lengths(
    x_faces: np.ndarray | None,
    y_faces: np.ndarray | None,
    source: dict[str, netCDF4.Dataset | None],
    names: tuple[str, str],
    default_units: str,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Face lengths in metres (x faces, y faces), or None unless the files have both."""
    if x_faces is None or y_faces is None:
        return None
    to_m = [
        conversion(getattr(source[n].variables[n], "units", default_units), "m")[0] for n in names
    ]
    return x_faces * to_m[0], y_faces * to_m[1]


def _by_file(used: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, where in used.items():
        grouped.setdefault(where, []).append(name)
    return grouped


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


def _mom6(nc: netCDF4.Dataset, path: str, case: CaseFiles) -> Grid:
    source = nc if "geolat" in nc.variables else case.first_with("geolat", "geolon")
    if source is None:
        raise InputFileError(
            path,
            "MOM6 history file without geolat/geolon and no static file "
            "(<case>.mom6.h.static.nc or <case>.mom6.static.nc) found for its case",
        )
    spath = source.filepath()
    if "areacello" not in source.variables:
        raise InputFileError(
            path, f"MOM6 cell area areacello is missing from {spath.rsplit('/', 1)[-1]}"
        )
    wet = _optional(source, "wet")
    lengths = {n: (nc if n in nc.variables else source) for n in ("dyCu", "dxCv")}
    return Grid(
        model="mom6",
        dims=("yh", "xh"),
        lat=_read(source, "geolat", spath),
        lon=_read(source, "geolon", spath),
        area_m2=_area_in_m2(source, "areacello", spath, "m2"),
        ocean_fraction=None if wet is None else np.nan_to_num(wet),
        depth_m=_optional(source, "deptho"),
        levels=_mom6_levels(nc, path),
        face_length_m=_face_lengths(
            _optional(lengths["dyCu"], "dyCu"), _optional(lengths["dxCv"], "dxCv"),
            lengths, ("dyCu", "dxCv"), "m",
        ),
    )


def _mom6_levels(nc: netCDF4.Dataset, path: str) -> Levels | None:
    if "z_l" not in nc.variables:
        return None
    if "z_i" not in nc.variables:
        raise InputFileError(path, "MOM6 z-space file has z_l but no interfaces z_i")
    interfaces = _read(nc, "z_i", path)
    return Levels("z_l", interfaces[:-1], interfaces[1:])


def _cice(nc: netCDF4.Dataset, path: str, _: CaseFiles) -> Grid:
    tmask = _optional(nc, "tmask")
    return Grid(
        model="cice",
        dims=("nj", "ni"),
        lat=_read(nc, "TLAT", path),
        lon=_read(nc, "TLON", path),
        area_m2=_area_in_m2(nc, "tarea", path, "m2"),
        ocean_fraction=None if tmask is None else np.nan_to_num(tmask),
    )


def _cam(nc: netCDF4.Dataset, path: str, case: CaseFiles) -> Grid:
    if "ncol" in nc.dimensions:
        dims: tuple[str, ...] = ("ncol",)
        lat, lon = _read(nc, "lat", path), _read(nc, "lon", path)
        area, area_choice = _se_area(nc, path)
    else:
        dims = ("lat", "lon")
        lat1, lon1 = _read(nc, "lat", path), _read(nc, "lon", path)
        gw = _read(nc, "gw", path)
        area1d = gw / gw.sum() * 2.0 * 2.0 * np.pi * EARTH_RADIUS_M**2 / lon1.size
        lat, lon = np.meshgrid(lat1, lon1, indexing="ij")
        area, area_choice = np.broadcast_to(area1d[:, None], lat.shape).copy(), None
    ocean, mask_choice = _cam_ocean_fraction(nc, case, lat, lon)
    choices = tuple(c for c in (area_choice, mask_choice) if c)
    if ocean is None:  # no mask anywhere: the region box itself, land included
        return Grid(
            "cam", dims, lat, lon, area, np.ones_like(area), np.ones_like(area), choices=choices
        )
    return Grid("cam", dims, lat, lon, area, ocean, 1.0 - ocean, choices=choices)


def _se_area(nc: netCDF4.Dataset, path: str) -> tuple[np.ndarray, str | None]:
    """CAM-SE ``area(ncol)``: declared units win; without units, steradians when every
    cell is smaller than the whole sphere (true of global files and regional extracts)."""
    area = _read(nc, "area", path)
    units = getattr(nc.variables["area"], "units", None)
    if units is not None:
        try:  # radians^2, sr: a solid angle on the unit sphere
            return area * conversion(units, "sr")[0] * EARTH_RADIUS_M**2, None
        except UnitError:
            return area * conversion(units, "m2")[0], None
    if np.nanmax(area) < UNIT_SPHERE_AREA:
        return area * EARTH_RADIUS_M**2, "CAM-SE area has no units; every cell < 4 pi: steradians"
    return area, "CAM-SE area has no units and cells >= 4 pi: taken as m2"


def _cam_ocean_fraction(
    nc: netCDF4.Dataset, case: CaseFiles, lat: np.ndarray, lon: np.ndarray
) -> tuple[np.ndarray | None, str | None]:
    """The ocean fraction of each CAM cell from the first link of the chain that exists."""
    landfrac = _optional(nc, "LANDFRAC")
    if landfrac is not None:
        return 1.0 - _fraction(landfrac), None
    other = case.first_with("LANDFRAC")  # time series keep LANDFRAC in its own file
    if other is not None and _same_grid(nc, other, "LANDFRAC"):
        return 1.0 - _fraction(_optional(other, "LANDFRAC")), None
    ocnfrac, icefrac = _optional(nc, "OCNFRAC"), _optional(nc, "ICEFRAC")
    if ocnfrac is not None:
        if icefrac is None:
            return _fraction(
                ocnfrac
            ), "ocean mask from OCNFRAC (no LANDFRAC, no ICEFRAC: ice-covered ocean counts as land)"
        return _fraction(ocnfrac + icefrac), "ocean mask from OCNFRAC + ICEFRAC (no LANDFRAC)"
    clm = case.first_with("landfrac", "lat", "lon")
    if clm is not None:
        land = _matched_by_coordinates(clm, "landfrac", lat, lon)
        if land is not None:
            return (
                1.0 - _fraction(land),
                "ocean mask from the land model's landfrac "
                f"(matched by lat/lon, {clm.filepath().rsplit('/', 1)[-1]}; no LANDFRAC/OCNFRAC)",
            )
    wet = _ocean_wet_mask(case, lat, lon)
    if wet is not None:
        return (
            wet,
            "ocean mask from the ocean model's wet mask by nearest neighbour "
            "(no LANDFRAC, OCNFRAC or land landfrac)",
        )
    return (
        None,
        "NO land/ocean mask (no LANDFRAC, OCNFRAC, land landfrac or ocean grid): "
        "atmosphere features are over the whole region box, land cells included",
    )


def _fraction(values: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(values), 0.0, 1.0)


def _coordinate_keys(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Cell centres as integers of 1e-4 degree, longitudes mod 360: exact keys to match on."""
    return np.stack(
        [np.round(lat.ravel() * 1e4), np.round(np.mod(lon.ravel(), 360.0) * 1e4) % 3600000],
        axis=1,
    ).astype(np.int64)


def _matched_by_coordinates(
    other: netCDF4.Dataset, name: str, lat: np.ndarray, lon: np.ndarray
) -> np.ndarray | None:
    """``name`` of another model on the same cells (any order, or a superset of them), or
    None when some cell has no counterpart."""
    olat, olon = _read(other, "lat", ""), _read(other, "lon", "")
    if olat.ndim == 1 and "lndgrid" not in other.dimensions:
        olat, olon = np.meshgrid(olat, olon, indexing="ij")
    values = _optional(other, name).ravel()
    index = {tuple(k): i for i, k in enumerate(_coordinate_keys(olat, olon).tolist())}
    rows = [index.get(tuple(k)) for k in _coordinate_keys(lat, lon).tolist()]
    if any(r is None for r in rows):
        return None
    return values[np.array(rows)].reshape(lat.shape)


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.deg2rad(lat.ravel()), np.deg2rad(lon.ravel())
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)


def _ocean_wet_mask(case: CaseFiles, lat: np.ndarray, lon: np.ndarray) -> np.ndarray | None:
    """Ocean fraction of each atmosphere cell from the ocean model's wet mask.

    Each ocean-model cell goes to its nearest atmosphere cell, whose ocean fraction is the
    area-weighted wet share of the ocean cells it received (coastal cells come out
    fractional, as LANDFRAC does); an atmosphere cell finer than the ocean grid that
    received none takes the wet value of its nearest ocean cell.
    """
    from scipy.spatial import cKDTree  # ~0.5 s to import; only this fallback needs it

    for mask, olat, olon, area in (
        ("KMT", "TLAT", "TLONG", "TAREA"),
        ("wet", "geolat", "geolon", "areacello"),
    ):
        ocean = case.first_with(mask, olat, olon, area)
        if ocean is None:
            continue
        wet = (np.nan_to_num(_optional(ocean, mask)).ravel() > 0).astype(float)
        weight = np.nan_to_num(_optional(ocean, area)).ravel()
        points = _unit_vectors(_read(ocean, olat, ""), _read(ocean, olon, ""))
        keep = np.isfinite(points).all(axis=1) & (weight > 0)
        wet, weight, points = wet[keep], weight[keep], points[keep]
        cells = _unit_vectors(lat, lon)
        _, owner = cKDTree(cells).query(points)
        total = np.bincount(owner, weights=weight, minlength=len(cells))
        wet_area = np.bincount(owner, weights=weight * wet, minlength=len(cells))
        _, nearest = cKDTree(points).query(cells)
        fraction = np.where(total > 0, wet_area / np.where(total > 0, total, 1.0), wet[nearest])
        return fraction.reshape(lat.shape)
    return None


def _clm(nc: netCDF4.Dataset, path: str, _: CaseFiles) -> Grid:
    if "landfrac" in nc.variables:
        landfrac, choices = _read(nc, "landfrac", path), ()
    elif "landmask" in nc.variables:
        landfrac, choices = (
            _read(nc, "landmask", path),
            ("land fraction from landmask (0/1; no landfrac)",),
        )
    else:
        raise InputFileError(path, "CLM file has neither landfrac nor landmask")
    landfrac = _fraction(landfrac)
    area = np.nan_to_num(_area_in_m2(nc, "area", path, "km^2"))
    lat, lon = _read(nc, "lat", path), _read(nc, "lon", path)
    if "lndgrid" in nc.dimensions:
        return Grid("clm2", ("lndgrid",), lat, lon, area, land_fraction=landfrac, choices=choices)
    lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
    return Grid("clm2", ("lat", "lon"), lat2, lon2, area, land_fraction=landfrac, choices=choices)


_READERS = {"pop": _pop, "mom6": _mom6, "cice": _cice, "cam": _cam, "clm2": _clm}


def read_grid(
    model: str,
    nc: netCDF4.Dataset,
    path: str,
    case: CaseFiles | netCDF4.Dataset | None = None,
) -> Grid:
    """Grid of ``model`` from an open file, completed from the case's other files.

    ``case`` gives the files a fallback may read (the MOM6 static file, CAM ``LANDFRAC``
    time series, the land and ocean grids, POP ``pop.h.once.nc``); a single open file
    is accepted for callers that know which one it is.

    Raises
    ------
    InputFileError
        When the grid variables the model always writes are missing everywhere.
    """
    try:
        reader = _READERS[model]
    except KeyError:
        raise InputFileError(path, f"no grid reader for model {model!r}") from None
    if not isinstance(case, CaseFiles):
        case = CaseFiles(opened=() if case is None else (case,))
    return reader(nc, path, case)
