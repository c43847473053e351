"""Every pathway of fresh water into the Lab Sea's upper ocean, counted once.

A pathway is named by the water's *source* (a registry process), measured where the water
crosses the Lab Sea's surface or boundary (the ocean side: the only place the budget adds
it up), with alternatives in order of preference. Land-side series (CLM runoff of Greenland
or north-east America) measure the same water upstream, before routing: they *explain* an
ocean-side term with a lag and are never added to it, or Greenland runoff would be counted
twice (land runoff, then river flux on the shelf). Sea-ice melt is split in two so that it
too is counted once: the imported ice (``dvidtd`` times the fresh water a unit of sea ice
gives) and the rest of the net ice-ocean flux (local growth and melt).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

ICE_DENSITY = 917.0  # kg m-3
ICE_SALINITY = 4.0  # g/kg, CICE's reference ice salinity


def ice_fresh_factor(reference_salinity: float, water_density: float = 1000.0) -> float:
    """Fresh water (m3) one m3 of melting sea ice adds relative to ``reference_salinity``."""
    return ICE_DENSITY / water_density * (1.0 - ICE_SALINITY / reference_salinity)


@dataclass(frozen=True)
class Measure:
    """One way to measure a pathway: features added up, each times a sign."""

    features: tuple[tuple[str, float], ...]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.features]


@dataclass(frozen=True)
class Pathway:
    """A term of the budget.

    Attributes
    ----------
    source
        Registry process, so that the budget and the predictive model name the same things.
    description
        What crosses where, for the report.
    measures
        Ocean-side alternatives, preferred first; the first one whose features are all in the
        table is the term.
    lacks
        Model variables that would measure it, named when no alternative is in the table.
    explained_by
        Land-side features that carry the same water upstream (shown with their lag).
    ice_import
        The term is ice volume (m3 of ice): converted to fresh water by :func:`ice_fresh_factor`.
    minus_ice_import
        The net ice-ocean flux less the imported ice: local growth and melt.
    """

    source: str
    description: str
    measures: tuple[Measure, ...]
    lacks: str
    explained_by: tuple[str, ...] = ()
    ice_import: bool = False
    minus_ice_import: bool = False

    def measure_in(self, available: Container[str]) -> Measure | None:
        """The first alternative whose features are all ``available`` (a feature table)."""
        return next((m for m in self.measures if all(n in available for n in m.names)), None)


def _m(*features: str | tuple[str, float]) -> Measure:
    return Measure(tuple(f if isinstance(f, tuple) else (f, 1.0) for f in features))


PATHWAYS: tuple[Pathway, ...] = (
    Pathway(
        "precipitation",
        "rain and snow onto the Lab Sea",
        (_m("pr_labsea"), _m("prect_labsea")),
        "MOM6 prlq+prsn, POP PREC_F or CAM PRECT/PRECC+PRECL over the Lab Sea",
    ),
    Pathway(
        "evaporation",
        "evaporation from the Lab Sea (negative)",
        (_m("evs_labsea"), _m(("qflx_labsea", -1.0))),
        "MOM6 evs, POP EVAP_F or CAM QFLX over the Lab Sea",
    ),
    Pathway(
        "greenland_runoff",
        "Greenland liquid runoff on the West Greenland shelf and calving into the Lab Sea",
        (_m("friver_west_greenland_shelf", "ficeberg_labsea"), _m("friver_west_greenland_shelf")),
        "MOM6 friver/ficeberg or POP ROFF_F/IOFF_F on the West Greenland shelf",
        explained_by=("qrunoff_greenland", "qice_melt_greenland"),
    ),
    Pathway(
        "continental_runoff",
        "North American runoff onto the Labrador shelf and through Hudson Strait",
        (_m("friver_labrador_shelf", "fwt_hudson_strait"), _m("friver_labrador_shelf")),
        "MOM6 friver or POP ROFF_F on the Labrador shelf (and the Hudson Strait section)",
        explained_by=("qrunoff_north_america_ne", "qsnomelt_north_america_ne"),
    ),
    Pathway(
        "sea_ice_import",
        "sea ice carried in through Davis Strait (melting in the Lab Sea)",
        (_m("dvidtd_labsea"),),
        "CICE dvidtd over the Lab Sea (or uvel/vvel x hi through the gates)",
        ice_import=True,
    ),
    Pathway(
        "sea_ice_melt",
        "net local sea-ice melt and growth (ice-ocean flux less the import)",
        (_m("fsitherm_labsea"), _m("fresh_labsea")),
        "MOM6 fsitherm, POP MELT_F or CICE fresh over the Lab Sea",
        minus_ice_import=True,
    ),
    Pathway(
        "arctic_outflow",
        "liquid Arctic fresh water through Davis Strait",
        (_m("fwt_davis_strait"),),
        "MOM6 umo/vmo (or uo/vo x thickness) with so, or POP UVEL/VVEL with SALT, "
        "across the Davis Strait section",
    ),
    Pathway(
        "ocean_freshwater_transport",
        "liquid fresh water across the eastern section off Cape Farewell",
        (_m("fwt_cape_farewell"),),
        "MOM6 umo/vmo (or uo/vo x thickness) with so, or POP UVEL/VVEL with SALT, "
        "across the Cape Farewell section",
    ),
)
"""The terms, in report order."""

UNMEASURED = (
    "exchange with the water below the upper layer (entrainment, diffusion): not written by "
    "default (MOM6 wo/diapycnal salt flux, POP WTS/DIA_IMPVF_SALT); it is in the residual",
    "liquid exchange across the open southern edge (about 53N: Labrador Current export and "
    "slope-water inflow): a response of the Lab Sea's own state, not a source, and no gate "
    "of the registry; with velocities in the files its faces are counted as unassigned; it "
    "is in the residual",
    "eddy transport through the gates: monthly means of velocity and salinity give only the "
    "mean-flow part; the rest is in the residual",
)
"""What the budget cannot measure from standard output: the residual holds it."""
