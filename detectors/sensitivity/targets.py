"""Sensitivity targets: variable x component x region x season x period, and each member's response.

A target is written ``variable:region:season[:period]``, e.g. ``eflx_lh_tot:north_america_ne:JJA``
or ``eflx_lh_tot:north_america_ne:DJF:0005-0010``. The feature it reads is the registry's
``<variable>_<region>``; the component is the variable's own. It is resolved in *each* setup:
offline (I compset) runs have no CAM, so an atmosphere variable cannot be compared like for
like and the error names the land model's variable to use instead.

Seasons are runs of month initials (``JJA``, ``DJF``, ``JFM``, ``MJJAS``), three-letter month
names (``JUL``) or ``ANN``. A season that wraps the year end belongs to the year it ends in
(DJF of year 5 = Dec 4 + Jan/Feb 5). The **period** is a range of such season-years; by default
every complete season-year of the run is used: no spin-up is dropped, because PPE members start
from the same spun-up state and a transient common to all members cancels in the effects. Give a
period to leave out a spin-up anyway.

A member's **response** is the mean over the period of its season means (incomplete seasons at
the ends of the run are left out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ensembles.errors import ConfigurationError
from ensembles.registry import features as registry_features
from ensembles.registry import variables as registry_variables

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
INITIALS = "JFMAMJJASOND"
LAND_EQUIVALENT = {"lhflx": "eflx_lh_tot", "shflx": "fsh"}
"""CAM variables and the CLM variable that measures the same flux in offline runs."""


def season_months(season: str) -> tuple[int, ...]:
    """Months (1-12, in season order) of a season name; unknown seasons are an error."""
    name = season.strip().upper()
    if name == "ANN":
        return tuple(range(1, 13))
    if name in MONTHS:
        return (MONTHS.index(name) + 1,)
    if 2 <= len(name) <= 12:
        twice = INITIALS * 2
        for start in range(12):
            if twice[start:start + len(name)] == name:
                return tuple((start + k) % 12 + 1 for k in range(len(name)))
    raise ConfigurationError(f"unknown season {season!r}: use consecutive month initials "
                             "(JJA, DJF, JFM, MJJAS), a month (JUL) or ANN")


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target; :attr:`feature` is the registry feature it reads."""

    variable: str
    region: str
    season: str
    months: tuple[int, ...]
    period: tuple[int, int] | None = None

    @property
    def feature(self) -> str:
        return f"{self.variable}_{self.region}"

    @property
    def period_text(self) -> str:
        return "all years" if self.period is None else f"{self.period[0]:04d}-{self.period[1]:04d}"

    def __str__(self) -> str:
        text = f"{self.variable}:{self.region}:{self.season}"
        return text if self.period is None else f"{text}:{self.period_text}"


def _period(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    try:
        years = (int(first), int(last or first))
    except ValueError:
        raise ConfigurationError(f"unknown period {text!r}: use YYYY-YYYY (model years, "
                                 "inclusive), e.g. 0005-0010") from None
    if (sep and not last) or years[0] > years[1]:
        raise ConfigurationError(f"period {text!r}: first year after last year")
    return years


def parse_target(text: str) -> TargetSpec:
    """``variable:region:season[:period]`` -> :class:`TargetSpec`, checked against the registry."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (3, 4) or not all(parts):
        raise ConfigurationError(f"target {text!r}: expected variable:region:season[:period], "
                                 "e.g. eflx_lh_tot:north_america_ne:JJA")
    variable, region, season = parts[0].lower(), parts[1].lower(), parts[2].upper()
    catalogue = registry_features()
    if variable not in registry_variables():
        raise ConfigurationError(f"target {text!r}: unknown variable {variable!r}; variables "
                                 f"with a {region} feature: "
                                 f"{', '.join(_variables_in(region)) or 'none'}")
    if f"{variable}_{region}" not in catalogue:
        regions = sorted(f.region for f in catalogue.values() if f.variable == variable)
        raise ConfigurationError(f"target {text!r}: no registered feature "
                                 f"{variable}_{region}; {variable} is reduced over "
                                 f"{', '.join(regions) or 'no region'}")
    return TargetSpec(variable, region, season, season_months(season),
                      _period(parts[3]) if len(parts) == 4 else None)


def _variables_in(region: str) -> list[str]:
    return sorted({f.variable for f in registry_features().values() if f.region == region})


@dataclass(frozen=True)
class ResolvedTarget:
    """Where one setup keeps the target."""

    setup: str
    feature: str
    component: str
    units: str
    source_variable: str


def resolve_target(spec: TargetSpec, datasets: Mapping[str, xr.Dataset]) -> dict[str,
                                                                                   ResolvedTarget]:
    """The target's feature in every setup; a setup without it is a clear error."""
    component = registry_variables()[spec.variable].component
    resolved = {}
    for setup, dataset in datasets.items():
        if spec.feature not in dataset:
            hint = ""
            if component == "atm" and spec.variable in LAND_EQUIVALENT:
                hint = (f"; offline (I compset) runs have no atm output, compare the land "
                        f"model's {LAND_EQUIVALENT[spec.variable]} instead")
            present = sorted(str(v) for v in dataset.data_vars)
            raise ConfigurationError(f"target {spec}: the {setup} members have no feature "
                                     f"{spec.feature}{hint}; they have "
                                     f"{', '.join(present[:12]) or 'no features'}")
        attrs = dataset[spec.feature].attrs
        resolved[setup] = ResolvedTarget(setup, spec.feature, attrs.get("component", component),
                                         attrs.get("units", ""),
                                         attrs.get("source_variable", ""))
    units = {r.units for r in resolved.values()}
    if len(units) > 1:
        raise ConfigurationError(f"target {spec}: units differ between setups: "
                                 f"{', '.join(sorted(units))}")
    return resolved


def season_means(series: xr.DataArray, spec: TargetSpec) -> xr.DataArray:
    """``(member, year)`` season means over the period's complete season-years.

    A member missing some months of a season gets the mean of the months it has; a season-year
    that is not fully inside the run (DJF of the first year) is left out for everyone.
    """
    months = series["time"].dt.month.values
    years = series["time"].dt.year.values
    order = list(spec.months)
    position = {m: k for k, m in enumerate(order)}
    wraps = [k for k in range(1, len(order)) if order[k] < order[k - 1]]
    split = wraps[0] if wraps else len(order)
    in_season = np.isin(months, order)
    season_year = years + np.array([position.get(m, split) < split and bool(wraps)
                                    for m in months], dtype=int)
    labels = np.where(in_season, season_year, -1)
    complete = [y for y in np.unique(labels[labels >= 0])
                if np.count_nonzero(labels == y) == len(order)]
    if spec.period is not None:
        complete = [y for y in complete if spec.period[0] <= y <= spec.period[1]]
    if not complete:
        span = f"{years.min():04d}-{years.max():04d}" if years.size else "no months"
        raise ConfigurationError(f"target {spec}: no complete {spec.season} season in "
                                 f"{spec.period_text} (the runs cover {span})")
    keep = np.isin(labels, complete)
    selected = series.isel(time=np.flatnonzero(keep))
    grouped = selected.assign_coords(year=("time", labels[keep])).groupby("year").mean("time")
    return grouped.transpose("member", "year")


def responses(series: xr.DataArray, spec: TargetSpec) -> tuple[xr.DataArray, xr.DataArray]:
    """Each member's response (mean of its season means) and the season means themselves."""
    by_year = season_means(series, spec)
    return by_year.mean("year", skipna=True), by_year
