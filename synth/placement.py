"""Signals and their placement: which cells of a canonical field carry a regional signal.

Placement is written once, for every grid: within a region the field is the target value
times (or plus) a zero-mean smooth pattern, so the reduction is exact while the field still
has spatial structure. Regions are placed **smallest first**; a larger region then sets only
the cells not yet placed, with a target corrected for the cells already set, so nested and
overlapping regions (``labsea_interior`` in ``labsea``, ``irminger`` in ``spg``, the shelves)
all keep their own signals exactly. The only exception is when the correction would leave a
variable's physical bounds (e.g. ``aice_labsea = 0`` while ``aice_davis_strait = 0.9`` share
cells): the corrected value is clipped, the outer region's reduction then misses its signal by
the clipped amount, and one warning per case says by how much.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ensembles.errors import ConfigurationError
from ensembles.regions import regions
from ensembles.registry import features, registry, variables
from synth.climate import CLIMATE, Climate
from synth.grids import Cells, smooth_field

logger = logging.getLogger(__name__)

MSV_IN_M3_S = 1e3
"""One mSv of water in m3/s."""
_PATTERN_NOISE = 0.3
"""Month-to-month white noise added to a placement's smooth pattern, relative to it."""


def signal_targets(names: Iterable[str]) -> tuple[dict[tuple[str, str], str], list[str]]:
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


def crc(text: str) -> int:
    return zlib.crc32(text.encode())


def plan_placements(
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
            noise_key=(seed, crc(key), crc(region)),
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


def place(values: np.ndarray, placement: Placement, signal: float, climate: Climate,
           month_offset: int, misses: Misses) -> None:
    """Set the placement's free cells so the region reduces to ``signal``."""
    target = placement.target(signal, values)
    clipped = float(np.clip(target, *climate.bounds))
    if clipped != target:
        misses.add(placement.signal, placement.miss(target - clipped))
    values[placement.free] = _shape(clipped, _month_pattern(placement, month_offset), climate)
