"""Planted causes as data: which process freshens the Labrador Sea, and which only looks like it.

A scenario names the one process whose anomaly reaches the convection site (the *main driver*),
the decoy that co-varies with it, and how noisy the interior itself is. Everything else in the
model is shared, so scenarios differ only in these few fields and adding one is one entry in
:data:`SCENARIOS`, never a new branch in the physics.

The perturbed-parameter ensembles' planted truth lives here too: :data:`PPE_PARAMETERS`, one
CLM parameter per sensitivity class, with its offline and coupled effect.
"""

from __future__ import annotations

from dataclasses import dataclass

from ensembles.errors import ConfigurationError
from ensembles.registry import processes
from synth.physics import PROCESSES
from synth.ppe_land import LAND_TARGETS


@dataclass(frozen=True)
class Scenario:
    """A planted cause.

    Attributes
    ----------
    name
        Scenario name (``synthesize(scenario=...)``).
    description
        One sentence for truth.json and reports.
    main_driver
        Registry process whose freshwater anomaly reaches the interior and whose ramp makes
        members freeze; ``None``: an unobserved interior drift does (the ``null`` scenario).
    covarying_decoy
        Process whose latent co-varies with the main driver (correlation ``covariance``) and has
        no effect; its co-varying part is routed away from the Lab Sea budget terms.
    covariance
        Correlation of the co-varying decoy's latent with the main driver's.
    internal_noise_msv
        Standard deviation of the interior's own freshwater noise (eddies), monthly AR(1).
    routing
        What happens to the co-varying decoy's anomaly, in words, for truth.json.
    secondary_driver, secondary_share
        A second coupled process carrying ``secondary_share`` of the ramp's freshwater (the
        main driver keeps the rest): two drivers of unequal weight (issue 15 stress test).
    memory_months
        e-folding time of a leaky integrator (unit gain) the main driver's freshwater passes
        through before it reaches the interior: a slow driver whose effect builds over years.
    downstream_gain
        g/kg of Irminger (and half of it in subpolar-gyre) upper-ocean salinity per g/kg of Lab
        Sea anomaly, ``DOWNSTREAM_LAG`` months later: a neighbour that follows the symptom.
    """

    name: str
    description: str
    main_driver: str | None
    covarying_decoy: str | None = None
    covariance: float = 0.6
    internal_noise_msv: float = 1.5
    routing: str = ""
    secondary_driver: str | None = None
    secondary_share: float = 0.0
    memory_months: float = 0.0
    downstream_gain: float = 0.0

    def __post_init__(self) -> None:
        known = set(PROCESSES)
        for role, process in (("main_driver", self.main_driver),
                              ("covarying_decoy", self.covarying_decoy)):
            if process is not None and process not in known:
                raise ConfigurationError(f"scenario {self.name}: {role} {process!r} is not one "
                                         f"of the synthetic driver processes {sorted(known)}")
            if process is not None and process not in processes():
                raise ConfigurationError(f"scenario {self.name}: {process!r} is not a registry "
                                         "process")
        if self.main_driver is not None and PROCESSES[self.main_driver].fw_per_unit <= 0:
            raise ConfigurationError(f"scenario {self.name}: {self.main_driver} has no "
                                     "freshwater channel and cannot freshen the Lab Sea")
        if self.covarying_decoy is not None and self.covarying_decoy == self.main_driver:
            raise ConfigurationError(f"scenario {self.name}: the decoy cannot be the driver")
        if self.secondary_driver is not None and (
                self.secondary_driver not in known or self.main_driver is None
                or self.secondary_driver in (self.main_driver, self.covarying_decoy)
                or not 0.0 < self.secondary_share < 0.5):
            raise ConfigurationError(f"scenario {self.name}: a secondary driver needs a main "
                                     "driver, must differ from it and the decoy, and carries "
                                     "a share in (0, 0.5)")
        if self.memory_months < 0 or self.downstream_gain < 0:
            raise ConfigurationError(f"scenario {self.name}: memory and downstream gain >= 0")
        if not 0.0 <= self.covariance < 1.0:
            raise ConfigurationError(f"scenario {self.name}: covariance must be in [0, 1)")

    def coupling(self, process: str) -> float:
        """1 for the main (and secondary) driver, 0 for every other process (decoys)."""
        return 1.0 if process in (self.main_driver, self.secondary_driver) else 0.0

    def ramp_share(self, process: str) -> float:
        """Share of the planted ramp's freshwater that ``process`` carries."""
        if process == self.secondary_driver:
            return self.secondary_share
        return 1.0 - self.secondary_share if process == self.main_driver else 0.0

    @property
    def decoys(self) -> list[str]:
        """Every driver process without effect on the Lab Sea, in :data:`PROCESSES` order."""
        return [name for name in PROCESSES if name not in (self.main_driver,
                                                           self.secondary_driver)]

    def truth(self) -> dict[str, object]:
        """The scenario's part of truth.json."""
        return {
            "scenario": self.name,
            "description": self.description,
            "main_driver": self.main_driver,
            "direction": "+" if self.main_driver else None,
            "decoys": self.decoys,
            "covarying_decoy": self.covarying_decoy,
            "covarying_correlation": self.covariance if self.covarying_decoy else None,
            "routing": self.routing or None,
            "decoy_effect": "none: decoy anomalies are exported by the boundary current and "
                            "never enter the interior salinity; a co-varying decoy's co-varying "
                            "part enters neither the salinity nor the Lab Sea budget terms",
            "internal_noise_msv": self.internal_noise_msv,
            "secondary_driver": self.secondary_driver,
            "secondary_share": self.secondary_share if self.secondary_driver else None,
            "memory_months": self.memory_months or None,
            "downstream_gain": self.downstream_gain or None,
        }


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        "greenland_runoff",
        "Greenland runoff (liquid on the West Greenland shelf and calving) increases and "
        "freshens the Labrador Sea; continental runoff co-varies but is routed away.",
        main_driver="greenland_runoff", covarying_decoy="continental_runoff",
        routing="the part of North American runoff that co-varies with Greenland runoff drains "
                "to Hudson Bay: qrunoff/qsnomelt_north_america_ne carry it, "
                "friver_labrador_shelf does not",
    ),
    Scenario(
        "sea_ice_import",
        "More sea ice is imported through Davis Strait from Baffin Bay and melts in the "
        "Labrador Sea; Arctic ice co-varies but has no effect.",
        main_driver="sea_ice_import", covarying_decoy="arctic_outflow",
        routing="Arctic ice and Baffin salinity co-vary with the import; Arctic liquid "
                "freshwater does not reach the Labrador Sea interior",
    ),
    Scenario(
        "precipitation",
        "Precipitation over the Labrador Sea increases; storminess (winds, pressure) co-varies "
        "but does not change convection.",
        main_driver="precipitation", covarying_decoy="wind_stress",
        routing="storm winds co-vary with precipitation; their anomaly does not change the "
                "heat loss or mixing",
    ),
    Scenario(
        "continental_runoff",
        "North American runoff onto the Labrador shelf increases; Greenland runoff co-varies "
        "but is carried away by the West Greenland Current.",
        main_driver="continental_runoff", covarying_decoy="greenland_runoff",
        routing="the part of Greenland runoff that co-varies with continental runoff stays on "
                "land/leaves via East Greenland: qrunoff/qice_melt/tsa_greenland carry it, "
                "friver_west_greenland_shelf and ficeberg_labsea do not",
    ),
    Scenario(
        "arctic_outflow",
        "Fresher Arctic water arrives through Baffin Bay and Davis Strait; sea-ice import "
        "co-varies but melts outside the interior.",
        main_driver="arctic_outflow", covarying_decoy="sea_ice_import",
        routing="the imported ice that co-varies with the Arctic outflow is not part of "
                "dvidtd_labsea (it melts in Baffin Bay); aice/hi in Baffin and Davis Strait "
                "carry it",
    ),
    # ---- issue 15: stress tests built to break naive attribution
    Scenario(
        "downstream_symptom",
        "Greenland runoff freshens the Labrador Sea; Irminger and subpolar-gyre salinity follow "
        "the Lab Sea downstream (a co-symptom, never a source).",
        main_driver="greenland_runoff", covarying_decoy="continental_runoff",
        downstream_gain=0.8,
    ),
    Scenario(
        "strong_decoy",
        "Sea-ice import freshens the Labrador Sea; precipitation co-varies with it at 0.9 "
        "and has no effect.",
        main_driver="sea_ice_import", covarying_decoy="precipitation", covariance=0.9,
        routing="storm precipitation co-varies with the ice import but rains out upstream: "
                "prect_labsea carries it, pr_labsea does not",
    ),
    Scenario(
        "two_drivers",
        "Continental runoff carries 70% of the extra freshwater and precipitation 30%.",
        main_driver="continental_runoff", secondary_driver="precipitation",
        secondary_share=0.3,
    ),
    Scenario(
        "slow_driver",
        "Arctic water through Davis Strait freshens the Labrador Sea through a salinity "
        "integrator with a decade-long memory: its effect builds over years.",
        main_driver="arctic_outflow", covarying_decoy="sea_ice_import", memory_months=120.0,
    ),
    Scenario(
        "null",
        "No driver: freezes come from the salinity/convection equation itself (an unobserved "
        "interior drift and eddy noise), so no driver carries information.",
        main_driver=None, covarying_decoy=None, internal_noise_msv=2.0,
    ),
)}
"""Every scenario by name."""


