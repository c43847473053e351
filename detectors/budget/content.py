"""Freshwater content of the Lab Sea's upper layer, its tendency and each term's series.

Content relative to a stated reference salinity ``S_ref``: ``FWC = A H (S_ref - S) / S_ref``
(m3) with ``S`` the layer's mean salinity (``so_upper_labsea``), ``A`` the Lab Sea's ocean
area and ``H`` the registry's upper layer. Its tendency (centred difference of monthly means,
mSv) is what the terms must add up to; what they leave is the residual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from detectors.budget.pathways import PATHWAYS, Pathway, ice_fresh_factor
from ensembles.regions import get_region
from ensembles.registry import registry

SECONDS_PER_MONTH = 365 * 86400 / 12  # noleap
M3S_PER_MSV = 1.0e3
EARTH_RADIUS_M = 6.371e6
SALINITY = "so_upper_labsea"


@dataclass
class TermSeries:
    """One pathway's (member, time) series in mSv, or why it has none."""

    pathway: Pathway
    values: np.ndarray | None
    features: list[str]
    lacks: str | None = None


def box_area_m2(region: str) -> float:
    """Area of a region's boxes on the sphere (land included): the fallback layer area."""
    total = 0.0
    for box in get_region(region).boxes:
        width = np.deg2rad((box.lon[1] - box.lon[0]) % 360.0 or 360.0)
        band = np.sin(np.deg2rad(box.lat[1])) - np.sin(np.deg2rad(box.lat[0]))
        total += EARTH_RADIUS_M**2 * width * band
    return float(total)


def layer_depth_m() -> float:
    top, bottom = registry().upper_ocean_m
    return bottom - top


def content_m3(salinity: np.ndarray, area_m2: float, reference: float) -> np.ndarray:
    """Freshwater content (m3) of the layer relative to ``reference``."""
    return area_m2 * layer_depth_m() * (reference - salinity) / reference


def tendency_msv(content: np.ndarray) -> np.ndarray:
    """Centred monthly tendency (mSv) along the last axis; NaN at both ends."""
    out = np.full(content.shape, np.nan)
    out[..., 1:-1] = (content[..., 2:] - content[..., :-2]) / (2 * SECONDS_PER_MONTH)
    return out / M3S_PER_MSV


def _other_reference(table: xr.Dataset, names: list[str], reference: float) -> str | None:
    """Why features read relative to another reference salinity cannot join this budget.

    A section transport ``Q (S_ref - S) / S_ref`` cannot be moved to another ``S_ref`` from
    its value alone (that needs ``Q`` and ``Q S`` apart), so it is declined, not mixed.
    """
    for name in names:
        used = table[name].attrs.get("reference_salinity")
        if used is not None and not np.isclose(float(used), reference):
            return (
                f"{name} was read relative to {float(used):g} g/kg and the budget uses "
                f"{reference:g} g/kg: rerun with reference_salinity={float(used):g} or change "
                "reference_salinity in the registry and rebuild the features"
            )
    return None


def ice_counted_once(table: xr.Dataset, reference: float) -> tuple[xr.Dataset, str | None]:
    """The table with the net ice-ocean flux less the imported ice, as the budget counts it.

    Imported ice melts in the Lab Sea, so the ice-ocean flux (``fsitherm``, ``fresh``)
    carries the import a second time: a model given both sees one source as two processes,
    and the melt of imported ice, the nearer of the two to the freeze, may outrank the import
    itself. With the import measured (``dvidtd``), each flux feature of the local-melt
    pathway becomes the flux less the import's fresh water (same month, as the budget's
    term); without it, nothing changes and the budget says the melt also holds the import.
    """
    importer = next(p for p in PATHWAYS if p.ice_import)
    local = next(p for p in PATHWAYS if p.minus_ice_import)
    measure = importer.measure_in(table)
    if measure is None:
        return table, None
    factor = ice_fresh_factor(reference, registry().water_density)
    imported = sum(sign * table[name] for name, sign in measure.features) * factor
    names = sorted({n for m in local.measures for n in m.names if n in table})
    if not names:
        return table, None
    out = table.copy()
    for name in names:
        out[name] = (table[name] - imported).assign_attrs(
            table[name].attrs,
            counted_once=f"less the imported ice ({' + '.join(measure.names)} x {factor:.3f})",
        )
    return out, (
        f"{', '.join(names)}: less the imported ice ({', '.join(measure.names)}), so the "
        "models see local melt and growth apart from the import, as the budget counts them"
    )


def term_series(table: xr.Dataset, reference: float) -> list[TermSeries]:
    """Every pathway measured from the table (first complete alternative), or what it lacks."""

    def values(name: str) -> np.ndarray:
        return table[name].transpose("member", "time").values.astype(float)

    out: list[TermSeries] = []
    imported: np.ndarray | None = None
    for pathway in PATHWAYS:
        measure = pathway.measure_in(table)
        if measure is None:
            out.append(TermSeries(pathway, None, [], pathway.lacks))
            continue
        other = _other_reference(table, measure.names, reference)
        if other:
            out.append(TermSeries(pathway, None, [], other))
            continue
        series = sum(sign * values(name) for name, sign in measure.features)
        if pathway.ice_import:
            series = series * ice_fresh_factor(reference, registry().water_density)
            imported = series
        if pathway.minus_ice_import and imported is not None:
            series = series - imported  # without an import, it also holds the imported melt
        out.append(TermSeries(pathway, series, measure.names))
    return out
