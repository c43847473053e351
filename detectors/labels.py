"""Freeze labels: which members froze, and when.

A winter is *frozen* at the convection site (``labsea_interior``) when the March mixed layer
is shallower than a threshold and/or the January-March ice fraction is above one; a member
froze when N consecutive winters are frozen, and its onset is January of the first of them.
Mixed-layer diagnostics differ between models (POP ``HMXL`` is a monthly mean, ``XMXL`` a
monthly maximum, MOM6 ``MLD_003`` a density-criterion depth), so each has its own threshold
and the one used is written into the result.

A member that has not frozen is only known not to freeze up to its last *labellable*
winter: an onset needs N winters of record, so a record ending with one or two frozen
winters (or just ending) says nothing about an onset from then on.  ``censored_from`` gives
that month for every unfrozen member, and samples and risk targets whose horizon reaches it
are dropped rather than counted as negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from ensembles.errors import ConfigurationError
from ensembles.timeaxis import first_run

REGION = "labsea_interior"
# preference order: the monthly maximum is closest to "March maximum mixed-layer depth"
MIXED_LAYER_DIAGNOSTICS = ("xmxl", "mld_003", "mlotst", "hmxl")


class LabelRule(BaseModel):
    """How a frozen winter and a freeze are defined; every field goes into results."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mld_threshold_m: dict[str, float] = Field(
        default_factory=lambda: {"xmxl": 500.0, "mld_003": 300.0, "mlotst": 300.0, "hmxl": 300.0},
        description="March mixed layer shallower than this (per diagnostic) means no convection",
    )
    ice_threshold: float = Field(0.5, ge=0, le=1, description="JFM mean ice fraction above this")
    combine: Literal["and", "or", "mld", "ice"] = "and"
    consecutive_winters: int = Field(3, ge=1)
    region: str = REGION


@dataclass(frozen=True)
class Labels:
    """Per-member outcome and the per-winter flags it came from."""

    froze: xr.DataArray  # (member,) bool
    onset: xr.DataArray  # (member,) "YYYY-01" or ""
    frozen_winter: xr.DataArray  # (member, year) bool
    rule: LabelRule
    mixed_layer: str | None  # the diagnostic used, or None when ice alone was used
    censored_from: xr.DataArray  # (member,) "YYYY-01" from which an onset cannot be ruled out
    #                              ("" for frozen members, whose onset is known)

    def to_records(self) -> list[dict]:
        return [
            {"member": str(m), "froze": bool(f), "first_freeze": o or None}
            for m, f, o in zip(
                self.froze.member.values, self.froze.values, self.onset.values, strict=True
            )
        ]


def _mixed_layer(features: xr.Dataset, rule: LabelRule) -> tuple[str, xr.DataArray] | None:
    for name in MIXED_LAYER_DIAGNOSTICS:
        var = f"{name}_{rule.region}"
        if var in features and name in rule.mld_threshold_m:
            return name, features[var]
    return None


def winter_means(series: xr.DataArray, months: tuple[int, ...]) -> xr.DataArray:
    """Mean over the given calendar months of each model year, dims (member, year)."""
    times = series.time.values
    keep = np.flatnonzero(np.isin([t.month for t in times], months))
    if keep.size == 0:  # e.g. a run that has not reached its first March yet: no winters
        return series.isel(time=keep).rename(time="year").assign_coords(
            year=np.array([], dtype=int))
    selected = series.isel(time=keep)
    years = xr.DataArray([t.year for t in times[keep]], dims="time", name="year")
    return selected.groupby(years).mean("time")


def label_freezes(features: xr.Dataset, rule: LabelRule | None = None) -> Labels:
    """Label every member of a feature table.

    Raises
    ------
    ConfigurationError
        When the table has neither a mixed-layer nor an ice feature on the label region.
    """
    rule = rule or LabelRule()
    mld = _mixed_layer(features, rule) if rule.combine != "ice" else None
    ice_name = f"aice_{rule.region}"
    ice = features.get(ice_name) if rule.combine != "mld" else None
    if mld is None and ice is None:
        raise ConfigurationError(
            f"cannot label freezes: no mixed-layer feature ({', '.join(MIXED_LAYER_DIAGNOSTICS)}"
            f" on {rule.region}) and no {ice_name} in the feature table"
        )
    means, thresholds = [], []
    if mld is not None:
        name, series = mld
        means.append(winter_means(series, (3,)))
        thresholds.append(lambda m, t=rule.mld_threshold_m[name]: m < t)
    if ice is not None:
        means.append(winter_means(ice, (1, 2, 3)))
        thresholds.append(lambda m: m > rule.ice_threshold)
    means = list(xr.align(*means, join="inner"))
    observed = np.logical_and.reduce([m.notnull().values for m in means])
    flags = [test(m) for test, m in zip(thresholds, means, strict=True)]
    frozen = _combine(flags, rule)
    onset_year = first_run(frozen.values, rule.consecutive_winters)
    years = frozen.year.values
    onset = np.array([f"{years[i]:04d}-01" if i >= 0 else "" for i in onset_year], dtype=object)
    member = frozen.member
    return Labels(
        froze=xr.DataArray(onset_year >= 0, coords={"member": member}),
        onset=xr.DataArray(onset, coords={"member": member}),
        frozen_winter=frozen,
        rule=rule,
        mixed_layer=mld[0] if mld is not None else None,
        censored_from=xr.DataArray(_censored_from(frozen.values, observed, years, onset_year,
                                                  rule.consecutive_winters),
                                   coords={"member": member}),
    )


def _combine(flags: list[xr.DataArray], rule: LabelRule) -> xr.DataArray:
    if len(flags) == 2 and rule.combine in ("and", "or"):
        return (flags[0] & flags[1]) if rule.combine == "and" else (flags[0] | flags[1])
    return flags[0]


def _censored_from(frozen: np.ndarray, observed: np.ndarray, years: np.ndarray,
                   onset_year: np.ndarray, consecutive: int) -> np.ndarray:
    """First January from which an unfrozen member's onset cannot be ruled out.

    After the last observed winter, the trailing run of frozen winters (shorter than
    ``consecutive``, or the member would have frozen) may be the start of a freeze; with no
    trailing frozen winter the censoring starts the winter after the record.
    """
    out = np.full(frozen.shape[0], "", dtype=object)
    for i in np.flatnonzero(onset_year < 0):
        seen = np.flatnonzero(observed[i])
        if seen.size == 0:
            out[i] = f"{years[0]:04d}-01" if years.size else "0000-01"
            continue
        last = seen[-1]
        trailing = 0
        while trailing < min(consecutive, last + 1) and frozen[i, last - trailing]:
            trailing += 1
        out[i] = f"{years[last] - trailing + 1:04d}-01"
    return out
