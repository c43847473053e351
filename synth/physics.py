"""A reduced Labrador Sea model that turns planted causes into monthly CESM-like signals.

Why a model and not curves: a detector is only tested honestly when the freeze *emerges* from
the drivers the way it does in CESM — freshwater piles up in the upper ocean, winter
convection can no longer break the stratification, the surface cools to freezing and ice
insulates it, which stops convection for good. Planting the cause in the forcing and letting
this feedback decide *whether and when* a member freezes gives precursors with realistic lags,
members that come close and recover, and symptoms (salinity, mixed layer, ice) that lead the
onset more strongly than any driver does.

The model, per member, monthly, vectorised over members:

* **Drivers** (:data:`PROCESSES`): every registry driver feature is a seasonal climatology plus
  the anomaly of its process's latent series (fast AR(1) weather plus a slow interannual part)
  and feature-own noise. The scenario adds a ramp to the main driver's latent and lets one decoy
  co-vary with it.
* **Interior forcing**: the upper-ocean (0-100 m) box at the convection site receives a
  background freshwater convergence, the anomaly of *each process's freshwater channel times its
  coupling* (the main driver's coupling is the member's ``driver_gain``, every other process's is
  zero: its anomaly is exported by the boundary current and never reaches the interior),
  unobserved internal noise and, in the ``null`` scenario, an unobserved drift.
* **Column** (:func:`run_column`): winter heat loss accumulates a buoyancy loss that deepens the
  mixed layer once it exceeds ``gamma * (S_deep - S)``; a deep mixed layer entrains salty, warm
  deep water. A fresh cap stays shallow, cools to freezing, grows ice, and ice cuts the heat loss:
  the positive feedback that makes the collapsed state persist.
* **Diagnostics** (:func:`diagnose`): state and feedback features in canonical units, consistent
  with the column: ice melt and heat fluxes respond to the collapse, driver features never do,
  so that in the ``null`` scenario no driver carries information.

Everything random is drawn up front into :class:`Noise`, in a fixed order per member from that
member's own generator, so results are byte-identical for a seed, a member's series do not
depend on how many members there are, and :func:`integrate` is a pure function of the driver
series: replacing a decoy's series leaves the interior salinity exactly unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from ensembles.timeaxis import first_run

if TYPE_CHECKING:
    from synth.scenarios import Scenario

logger = logging.getLogger(__name__)

MONTHS = 12
SECONDS_PER_MONTH = 365 * 86400 / MONTHS  # noleap calendar
MSV = 1.0e3  # m3 s-1 of fresh water per mSv

# --- the interior box and constants -------------------------------------------------------
BOX_AREA_M2 = 8.0e11  # convection site + slope, where the column lives
REGION_AREA_M2 = 1.3e12  # ocean area of the `labsea` region (for area-mean heat fluxes)
UPPER_M = 100.0  # the registry's upper layer, 0-100 m
HEAT_DEPTH_M = 50.0  # least depth over which the surface exchanges heat
S_REF = 34.8  # g/kg, reference salinity for freshwater dilution
RHO_CP = 1025.0 * 3990.0  # J m-3 K-1
RHO_ICE_LF = 917.0 * 3.34e5  # J m-3, latent heat of fusion per m3 of ice
ICE_FRESH_FACTOR = 917.0 / 1000.0 * (1.0 - 5.0 / S_REF)  # m of fresh water per m of sea ice
T_FREEZE = -1.8  # degC
T_DEEP = 3.5  # degC, Labrador Sea Water / Irminger water below the mixed layer
LATENT_W_PER_MSV = 1.0e6 * 2.5e6 / REGION_AREA_M2  # W m-2 of latent heat per mSv evaporated
DILUTION = S_REF * SECONDS_PER_MONTH * MSV / (BOX_AREA_M2 * UPPER_M)  # g/kg per mSv-month

# --- seasonal climatologies (January ... December) -----------------------------------------
AIR_TEMPERATURE = (-14.0, -15.0, -12.0, -6.0, 0.0, 4.0, 7.0, 8.0, 5.0, -1.0, -7.0, -13.0)
SHORTWAVE = (15.0, 30.0, 65.0, 105.0, 130.0, 140.0, 130.0, 105.0, 70.0, 40.0, 20.0, 10.0)
SEASONAL_MLD = (80.0, 90.0, 100.0, 70.0, 35.0, 25.0, 20.0, 20.0, 25.0, 35.0, 45.0, 60.0)
BACKGROUND_SHAPE = (0.6, 0.5, 0.5, 0.6, 0.8, 1.1, 1.4, 1.6, 1.5, 1.3, 1.0, 0.8)
SHELF_ICE = (0.24, 0.3, 0.32, 0.28, 0.18, 0.08, 0.03, 0.01, 0.01, 0.03, 0.08, 0.15)
SHELF_ICE_THICKNESS = (0.3, 0.38, 0.42, 0.38, 0.22, 0.06, 0.0, 0.0, 0.0, 0.0, 0.05, 0.18)
SHELF_FRESHER = (0.14, 0.13, 0.12, 0.13, 0.16, 0.2, 0.24, 0.26, 0.24, 0.2, 0.17, 0.15)
SURFACE_FRESHER = (0.01, 0.01, 0.01, 0.02, 0.05, 0.1, 0.14, 0.15, 0.12, 0.07, 0.03, 0.01)
SUMMER_THERMOCLINE = (0.0, 0.0, 0.0, 0.2, 0.8, 1.8, 2.8, 3.0, 2.0, 0.9, 0.3, 0.0)
CONVECTIVE_MONTHS = (10, 11, 0, 1, 2)  # Nov..Mar: the mixed layer deepens with buoyancy loss
SEASON_START = 9  # October: cumulative buoyancy loss restarts
MARCH, APRIL = 2, 3
SUBSTEPS = 4  # heat and ice steps per month
MAX_XMXL_M = 2500.0  # deepest monthly-maximum mixed layer (the basin is ~3500 m deep)


@dataclass(frozen=True)
class ColumnConstants:
    """Tunable constants of the convection column (shared by all members).

    Attributes
    ----------
    max_mld_m
        Depth convection can reach (the deep Labrador Sea convects to ~2000 m).
    stratification_gamma
        Buoyancy loss (W m-2 month) needed per g/kg of ``S_deep - S`` before convection starts.
    buoyancy_scale
        Buoyancy loss (W m-2 month) beyond the threshold that deepens the mixed layer by 1/e.
    lateral_restoring
        Per month; slow exchange with the boundary current that bounds the collapsed state.
    bulk_coefficient
        W m-2 K-1; turbulent plus longwave sensitivity of the ocean heat loss to ``T - T_air``.
    longwave_loss
        W m-2; net longwave loss over open water.
    ice_insulation
        Fraction of the open-water heat loss that sea ice suppresses.
    ice_albedo
        Fraction of the shortwave that ice reflects.
    ice_closing_m
        Ice volume per area over which concentration approaches 1 (``1 - exp(-V/h0)``).
    air_temperature_sd
        K; monthly weather noise in the air temperature (internal, not a driver).
    """

    max_mld_m: float = 2000.0
    stratification_gamma: float = 4000.0
    buoyancy_scale: float = 800.0
    lateral_restoring: float = 1.0 / 40.0
    bulk_coefficient: float = 18.0
    longwave_loss: float = 40.0
    ice_insulation: float = 0.9
    ice_albedo: float = 0.6
    ice_closing_m: float = 0.2
    air_temperature_sd: float = 1.5


COLUMN = ColumnConstants()


# --- member parameters ------------------------------------------------------------------
NOMINAL_PARAMETERS: Mapping[str, float] = MappingProxyType({
    "driver_trend_msv_per_decade": 0.0,
    "driver_gain": 1.0,
    "mixing_efficiency": 0.35,
    "heat_loss_scale": 1.0,
    "background_fw_msv": 9.0,
    "s_deep": 34.9,
    "initial_s_perturbation": 0.0,
})
"""Nominal member parameters: a configuration ~6 mSv of extra interior freshwater from tipping."""


@dataclass(frozen=True)
class MemberParameters:
    """Per-member parameters, each an array of shape ``(members,)``.

    A freeze database varies them between members; a pertlim ensemble shares them. Units are
    in the names so that truth.json is self-describing.

    Attributes
    ----------
    driver_trend_msv_per_decade
        Linear increase of the main driver's freshwater channel (or, in the ``null`` scenario,
        of the unobserved interior drift), in mSv per decade from the start of the run.
    driver_gain
        Fraction of the main driver's freshwater anomaly that reaches the interior.
    mixing_efficiency
        Fraction of the deep-water contrast removed per month of full convection.
    heat_loss_scale
        Multiplier on the bulk heat-loss coefficient (nuisance: a configuration's air-sea flux).
    background_fw_msv
        Annual-mean background freshwater convergence into the interior box.
    s_deep
        g/kg, salinity of the water that convection entrains.
    initial_s_perturbation
        Relative perturbation of the initial salinity (CESM's ``pertlim``).
    """

    driver_trend_msv_per_decade: np.ndarray
    driver_gain: np.ndarray
    mixing_efficiency: np.ndarray
    heat_loss_scale: np.ndarray
    background_fw_msv: np.ndarray
    s_deep: np.ndarray
    initial_s_perturbation: np.ndarray

    @classmethod
    def nominal(cls, n_members: int, **overrides: float | Sequence[float] | np.ndarray
                ) -> MemberParameters:
        """Nominal values for ``n_members`` members, with any field overridden."""
        unknown = set(overrides) - set(NOMINAL_PARAMETERS)
        if unknown:
            raise ValueError(f"unknown member parameters: {sorted(unknown)}")
        values = {**NOMINAL_PARAMETERS, **overrides}
        return cls(**{k: np.broadcast_to(np.asarray(v, float), (n_members,)).copy()
                      for k, v in values.items()})

    @property
    def n_members(self) -> int:
        return len(self.driver_gain)

    def names(self) -> list[str]:
        """Parameter names, in truth.json order."""
        return [f.name for f in fields(self)]

    def with_values(self, **values: float | np.ndarray) -> MemberParameters:
        """A copy with some fields replaced (scalars broadcast to every member)."""
        return replace(self, **{k: np.broadcast_to(np.asarray(v, float), (self.n_members,))
                                .copy() for k, v in values.items()})

    def record(self, member: int) -> dict[str, float]:
        """One member's parameters as plain floats, for truth.json."""
        return {name: float(getattr(self, name)[member]) for name in self.names()}


# --- driver processes as data -------------------------------------------------------------
def _months(value: float | Sequence[float]) -> np.ndarray:
    array = np.broadcast_to(np.asarray(value, float), (MONTHS,))
    return array.copy()


@dataclass(frozen=True)
class DriverFeature:
    """How one registry driver feature is generated from its process's latent series.

    Attributes
    ----------
    name
        Registry feature name.
    clim
        Monthly climatology in canonical units (mSv for integrals).
    amp
        Anomaly per unit of the process latent, per month, canonical units.
    own
        Standard deviation of feature-own white noise, per month.
    loading
        Sign (and strength) with which the latent enters: storms lower ``psl``.
    lag
        Months by which the feature follows the latent (river transit to the shelf).
    fw_weight
        mSv of interior freshwater per unit anomaly when the process is coupled; the sum over a
        process's features is its freshwater channel.
    fw_lag
        Months between the anomaly and its arrival in the interior (imported ice melts later).
    budget
        True for Lab Sea freshwater budget terms: a co-varying decoy's co-varying part is
        routed away from these, so the budget, like the salinity, does not see it.
    bounds
        Physical range; values are clipped (ice fractions, positive runoff).
    """

    name: str
    clim: tuple[float, ...]
    amp: tuple[float, ...]
    own: tuple[float, ...]
    loading: float = 1.0
    lag: int = 0
    fw_weight: float = 0.0
    fw_lag: int = 0
    budget: bool = False
    bounds: tuple[float, float] = (-np.inf, np.inf)

    def climatology(self) -> np.ndarray:
        """The 12 monthly climatological values as an array."""
        return _months(self.clim)


def _feature(name: str, clim: float | Sequence[float], amp: float | Sequence[float],
             own: float | Sequence[float], **kw: object) -> DriverFeature:
    """A :class:`DriverFeature` from scalars or 12-month sequences."""
    return DriverFeature(name, tuple(_months(clim)), tuple(_months(amp)), tuple(_months(own)),
                         **kw)  # type: ignore[arg-type]


def _relative(clim: Sequence[float], fraction: float) -> tuple[float, ...]:
    """Anomaly amplitudes proportional to a positive climatology (runoff varies with its size)."""
    return tuple(fraction * abs(c) for c in clim)


@dataclass(frozen=True)
class DriverProcess:
    """A registry process and the features it drives.

    Attributes
    ----------
    name
        Registry process name.
    features
        The driver features generated from this process's latent.
    slow_weight
        Standard deviation share of the slow (interannual) latent component; the rest is
        monthly weather.
    fast_phi, slow_phi
        Monthly lag-1 autocorrelations of the two components.
    """

    name: str
    features: tuple[DriverFeature, ...]
    slow_weight: float
    fast_phi: float = 0.4
    slow_phi: float = 0.95

    def fw_per_unit_by_month(self) -> np.ndarray:
        """Interior freshwater (mSv) per unit latent in each calendar month, lags applied."""
        return sum((np.roll(np.asarray(f.amp) * f.loading * f.fw_weight, f.lag + f.fw_lag)
                    for f in self.features), np.zeros(MONTHS))

    @property
    def fw_per_unit(self) -> float:
        """Annual-mean interior freshwater (mSv) per unit latent: converts mSv ramps to latent."""
        return float(np.mean(self.fw_per_unit_by_month()))


_GREENLAND_RUNOFF = (0.5, 0.4, 0.4, 0.6, 4.0, 25.0, 55.0, 42.0, 12.0, 3.0, 1.0, 0.6)
_GREENLAND_MELT = (0.0, 0.0, 0.0, 0.0, 1.0, 15.0, 40.0, 30.0, 7.0, 0.5, 0.0, 0.0)
_CALVING = (2.0, 2.0, 2.0, 2.2, 2.6, 3.0, 3.2, 3.2, 3.0, 2.6, 2.3, 2.1)
_GREENLAND_ROUTING = 0.35  # share of Greenland land runoff entering the West Greenland shelf
_NA_RUNOFF = (12.0, 10.0, 11.0, 22.0, 70.0, 65.0, 35.0, 25.0, 25.0, 28.0, 22.0, 15.0)
_NA_SNOWMELT = (2.0, 2.0, 4.0, 20.0, 60.0, 35.0, 5.0, 1.0, 1.0, 2.0, 3.0, 2.0)
_LABRADOR_ROUTING = 0.45  # share reaching the Labrador shelf (the rest goes to Hudson Bay)
_PRECIP = (42.0, 36.0, 32.0, 26.0, 22.0, 22.0, 26.0, 30.0, 34.0, 40.0, 44.0, 44.0)
_EVAP = (60.0, 55.0, 45.0, 30.0, 18.0, 12.0, 10.0, 12.0, 20.0, 35.0, 50.0, 58.0)
_ICE_IMPORT = (14.0, 16.0, 18.0, 15.0, 8.0, 2.0, 0.0, 0.0, 0.0, 1.0, 5.0, 10.0)
IMPORTED_ICE_MELT = 0.8  # fresh water per unit imported ice volume (density and brine)
DAVIS_LIQUID_MSV_PER_GKG = -1.6e3 / S_REF  # 1.6 Sv through Davis Strait: mSv per g/kg anomaly
_DAVIS_FWT = (95, 90, 85, 85, 90, 100, 115, 125, 120, 110, 105, 100)  # mSv into the Lab Sea
_HUDSON_ROUTING = 0.3  # share of North American runoff leaving Hudson Bay through Hudson Strait


def _roll(values: Sequence[float], lag: int) -> tuple[float, ...]:
    return tuple(np.roll(np.asarray(values, float), lag))


PROCESSES: dict[str, DriverProcess] = {p.name: p for p in (
    DriverProcess("greenland_runoff", slow_weight=0.75, features=(
        _feature("tsa_greenland", (244, 243, 245, 250, 258, 265, 268, 266, 259, 252, 247, 245),
                 (0.4, 0.4, 0.4, 0.4, 0.6, 0.9, 1.0, 1.0, 0.7, 0.4, 0.4, 0.4),
                 (2.0, 2.0, 1.8, 1.2, 0.8, 0.5, 0.4, 0.4, 0.6, 1.0, 1.5, 2.0)),
        _feature("qice_melt_greenland", _GREENLAND_MELT, _relative(_GREENLAND_MELT, 0.4),
                 _relative(_GREENLAND_MELT, 0.08), bounds=(0.0, np.inf)),
        _feature("qrunoff_greenland", _GREENLAND_RUNOFF, _relative(_GREENLAND_RUNOFF, 0.35),
                 _relative(_GREENLAND_RUNOFF, 0.08), bounds=(0.0, np.inf)),
        _feature("friver_west_greenland_shelf",
                 tuple(_GREENLAND_ROUTING * v for v in _GREENLAND_RUNOFF),
                 _relative(_GREENLAND_RUNOFF, 0.35 * _GREENLAND_ROUTING),
                 _relative(_GREENLAND_RUNOFF, 0.04 * _GREENLAND_ROUTING),
                 fw_weight=1.0, budget=True, bounds=(0.0, np.inf)),
        _feature("ficeberg_labsea", _CALVING, _relative(_CALVING, 0.2), _relative(_CALVING, 0.05),
                 fw_weight=1.0, budget=True, bounds=(0.0, np.inf)),
    )),
    DriverProcess("continental_runoff", slow_weight=0.45, features=(
        _feature("qsnomelt_north_america_ne", _NA_SNOWMELT, _relative(_NA_SNOWMELT, 0.3),
                 _relative(_NA_SNOWMELT, 0.08), bounds=(0.0, np.inf)),
        _feature("qrunoff_north_america_ne", _NA_RUNOFF, _relative(_NA_RUNOFF, 0.25),
                 _relative(_NA_RUNOFF, 0.06), bounds=(0.0, np.inf)),
        _feature("friver_labrador_shelf", _roll([_LABRADOR_ROUTING * v for v in _NA_RUNOFF], 1),
                 _roll(_relative(_NA_RUNOFF, 0.25 * _LABRADOR_ROUTING), 1),
                 _roll(_relative(_NA_RUNOFF, 0.04 * _LABRADOR_ROUTING), 1), lag=1,
                 fw_weight=1.0, budget=True, bounds=(0.0, np.inf)),
        # the Hudson Bay share, through Hudson Strait months later; carried south by the
        # Labrador Current on the shelf, it does not reach the interior
        _feature("fwt_hudson_strait", _roll([_HUDSON_ROUTING * v for v in _NA_RUNOFF], 3),
                 _roll(_relative(_NA_RUNOFF, 0.25 * _HUDSON_ROUTING), 3),
                 _roll(_relative(_NA_RUNOFF, 0.04 * _HUDSON_ROUTING), 3), lag=3,
                 budget=True, bounds=(0.0, np.inf)),
    )),
    DriverProcess("precipitation", slow_weight=0.35, fast_phi=0.2, features=(
        _feature("prect_labsea", _PRECIP, _relative(_PRECIP, 0.13), _relative(_PRECIP, 0.03),
                 bounds=(0.0, np.inf)),
        _feature("pr_labsea", tuple(0.97 * v for v in _PRECIP), _relative(_PRECIP, 0.13 * 0.97),
                 _relative(_PRECIP, 0.03), fw_weight=1.0, budget=True, bounds=(0.0, np.inf)),
    )),
    DriverProcess("evaporation", slow_weight=0.4, fast_phi=0.3, features=(
        _feature("evs_labsea", tuple(-v for v in _EVAP), _relative(_EVAP, 0.15),
                 _relative(_EVAP, 0.03), loading=-1.0, fw_weight=1.0, budget=True,
                 bounds=(-np.inf, 0.0)),
        _feature("qflx_labsea", tuple(1.01 * v for v in _EVAP), _relative(_EVAP, 0.15 * 1.01),
                 _relative(_EVAP, 0.03), bounds=(0.0, np.inf)),
        _feature("eflx_lh_tot_north_america_ne",
                 (4, 5, 8, 15, 35, 65, 80, 70, 45, 22, 9, 5),
                 (0.5, 0.5, 1.0, 1.0, 1.5, 2.0, 2.5, 2.5, 2.0, 1.5, 1.0, 0.5),
                 (1.0, 1.0, 1.5, 2.0, 3.0, 4.0, 4.0, 4.0, 3.0, 2.0, 1.5, 1.0),
                 bounds=(0.0, np.inf)),
    )),
    DriverProcess("sea_ice_import", slow_weight=0.7, fast_phi=0.5, features=(
        _feature("dvidtd_labsea", _ICE_IMPORT, _relative(_ICE_IMPORT, 0.35),
                 _relative(_ICE_IMPORT, 0.06), fw_weight=IMPORTED_ICE_MELT, fw_lag=1,
                 budget=True, bounds=(0.0, np.inf)),
        _feature("aice_davis_strait",
                 (0.85, 0.9, 0.9, 0.85, 0.7, 0.4, 0.1, 0.02, 0.02, 0.1, 0.4, 0.7),
                 (0.04, 0.03, 0.03, 0.05, 0.09, 0.12, 0.06, 0.01, 0.01, 0.05, 0.1, 0.07),
                 0.01, bounds=(0.0, 0.99)),
        _feature("aice_baffin", (0.95, 0.97, 0.97, 0.96, 0.9, 0.7, 0.35, 0.1, 0.08, 0.3, 0.7, 0.9),
                 (0.015, 0.01, 0.01, 0.015, 0.04, 0.08, 0.1, 0.05, 0.04, 0.08, 0.06, 0.03),
                 0.008, bounds=(0.0, 0.99)),
        _feature("hi_baffin", (1.0, 1.2, 1.35, 1.45, 1.4, 1.0, 0.5, 0.15, 0.1, 0.25, 0.5, 0.8),
                 _relative((1.0, 1.2, 1.35, 1.45, 1.4, 1.0, 0.5, 0.15, 0.1, 0.25, 0.5, 0.8), 0.15),
                 0.03, bounds=(0.0, np.inf)),
    )),
    DriverProcess("arctic_outflow", slow_weight=0.8, features=(
        _feature("fwt_davis_strait", _DAVIS_FWT, 0.06 * -DAVIS_LIQUID_MSV_PER_GKG, 0.5,
                 fw_weight=1.0, budget=True),
        # upstream co-symptoms (registry role: state): Baffin Bay freshens with the outflow
        _feature("so_upper_baffin",
                 tuple(33.4 + d for d in (0.05, 0.08, 0.1, 0.1, 0.05, -0.05, -0.15, -0.2, -0.1,
                                          -0.05, 0.0, 0.03)),
                 0.06, 0.01, loading=-1.0),
        _feature("aice_arctic",
                 (0.93, 0.94, 0.95, 0.95, 0.92, 0.85, 0.72, 0.6, 0.55, 0.7, 0.85, 0.91),
                 (0.01, 0.01, 0.01, 0.01, 0.015, 0.025, 0.04, 0.05, 0.05, 0.04, 0.02, 0.012),
                 0.005, bounds=(0.0, 0.99)),
        _feature("hi_arctic", (1.9, 2.05, 2.2, 2.3, 2.3, 2.1, 1.7, 1.4, 1.35, 1.45, 1.6, 1.75),
                 0.12, 0.02, bounds=(0.0, np.inf)),
    )),
    # subpolar-gyre state (registry role: state): context, never a source
    DriverProcess("upstream_ocean_state", slow_weight=0.85, features=(
        _feature("so_upper_irminger", 34.95, 0.04, 0.008),
        _feature("so_upper_spg", 35.05, 0.03, 0.008),
        _feature("thetao_upper_irminger",
                 (4.8, 4.5, 4.4, 4.5, 5.0, 6.0, 7.2, 8.0, 7.6, 6.8, 6.0, 5.3), 0.3, 0.1),
    )),
    DriverProcess("wind_stress", slow_weight=0.4, fast_phi=0.2, features=(
        _feature("u10_labsea", (11.0, 10.8, 10.0, 9.0, 8.0, 7.5, 7.2, 7.6, 8.5, 9.5, 10.5, 11.0),
                 0.8, 0.3, bounds=(0.0, np.inf)),
        _feature("psl_labsea",
                 tuple(100600.0 + d for d in (-600, -400, -100, 300, 400, 200, 0, -50, -100,
                                              -300, -500, -650)),
                 450.0, 120.0, loading=-1.0),
        _feature("taux_labsea", (-0.12, -0.11, -0.09, -0.06, -0.04, -0.03, -0.03, -0.04, -0.06,
                                 -0.08, -0.1, -0.12), 0.025, 0.008, loading=-1.0),
        _feature("tauy_labsea", (0.06, 0.055, 0.045, 0.03, 0.02, 0.015, 0.015, 0.02, 0.03, 0.04,
                                 0.05, 0.06), 0.02, 0.006),
    )),
    DriverProcess("surface_heat_flux", slow_weight=0.3, features=(
        _feature("fsh_north_america_ne", (-8, -5, 0, 10, 30, 45, 45, 35, 15, 0, -8, -10),
                 3.0, 3.0),
    )),
    DriverProcess("ocean_freshwater_transport", slow_weight=0.6, features=(
        _feature("fwt_cape_farewell", (28, 27, 26, 26, 28, 32, 36, 38, 37, 34, 31, 29), 1.5,
                 0.5, fw_weight=1.0, budget=True),
    )),
)}
"""Every driver process and its features, in the fixed order noise is drawn."""


def driver_feature(name: str) -> tuple[DriverProcess, DriverFeature]:
    """The process and spec of a driver feature, by registry name."""
    for process in PROCESSES.values():
        for feature in process.features:
            if feature.name == name:
                return process, feature
    raise KeyError(f"{name!r} is not a synthetic driver feature")


# --- noise -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Noise:
    """Every random number of a simulation, shape ``(members, months)`` each.

    Attributes
    ----------
    fast, slow
        Per process: unit-variance AR(1) weather and interannual components of the latent.
    own
        Per driver feature: standard normal feature-own noise.
    internal_fw
        Unit-variance AR(1) noise of the interior freshwater budget (eddies; not observed).
    air_temperature
        Unit-variance AR(1) air temperature weather (drives heat loss; not a driver feature).
    diagnostic
        Per state feature: standard normal noise of the regional diagnostics.
    """

    fast: dict[str, np.ndarray]
    slow: dict[str, np.ndarray]
    own: dict[str, np.ndarray]
    internal_fw: np.ndarray
    air_temperature: np.ndarray
    diagnostic: dict[str, np.ndarray]


INTERNAL_FW_PHI = 0.85
AIR_TEMPERATURE_PHI = 0.3
DIAGNOSTIC_NOISE = {  # feature: sd of regional noise (multiplicative for mixed layers)
    "so_upper_labsea": 0.01, "sos_labsea": 0.015, "thetao_upper_labsea": 0.05,
    "tos_labsea": 0.1, "hmxl_labsea_interior": 0.05, "xmxl_labsea_interior": 0.05,
    "aice_labsea_interior": 0.01, "hi_labsea": 0.02,
    "fsitherm_labsea": 0.5, "fresh_labsea": 0.3,
    "hfds_labsea": 4.0, "shflx_labsea": 3.0,
}


def ar1(white: np.ndarray, phi: float) -> np.ndarray:
    """Unit-variance AR(1) along the last axis from standard normal ``white`` (stationary start)."""
    out = np.empty_like(white)
    out[..., 0] = white[..., 0]
    scale = np.sqrt(1.0 - phi * phi)
    for t in range(1, white.shape[-1]):
        out[..., t] = phi * out[..., t - 1] + scale * white[..., t]
    return out


def per_member(rng: np.random.Generator | Sequence[np.random.Generator], n_members: int
               ) -> list[np.random.Generator]:
    """One generator per member: given as a sequence, or spawned from a single generator."""
    if isinstance(rng, np.random.Generator):
        return list(rng.spawn(n_members))
    generators = list(rng)
    if len(generators) != n_members:
        raise ValueError(f"{len(generators)} generators for {n_members} members")
    return generators


ADDED_LATER = frozenset({"fwt_davis_strait", "fwt_hudson_strait", "ocean_freshwater_transport"})
"""Processes and features whose noise is drawn after all the others (gate transports, issue
15), so that adding them changed no earlier member's series."""


def draw_noise(rng: np.random.Generator | Sequence[np.random.Generator], n_members: int,
               n_months: int) -> Noise:
    """Draw every random number, member by member in a fixed order (see module docstring)."""
    generators = per_member(rng, n_members)
    n_streams = 2 * len(PROCESSES) + sum(len(p.features) for p in PROCESSES.values())
    n_streams += 2 + len(DIAGNOSTIC_NOISE)
    white = np.stack([g.standard_normal((n_streams, n_months)) for g in generators], axis=1)
    streams = iter(white)
    fast, slow, own = {}, {}, {}
    for late in (False, True):  # streams added later come last: earlier series stay the same
        for process in PROCESSES.values():
            if (process.name in ADDED_LATER) == late:
                fast[process.name] = ar1(next(streams), process.fast_phi)
                slow[process.name] = ar1(next(streams), process.slow_phi)
            for feature in process.features:
                if (feature.name in ADDED_LATER or process.name in ADDED_LATER) == late:
                    own[feature.name] = next(streams)
        if not late:
            internal = ar1(next(streams), INTERNAL_FW_PHI)
            air = ar1(next(streams), AIR_TEMPERATURE_PHI)
            diagnostic = {name: next(streams) for name in DIAGNOSTIC_NOISE}
    return Noise(fast, slow, own, internal, air, diagnostic)


# --- drivers -----------------------------------------------------------------------------
def month_of(n_months: int) -> np.ndarray:
    """Calendar month index (0 = January) of each time step."""
    return np.arange(n_months) % MONTHS


def ramp(params: MemberParameters, n_months: int) -> np.ndarray:
    """Each member's planted trend (mSv) at each month: zero at the start, linear in time."""
    return params.driver_trend_msv_per_decade[:, None] * (np.arange(n_months) / MONTHS / 10.0)


def _shift(series: np.ndarray, lag: int) -> np.ndarray:
    """Delay along time by ``lag`` months, repeating the first value (no wrap-around)."""
    if lag == 0:
        return series
    return np.concatenate([np.repeat(series[:, :1], lag, axis=1), series[:, :-lag]], axis=1)


def latents(scenario: Scenario, params: MemberParameters, noise: Noise
            ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Latent series per process, for non-budget and for budget features.

    The main driver's latent carries the member's ramp (converted from mSv per decade of
    freshwater channel to latent units). The co-varying decoy's non-budget features follow
    ``rho * main + sqrt(1 - rho**2) * own``; its budget features keep the decoy's own latent,
    because the co-varying part is routed away from the Lab Sea.
    """
    n_months = noise.internal_fw.shape[1]
    own = {}
    for name, process in PROCESSES.items():
        w = process.slow_weight
        own[name] = np.sqrt(1.0 - w * w) * noise.fast[name] + w * noise.slow[name]
    for name in (scenario.main_driver, scenario.secondary_driver):
        if name is not None:
            process = PROCESSES[name]
            own[name] = own[name] + (scenario.ramp_share(name) * ramp(params, n_months)
                                     / process.fw_per_unit)
    general = dict(own)
    decoy = scenario.covarying_decoy
    if decoy is not None and scenario.main_driver is not None:
        rho = scenario.covariance
        general[decoy] = rho * own[scenario.main_driver] + np.sqrt(1.0 - rho * rho) * own[decoy]
    return general, own


def make_drivers(scenario: Scenario, params: MemberParameters, noise: Noise
                 ) -> dict[str, np.ndarray]:
    """Every driver feature's series, ``(members, months)``, canonical units (mSv integrals)."""
    general, budget = latents(scenario, params, noise)
    months = month_of(noise.internal_fw.shape[1])
    drivers = {}
    for name, process in PROCESSES.items():
        for f in process.features:
            latent = _shift((budget if f.budget else general)[name], f.lag)
            value = (f.climatology()[months] + np.asarray(f.amp)[months] * f.loading * latent
                     + np.asarray(f.own)[months] * noise.own[f.name])
            drivers[f.name] = np.clip(value, *f.bounds)
    return drivers


def freshwater_channel(process: DriverProcess, drivers: Mapping[str, np.ndarray]) -> np.ndarray:
    """Interior freshwater anomaly (mSv) that a process would deliver if coupled."""
    total: np.ndarray | float = 0.0
    for f in process.features:
        if f.fw_weight:
            series = drivers[f.name]
            anomaly = series - f.climatology()[month_of(series.shape[1])]
            total = total + f.fw_weight * _shift(anomaly, f.fw_lag)
    return np.asarray(total)


def interior_freshwater(scenario: Scenario, params: MemberParameters,
                        drivers: Mapping[str, np.ndarray], noise: Noise) -> np.ndarray:
    """Freshwater into the interior box (mSv, ``(members, months)``).

    Background convergence + coupled channel anomalies (only the main driver's is non-zero) +
    internal noise + the unobserved drift of the ``null`` scenario.
    """
    n_months = noise.internal_fw.shape[1]
    total = (climatological_freshwater(params, n_months)
             + scenario.internal_noise_msv * noise.internal_fw)
    if scenario.main_driver is None:
        total = total + ramp(params, n_months)
    for name, process in PROCESSES.items():
        coupling = scenario.coupling(name)
        if coupling:
            channel = freshwater_channel(process, drivers)
            if name == scenario.main_driver and scenario.memory_months:
                channel = leaky_integral(channel, scenario.memory_months)
            total = total + coupling * params.driver_gain[:, None] * channel
    return total


def leaky_integral(series: np.ndarray, e_folding_months: float) -> np.ndarray:
    """Unit-gain leaky integral along time: a slow reservoir that remembers for years."""
    keep = np.exp(-1.0 / e_folding_months)
    out = np.empty_like(series)
    out[:, 0] = series[:, 0]
    for t in range(1, series.shape[1]):
        out[:, t] = keep * out[:, t - 1] + (1.0 - keep) * series[:, t]
    return out


DOWNSTREAM_LAG = 6  # months for a Lab Sea anomaly to reach the Irminger Sea


def downstream(features: Mapping[str, np.ndarray], gain: float) -> dict[str, np.ndarray]:
    """Irminger and subpolar-gyre salinity that follow the Lab Sea's (a co-symptom)."""
    if not gain:
        return {}
    lab = features["so_upper_labsea"]
    anomaly = _shift(lab - lab[:, : 5 * MONTHS].mean(axis=1, keepdims=True), DOWNSTREAM_LAG)
    return {"so_upper_irminger": features["so_upper_irminger"] + gain * anomaly,
            "so_upper_spg": features["so_upper_spg"] + 0.5 * gain * anomaly}


# --- the convection column ---------------------------------------------------------------
@dataclass(frozen=True)
class ColumnState:
    """The column's prognostic state at the start of a month, each ``(members,)``."""

    salinity: np.ndarray
    temperature: np.ndarray
    ice_volume: np.ndarray  # m of ice per m2 of the box
    buoyancy_loss: np.ndarray  # W m-2 month, accumulated since October
    march_mld: np.ndarray


@dataclass(frozen=True)
class ColumnRun:
    """Monthly output of :func:`run_column`, each ``(members, months)``, and the final state."""

    salinity: np.ndarray
    temperature: np.ndarray
    ice_volume: np.ndarray
    ice_fraction: np.ndarray
    mld: np.ndarray
    convective: np.ndarray  # bool: convection set the mixed layer this month
    heat_loss: np.ndarray  # W m-2, positive out of the ocean (net, after ice insulation)
    turbulent_loss: np.ndarray  # W m-2, sensible + latent part of it
    ice_freshwater: np.ndarray  # mSv into the ocean from local growth (<0) and melt (>0)
    final: ColumnState = field(repr=False)


def _ice_fraction(volume: np.ndarray) -> np.ndarray:
    return 1.0 - np.exp(-volume / COLUMN.ice_closing_m)


def _mixed_layer(state: ColumnState, buoyancy_loss: np.ndarray, month: int,
                 params: MemberParameters) -> tuple[np.ndarray, np.ndarray]:
    """Mixed-layer depth and whether convection (not the seasonal base) set it."""
    base = np.full_like(state.salinity, SEASONAL_MLD[month])
    if month in CONVECTIVE_MONTHS:
        contrast = np.maximum(params.s_deep - state.salinity, 0.0)
        excess = np.maximum(buoyancy_loss - COLUMN.stratification_gamma * contrast, 0.0)
        deep = COLUMN.max_mld_m * (1.0 - np.exp(-excess / COLUMN.buoyancy_scale))
    elif month == APRIL:
        deep = 0.4 * state.march_mld  # restratification after the convective season
    else:
        deep = np.zeros_like(base)
    return np.maximum(base, deep), deep > base


def _heat_loss(temperature: np.ndarray, ice: np.ndarray, month: int, air: np.ndarray,
               params: MemberParameters) -> tuple[np.ndarray, np.ndarray]:
    """Net and turbulent ocean heat loss (W m-2), both suppressed by ice."""
    cover = _ice_fraction(ice)
    open_water = 1.0 - COLUMN.ice_insulation * cover
    turbulent = COLUMN.bulk_coefficient * params.heat_loss_scale * (temperature - air)
    net = ((turbulent + COLUMN.longwave_loss) * open_water
           - SHORTWAVE[month] * (1.0 - COLUMN.ice_albedo * cover))
    return net, turbulent * open_water


def _thermodynamics(temperature: np.ndarray, ice: np.ndarray, loss: np.ndarray,
                    entrain: np.ndarray, depth: np.ndarray, fraction: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cool/warm and entrain over ``fraction`` of a month; freezing grows ice, warming melts it.

    Returns the temperature, the ice volume and the ice freshwater flux (mSv, averaged over
    the whole month so that sub-steps add up).
    """
    temperature = (temperature - loss * fraction * SECONDS_PER_MONTH / (RHO_CP * depth)
                   + entrain * fraction * (T_DEEP - temperature))
    growth = np.maximum(T_FREEZE - temperature, 0.0) * RHO_CP * depth / RHO_ICE_LF
    melt = np.minimum(ice, np.maximum(temperature - T_FREEZE, 0.0) * RHO_CP * depth / RHO_ICE_LF)
    temperature = temperature + (growth - melt) * RHO_ICE_LF / (RHO_CP * depth)
    fresh = (melt - growth) * ICE_FRESH_FACTOR * BOX_AREA_M2 / SECONDS_PER_MONTH / MSV
    return temperature, ice + growth - melt, fresh


def _step(state: ColumnState, month: int, freshwater: np.ndarray, air: np.ndarray,
          params: MemberParameters) -> tuple[ColumnState, dict[str, np.ndarray]]:
    """Advance the column one month; returns the new state and this month's diagnostics.

    The mixed layer is set once per month from the buoyancy loss accumulated so far; heat,
    ice and salt are stepped in :data:`SUBSTEPS` parts so that new ice insulates the ocean
    within the month instead of letting a whole month of open-water loss turn into ice.
    """
    buoyancy = np.zeros_like(state.salinity) if month == SEASON_START else state.buoyancy_loss
    if month in CONVECTIVE_MONTHS or month == SEASON_START:
        loss, _ = _heat_loss(state.temperature, state.ice_volume, month, air, params)
        buoyancy = buoyancy + np.maximum(loss, 0.0)
    mld, convective = _mixed_layer(state, buoyancy, month, params)
    entrain = params.mixing_efficiency * np.maximum(1.0 - UPPER_M / mld, 0.0)
    depth = np.maximum(mld, HEAT_DEPTH_M)
    temperature, ice, salinity = state.temperature, state.ice_volume, state.salinity
    zero = np.zeros_like(salinity)
    totals = {"heat_loss": zero, "turbulent_loss": zero, "ice_freshwater": zero}
    part = 1.0 / SUBSTEPS
    for _ in range(SUBSTEPS):
        loss, turbulent = _heat_loss(temperature, ice, month, air, params)
        temperature, ice, ice_fw = _thermodynamics(temperature, ice, loss, entrain, depth, part)
        salinity = (salinity - DILUTION * part * (freshwater + ice_fw)
                    + (entrain + COLUMN.lateral_restoring) * part * (params.s_deep - salinity))
        for key, value in (("heat_loss", loss), ("turbulent_loss", turbulent),
                           ("ice_freshwater", ice_fw)):
            totals[key] = totals[key] + part * value
    new = ColumnState(salinity, temperature, ice, buoyancy,
                      mld if month == MARCH else state.march_mld)
    out: dict[str, np.ndarray] = {
        "salinity": salinity, "temperature": temperature, "ice_volume": ice,
        "ice_fraction": _ice_fraction(ice), "mld": mld, "convective": convective, **totals}
    return new, out


def run_column(freshwater: np.ndarray, air_anomaly: np.ndarray, params: MemberParameters,
               initial: ColumnState) -> ColumnRun:
    """Integrate the column from January with monthly forcing ``(members, months)``.

    Parameters
    ----------
    freshwater
        Interior freshwater input, mSv.
    air_anomaly
        Air temperature anomaly, K (added to :data:`AIR_TEMPERATURE`).
    params
        Member parameters.
    initial
        State at the start of the first January (see :func:`spin_up`).
    """
    state = initial
    n_months = freshwater.shape[1]
    records: dict[str, list[np.ndarray]] = {}
    for t in range(n_months):
        month = t % MONTHS
        air = AIR_TEMPERATURE[month] + air_anomaly[:, t]
        state, out = _step(state, month, freshwater[:, t], air, params)
        for key, value in out.items():
            records.setdefault(key, []).append(value)
    stacked = {key: np.stack(values, axis=1) for key, values in records.items()}
    return ColumnRun(**stacked, final=state)


def ramp_shape(scenario: Scenario) -> np.ndarray:
    """Seasonal shape (mean 1) of the freshwater a scenario's ramp adds to the interior.

    Runoff arrives in summer and builds the stratification that winter must break; imported
    ice melts in spring, partly while convection still mixes. The same annual mSv therefore
    matters differently, and the critical forcing is computed with this shape.
    """
    if scenario.main_driver is None:
        return np.ones(MONTHS)
    by_month = sum(scenario.ramp_share(name) * PROCESSES[name].fw_per_unit_by_month()
                   / PROCESSES[name].fw_per_unit
                   for name in (scenario.main_driver, scenario.secondary_driver) if name)
    return by_month / np.mean(by_month)


def climatological_freshwater(params: MemberParameters, n_months: int,
                              extra_msv: np.ndarray | float = 0.0,
                              extra_shape: np.ndarray | None = None) -> np.ndarray:
    """Background freshwater without noise, plus ``extra_msv`` per member (annual mean).

    ``extra_shape`` spreads the extra over the calendar months (mean 1; default flat).
    """
    months = month_of(n_months)
    background = np.asarray(BACKGROUND_SHAPE) / np.mean(BACKGROUND_SHAPE)
    shape = np.ones(MONTHS) if extra_shape is None else np.asarray(extra_shape)
    extra = np.broadcast_to(np.asarray(extra_msv, float), (params.n_members,))
    return (params.background_fw_msv[:, None] * background[months]
            + extra[:, None] * shape[months])


SPIN_UP_YEARS = 40


def spin_up(params: MemberParameters, years: int = SPIN_UP_YEARS) -> ColumnState:
    """Equilibrated January state of each member under the noiseless climatology.

    Starting every run from its own equilibrium keeps the first years free of adjustment, so
    that onsets come from the forcing, not from the initial condition. ``pertlim`` then
    perturbs the salinity relatively, as CESM perturbs the initial temperature.
    """
    n = params.n_members
    start = ColumnState(params.s_deep - 0.05, np.full(n, 3.3), np.zeros(n), np.zeros(n),
                        np.full(n, 1500.0))
    n_months = years * MONTHS
    run = run_column(climatological_freshwater(params, n_months), np.zeros((n, n_months)),
                     params, start)
    return replace(run.final,
                   salinity=run.final.salinity * (1.0 + params.initial_s_perturbation))


def critical_freshwater(params: MemberParameters, shape: np.ndarray | None = None, *,
                        years: int = 25, tolerance: float = 0.05, high: float = 40.0
                        ) -> np.ndarray:
    """Sustained extra interior freshwater (mSv, annual mean) that collapses convection.

    ``shape`` is the extra's seasonal shape (:func:`ramp_shape`); no noise.

    Found by bisection, all members at once. Used to place a freeze database's onsets: a
    member whose ramp reaches this value in year Y tends to freeze around year Y (earlier when
    noise helps), so the design controls both the frozen fraction and the onset spread.
    """
    initial = spin_up(params.with_values(initial_s_perturbation=0.0))
    n_months = years * MONTHS
    low_f = np.zeros(params.n_members)
    high_f = np.full(params.n_members, high)
    while np.max(high_f - low_f) > tolerance:
        middle = 0.5 * (low_f + high_f)
        run = run_column(climatological_freshwater(params, n_months, middle, shape),
                         np.zeros((params.n_members, n_months)), params, initial)
        march = run.mld[:, MARCH::MONTHS][:, -3:]
        collapsed = np.all(march < LABEL_MLD_M, axis=1)
        high_f = np.where(collapsed, middle, high_f)
        low_f = np.where(collapsed, low_f, middle)
    return 0.5 * (low_f + high_f)


# --- diagnostics -------------------------------------------------------------------------
INTERIOR_SHARE = 0.55
"""Share of the ``labsea`` region's ocean area in ``labsea_interior`` (0.46-0.62 on the
synthetic grids); regional ice means are built so that the interior's share never exceeds the
region's mean, which the writers need to place both exactly."""


def _regional_ice(run: ColumnRun, drivers: Mapping[str, np.ndarray], noise: Noise
                  ) -> dict[str, np.ndarray]:
    """Interior and regional ice features.

    The interior is the column's ice. Outside it, the shelves carry imported ice (more when
    the import is above normal) and freeze over with the interior; the regional mean weights
    the two by :data:`INTERIOR_SHARE`.
    """
    months = month_of(run.ice_fraction.shape[1])
    _, spec = driver_feature("dvidtd_labsea")
    anomaly = drivers["dvidtd_labsea"] - spec.climatology()[months]
    shelf_clim = np.asarray(SHELF_ICE)[months]
    shelf = np.clip(shelf_clim + 0.01 * anomaly, 0.5 * shelf_clim, 0.6)
    thickness = np.maximum(np.asarray(SHELF_ICE_THICKNESS)[months] + 0.015 * anomaly, 0.0)
    eps = noise.diagnostic
    interior = np.clip(run.ice_fraction + DIAGNOSTIC_NOISE["aice_labsea_interior"]
                       * eps["aice_labsea_interior"], 0.0, 1.0)
    outside = shelf + (1.0 - shelf) * interior
    volume_outside = thickness + (1.0 - shelf) * run.ice_volume
    hi = (INTERIOR_SHARE * run.ice_volume + (1.0 - INTERIOR_SHARE) * volume_outside
          + DIAGNOSTIC_NOISE["hi_labsea"] * eps["hi_labsea"])
    return {"aice_labsea_interior": interior,
            "aice_labsea": INTERIOR_SHARE * interior + (1.0 - INTERIOR_SHARE) * outside,
            "hi_labsea": np.maximum(hi, 0.0)}


def diagnose(run: ColumnRun, drivers: Mapping[str, np.ndarray], noise: Noise
             ) -> dict[str, np.ndarray]:
    """State and feedback features, canonical units, from the column run and the drivers.

    The regional (``labsea``) means add the shelf to the interior column: shelf water is
    fresher, shelf ice comes from import. Feedbacks respond to the collapse: local ice growth
    and melt dominate ``fsitherm``/``fresh`` and ice suppresses the heat fluxes, latent heat
    included (evaporation, a driver, stays the atmosphere's demand).
    """
    months = month_of(run.salinity.shape[1])
    eps = noise.diagnostic
    cover = run.ice_fraction
    salinity_region = (run.salinity - np.asarray(SHELF_FRESHER)[months]
                       + DIAGNOSTIC_NOISE["so_upper_labsea"] * eps["so_upper_labsea"])
    # the column's temperature is the mixed layer's (the surface); in summer the 0-100 m mean
    # is cooler by the seasonal thermocline
    upper = (run.temperature - np.asarray(SUMMER_THERMOCLINE)[months] * (1.0 - cover)
             + DIAGNOSTIC_NOISE["thetao_upper_labsea"] * eps["thetao_upper_labsea"])
    mld = run.mld * (1.0 + DIAGNOSTIC_NOISE["hmxl_labsea_interior"] * eps["hmxl_labsea_interior"])
    peak = np.where(run.convective, 1.3, 1.15)  # monthly maximum over monthly mean
    xmld = np.clip(run.mld * peak * (1.0 + DIAGNOSTIC_NOISE["xmxl_labsea_interior"]
                                     * eps["xmxl_labsea_interior"]), mld, MAX_XMXL_M)
    imported_melt = IMPORTED_ICE_MELT * _shift(drivers["dvidtd_labsea"], 1)
    fsitherm = run.ice_freshwater + imported_melt
    # evaporation features stay the atmosphere's demand (drivers must not carry the collapse);
    # the latent heat flux is what ice lets through
    latent = (-drivers["evs_labsea"] * LATENT_W_PER_MSV * (1.0 - COLUMN.ice_insulation * cover))
    features = {
        "so_upper_labsea_interior": run.salinity,
        "so_upper_labsea": salinity_region,
        "sos_labsea": (salinity_region - np.asarray(SURFACE_FRESHER)[months]
                       + DIAGNOSTIC_NOISE["sos_labsea"] * eps["sos_labsea"]),
        "thetao_upper_labsea": np.maximum(upper, T_FREEZE),
        "tos_labsea": np.maximum(run.temperature + DIAGNOSTIC_NOISE["tos_labsea"]
                                 * eps["tos_labsea"], T_FREEZE),
        "hmxl_labsea_interior": mld,
        "mld_003_labsea_interior": mld,
        "mlotst_labsea_interior": mld,
        "xmxl_labsea_interior": xmld,
        **_regional_ice(run, drivers, noise),
        "fsitherm_labsea": fsitherm + DIAGNOSTIC_NOISE["fsitherm_labsea"] * eps["fsitherm_labsea"],
        "fresh_labsea": 0.97 * fsitherm + DIAGNOSTIC_NOISE["fresh_labsea"] * eps["fresh_labsea"],
        "hfds_labsea": -run.heat_loss + DIAGNOSTIC_NOISE["hfds_labsea"] * eps["hfds_labsea"],
        "lhflx_labsea": latent,
        "shflx_labsea": (run.turbulent_loss - latent
                         + DIAGNOSTIC_NOISE["shflx_labsea"] * eps["shflx_labsea"]),
    }
    return features


# --- freeze truth ------------------------------------------------------------------------
LABEL_MLD_M = 300.0  # detectors.labels.LabelRule default for hmxl/mld_003/mlotst
LABEL_ICE = 0.5  # JFM mean ice fraction
LABEL_WINTERS = 3  # consecutive frozen winters


def frozen_winters(mld: np.ndarray, ice: np.ndarray) -> np.ndarray:
    """Per member and year: March mixed layer shallow and JFM ice above the threshold."""
    years = mld.shape[1] // MONTHS
    march = mld[:, MARCH : years * MONTHS : MONTHS]
    jfm = ice[:, : years * MONTHS].reshape(ice.shape[0], years, MONTHS)[:, :, :3].mean(axis=2)
    return (march < LABEL_MLD_M) & (jfm > LABEL_ICE)


def onset_years(mld: np.ndarray, ice: np.ndarray, consecutive: int = LABEL_WINTERS
                ) -> np.ndarray:
    """Index of the first winter of ``consecutive`` frozen winters (-1: never froze).

    Uses the same run rule as ``detectors.labels``, so truth.json and the detectors' labels
    agree on clean series.
    """
    return first_run(frozen_winters(mld, ice), consecutive)


# --- one call ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Simulation:
    """Everything one simulation produced: inputs kept so that experiments can rerun parts."""

    scenario: Scenario
    params: MemberParameters
    noise: Noise
    drivers: dict[str, np.ndarray]
    initial: ColumnState
    column: ColumnRun
    features: dict[str, np.ndarray]
    onset_index: np.ndarray  # first frozen winter (years since start), -1 if none

    @property
    def froze(self) -> np.ndarray:
        return self.onset_index >= 0


def integrate(scenario: Scenario, params: MemberParameters, drivers: Mapping[str, np.ndarray],
              noise: Noise, initial: ColumnState) -> ColumnRun:
    """The column's response to a set of driver series: a pure function of its arguments."""
    freshwater = interior_freshwater(scenario, params, drivers, noise)
    air = COLUMN.air_temperature_sd * noise.air_temperature
    return run_column(freshwater, air, params, initial)


def simulate(scenario: Scenario, params: MemberParameters, n_months: int,
             rng: np.random.Generator | Sequence[np.random.Generator]) -> Simulation:
    """Drivers, column and every feature for all members.

    Parameters
    ----------
    scenario
        Planted cause and decoys (:mod:`synth.scenarios`).
    params
        Member parameters.
    n_months
        Length of the run from January of the first year.
    rng
        A generator (spawned into one child per member) or one generator per member.
    """
    noise = draw_noise(rng, params.n_members, n_months)
    drivers = make_drivers(scenario, params, noise)
    initial = spin_up(params)
    column = integrate(scenario, params, drivers, noise, initial)
    features = {**drivers, **diagnose(column, drivers, noise)}
    features.update(downstream(features, scenario.downstream_gain))
    onset = onset_years(features["hmxl_labsea_interior"], features["aice_labsea_interior"])
    logger.debug("simulated %s: %d of %d members froze", scenario.name, int(np.sum(onset >= 0)),
                 params.n_members)
    return Simulation(scenario, params, noise, drivers, initial, column, features, onset)
