"""Background climatology of every canonical field, and the rules placement follows.

Every variable the registry lists for a model gets a plausible background climatology with a
seasonal cycle and small noise, so files are complete without any signal. Each field's
:class:`Climate` also says how a placed signal shapes it (form, amplitude, physical bounds,
shared patterns); 3-D ocean fields get a static deep profile below the upper layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ensembles.regions import region_mask
from synth.grids import Cells

Form = Literal["add", "mul", "unit"]


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
