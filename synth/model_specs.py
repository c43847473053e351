"""One table row per model and flavour: everything that distinguishes one model's files.

Models differ only through data: one :class:`ModelSpec` per model and flavour (file names,
time convention, fill value, variables with units and conversions) and one grid layout
builder per grid type (:mod:`synth.layouts`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from synth.grids import SynthGrids
from synth.layouts import (
    GridLayout,
    cam_fv_layout,
    cam_se_layout,
    cice_layout,
    clm_latlon_layout,
    clm_lndgrid_layout,
    mom6_layout,
    pop_layout,
)

Stamp = Literal["end", "mid"]
NetcdfFormat = Literal["NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"]
"""netCDF3 flavours only: files are copied from in-memory templates, which need netCDF3."""
_DAYS_BEFORE_MONTH = np.array([0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365])


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
        Partition of the canonical field (:data:`synth.climate.SHARES`), e.g. PRECC =
        convective x prect.
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
    model="cice", stream="h", layout=cice_layout,
    time=TimeAxis(stamp="end", bounds="time_bounds", bounds_dim="d2"), fill_value=1e30,
    file_format="NETCDF3_64BIT_OFFSET", source="Los Alamos Sea Ice Model (CICE) Version 5",
    fields=_CICE_FIELDS,
)
_CESM2_CAM = ModelSpec(
    model="cam", stream="h0", layout=cam_fv_layout, time=TimeAxis(stamp="end"),
    fill_value=None, file_format="NETCDF3_64BIT_OFFSET", source="CAM", fields=_CAM_FIELDS,
)
_CESM2_CLM = ModelSpec(
    model="clm2", stream="h0", layout=clm_latlon_layout,
    time=TimeAxis(stamp="end", bounds="time_bounds", bounds_dim="hist_interval"),
    fill_value=1e36, file_format="NETCDF3_64BIT_OFFSET", source="Community Land Model CLM5.0",
    fields=_CLM_FIELDS,
)
_CESM3_FORMAT: NetcdfFormat = "NETCDF3_64BIT_DATA"

MODELS: dict[str, dict[str, ModelSpec]] = {
    "cesm2": {
        "ocn": ModelSpec(
            model="pop", stream="h", layout=pop_layout,
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
            model="mom6", stream="h.z", layout=mom6_layout,
            time=TimeAxis(stamp="mid", bounds="time_bnds", bounds_dim="nv"), fill_value=1e20,
            file_format=_CESM3_FORMAT, source="MOM6", fields=_MOM6_FIELDS,
            static_stream="h.static",
        ),
        "ice": dataclasses.replace(
            _CESM2_CICE, time=TimeAxis(stamp="mid", bounds="time_bounds"),
            file_format=_CESM3_FORMAT, source="Los Alamos Sea Ice Model (CICE) Version 6",
        ),
        "atm": dataclasses.replace(
            _CESM2_CAM, stream="h0a", layout=cam_se_layout, time=TimeAxis(stamp="mid"),
            file_format=_CESM3_FORMAT, fields=(_PRECT, *_CAM_FIELDS),
        ),
        "lnd": dataclasses.replace(
            _CESM2_CLM, stream="h0a", layout=clm_lndgrid_layout,
            time=dataclasses.replace(_CESM2_CLM.time, stamp="mid"),
            file_format=_CESM3_FORMAT, source="Community Terrestrial Systems Model CTSM",
        ),
    },
}
"""Per flavour and component, the model whose files :func:`synth.writers.write_case` writes."""

OUTPUTS = ("full", "reduced")
REDUCED_OUTPUT: dict[str, frozenset[str]] = {
    "cam": frozenset({"LANDFRAC", "PRECT"}),
    "pop": frozenset({"UVEL", "VVEL"}),
    "mom6": frozenset({"uo", "vo"}),
}
"""Per model, the variables a lean production run leaves out of its output list
(``--output reduced``): CAM without ``LANDFRAC`` and with ``PRECC`` + ``PRECL`` instead
of ``PRECT``, the ocean without velocities. The readers must then fall back (the ocean
mask from ``OCNFRAC`` + ``ICEFRAC``, precipitation from its parts)."""


def written_fields(spec: ModelSpec, output: str) -> tuple[FileField, ...]:
    """The fields of ``spec`` that an output list of kind ``output`` writes."""
    left_out = REDUCED_OUTPUT.get(spec.model, frozenset()) if output == "reduced" else frozenset()
    return tuple(f for f in spec.fields if f.name not in left_out)
