"""Effects of a one-at-a-time (OAAT) design: high-end member minus low-end member, with noise.

For each parameter the members that differ from the default only in it are grouped by value;
the response at the lowest and highest tested values (the default replicates stand for the
default value when it is one of the ends) gives ``effect = high - low``. Its noise comes from
the **default-parameter replicates**: their spread ``sd`` (``n - 1`` degrees of freedom) gives
``se = sd * sqrt(1/n_low + 1/n_high)`` and a Student-t interval. Without at least two
replicates the replicate noise is *missing*; the result says so and falls back to the
year-to-year spread of season means within members (``sd / sqrt(years)``), which is
conservative where members share their forcing (offline runs) and right where they have their
own weather (coupled runs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from ensembles.errors import ConfigurationError
from ensembles.ppe import RTOL, SetupDesign

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Noise:
    """The noise of one member's response in one setup."""

    setup: str
    source: str  # "replicates" or "year-to-year (replicates missing)"
    sd: float
    df: int
    n_replicates: int
    replicates: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SetupEffect:
    """One parameter's effect in one setup, both endpoints kept."""

    effect: float
    ci: tuple[float, float]
    low: float
    high: float
    low_value: float
    high_value: float
    n_low: int
    n_high: int


def replicate_noise(setup: str, response: pd.Series, by_year: xr.DataArray,
                    design: SetupDesign) -> Noise:
    """Spread of the default replicates, or the year-to-year fallback (stated as such)."""
    reps = [m for m in design.replicates if m in response.index and np.isfinite(response[m])]
    if len(reps) >= 2:
        return Noise(setup, "replicates", float(np.std(response[reps], ddof=1)), len(reps) - 1,
                     len(reps), reps)
    values = by_year.values
    n_years = int(np.min(np.sum(np.isfinite(values), axis=1)))
    if n_years < 2:
        raise ConfigurationError(f"{setup} runs: no default-parameter replicates and a single "
                                 "season-year: the effects' noise cannot be estimated")
    residual = values - np.nanmean(values, axis=1, keepdims=True)
    df = int(np.sum(np.isfinite(residual)) - values.shape[0])
    sd_year = float(np.sqrt(np.nansum(residual**2) / df))
    log.info("%s: no default replicates; noise from year-to-year variability", setup)
    return Noise(setup, "year-to-year (replicates missing)", sd_year / np.sqrt(n_years), df,
                 len(reps), reps)


def oaat_effects(response: pd.Series, design: SetupDesign, noise: Noise, level: float
                 ) -> tuple[dict[str, SetupEffect], list[str]]:
    """Effect per perturbed parameter, and notes on anything left out or approximated."""
    if design.default is None:
        raise ConfigurationError(f"{design.setup}: an OAAT design needs a default member")
    t = float(stats.t.ppf(0.5 + level / 2.0, noise.df))
    reps = [m for m in design.replicates if m in response.index]
    effects, notes = {}, []
    for name, members in design.perturbed.items():
        members = [m for m in members if m in response.index and np.isfinite(response[m])]
        if not members:
            notes.append(f"{name} is not perturbed in the {design.setup} runs")
            continue
        values = design.values.loc[members, name].to_numpy()
        groups = {float(v): [m for m, w in zip(members, values, strict=True)
                             if np.isclose(w, v, rtol=RTOL, atol=0.0)] for v in np.unique(values)}
        default_value = float(design.default[name])
        if reps:
            groups.setdefault(default_value, reps)
        low_value, high_value = min(groups), max(groups)
        if low_value == high_value:
            notes.append(f"{name}: a single tested value in the {design.setup} runs and no "
                         "default member; no effect")
            continue
        unused = [v for v in groups if v not in (low_value, high_value, default_value)]
        if unused:
            notes.append(f"{name}: {len(unused)} intermediate value(s) in the "
                         f"{design.setup} runs not used (effect = highest minus lowest)")
        low = float(response[groups[low_value]].mean())
        high = float(response[groups[high_value]].mean())
        n_low, n_high = len(groups[low_value]), len(groups[high_value])
        effect = high - low
        half = t * noise.sd * np.sqrt(1.0 / n_low + 1.0 / n_high)
        effects[name] = SetupEffect(effect, (effect - half, effect + half), low, high, low_value,
                                    high_value, n_low, n_high)
    return effects, notes