def get_scenario(name: str | Scenario) -> Scenario:
    """A scenario by name (a :class:`Scenario` is returned as is), known names in the error."""
    if isinstance(name, Scenario):
        return name
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown synthetic scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


# --- perturbed-parameter ensembles -------------------------------------------------------
@dataclass(frozen=True)
class LandParameter:
    """A CLM parameter of the perturbed-parameter ensembles and its planted effect.

    Attributes
    ----------
    name, default, low, high, units, description
        As in ``parameters.csv`` (``low``/``high`` are its ``min``/``max``).
    verdict
        Planted class: how the coupled effect relates to the offline one.
    offline_effect
        W m-2: JJA latent heat flux at ``high`` minus at ``low``, land-only runs.
    coupled_effect
        The same in coupled runs (offline effect times ``1 + feedback factor``).
    """

    name: str
    default: float
    low: float
    high: float
    units: str
    description: str
    verdict: str
    offline_effect: float
    coupled_effect: float

    def __post_init__(self) -> None:
        if not self.low <= self.default <= self.high or self.low == self.high:
            raise ConfigurationError(f"PPE parameter {self.name}: need min <= default <= max")
        if classify(self.offline_effect, self.coupled_effect) != self.verdict:
            raise ConfigurationError(f"PPE parameter {self.name}: effects "
                                     f"{self.offline_effect}/{self.coupled_effect} are not "
                                     f"{self.verdict!r}")

    def effect(self, setup: str) -> float:
        """The planted effect (W m-2 of JJA latent heat) in ``offline`` or ``coupled`` runs."""
        return self.coupled_effect if setup == "coupled" else self.offline_effect

    @property
    def feedback_factor(self) -> float | None:
        """``coupled / offline - 1``; ``None`` where the offline effect is zero."""
        return self.coupled_effect / self.offline_effect - 1.0 if self.offline_effect else None

    def truth(self) -> dict[str, object]:
        return {"parameter": self.name, "class": self.verdict, "units": self.units,
                "default": self.default, "min": self.low, "max": self.high,
                "feedback_factor": self.feedback_factor,
                "effects": {feature: {"offline": self.offline_effect * per_unit,
                                      "coupled": self.coupled_effect * per_unit}
                            for feature, per_unit in LAND_TARGETS.items()}}


def classify(offline: float, coupled: float) -> str:
    """The sensitivity verdict a perfect detector returns for noise-free effects."""
    if offline == 0.0:
        return "no-effect" if coupled == 0.0 else "coupled-only"
    if coupled == 0.0:
        return "offline-only"
    ratio = coupled / offline
    if ratio < 0:
        return "sign-flip"
    if ratio > 1.5:
        return "amplified"
    if ratio < 0.67:
        return "damped"
    return "consistent"


PPE_PARAMETERS: tuple[LandParameter, ...] = (
    LandParameter("medlynslope", 4.1, 1.0, 8.0, "kPa0.5",
                  "Medlyn stomatal conductance slope", "sign-flip", 10.0, -10.0),
    LandParameter("jmaxb1", 0.17, 0.05, 0.6, "1",
                  "sensitivity of electron transport capacity to light", "amplified", 6.0, 12.0),
    LandParameter("fff", 0.5, 0.02, 5.0, "m-1",
                  "decay factor of the fractional saturated area", "damped", -10.0, -4.0),
    LandParameter("dleaf", 0.04, 0.01, 0.1, "m",
                  "characteristic leaf dimension", "consistent", 5.0, 5.0),
    LandParameter("kmax", 2.0e-8, 1.0e-9, 3.8e-8, "s-1",
                  "plant segment maximum conductance", "coupled-only", 0.0, 6.0),
    LandParameter("d_max", 15.0, 10.0, 60.0, "mm",
                  "dry surface layer maximum thickness", "offline-only", -6.0, 0.0),
    LandParameter("froot_leaf", 1.0, 0.3, 3.0, "gC/gC",
                  "new fine root carbon per new leaf carbon (no effect with satellite "
                  "phenology)", "no-effect", 0.0, 0.0),
)
"""The PPE parameters, one per sensitivity class."""
