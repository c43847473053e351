"""A parameter table for the freeze database: freezing that depends on some settings only.

``esmwatch synth --kind freeze-database --parameters freeze`` gives every member a vector of
five CESM-like parameters (a Latin hypercube over their ranges) and decides its fate from
them, so that the parameters analysis has a known answer:

- ``albedo_snow`` is the **main** parameter: lower snow albedo, more Greenland melt, more
  freezes (its logit slope is :data:`MAIN_SLOPE` over the range);
- ``vmix_background`` acts **only through an interaction** with ``albedo_snow``: averaged over
  the albedo range its effect is zero, but it steepens the albedo effect when high and
  flattens it when low;
- ``atm_dcs``, ``ice_r_snw`` and ``lnd_fff`` are **nuisance** parameters: they vary but decide
  nothing.

``--parameters null`` keeps the same table but makes every member's freeze probability 1/2.

A member's fate is drawn as ``P(freeze) = sigmoid(z(u))`` with ``u`` the parameters scaled to
``[0, 1]`` over their ranges (:func:`freeze_probability`, the truth the validation compares
with); a member drawn to freeze gets a Greenland-runoff ramp that crosses its critical
forcing within the run, the others one that crosses it 1.6-4 run lengths later, exactly as
the plain freeze database does. So the causal chain the analysis should find is
"albedo down -> Greenland runoff up -> freeze". Detectors never import this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DESIGNS = ("none", "freeze", "null")
MAIN = "albedo_snow"
INTERACTING = "vmix_background"
NUISANCE = ("atm_dcs", "ice_r_snw", "lnd_fff")
MAIN_SLOPE = 6.0
"""Logit change from the top to the bottom of the albedo range (main effect)."""
INTERACTION = 20.0
"""Logit coefficient of ``(0.5 - u_albedo) * (u_vmix - 0.5)``: zero mean over either one."""
LATEST_FREEZE_MARGIN = 10
"""Crossings of freezing members end this many years before the end of the run, so that
the three consecutive frozen winters of the label fit inside it."""


@dataclass(frozen=True)
class TableParameter:
    """One row of ``parameters.csv``."""

    name: str
    default: float
    low: float
    high: float
    units: str
    description: str

    def value(self, u: np.ndarray) -> np.ndarray:
        return self.low + np.asarray(u, float) * (self.high - self.low)

    def scaled(self, value: float) -> float:
        return (value - self.low) / (self.high - self.low)


PARAMETERS: tuple[TableParameter, ...] = (
    TableParameter(MAIN, 0.78, 0.70, 0.90, "1", "fresh snow albedo over the ice sheet"),
    TableParameter(
        INTERACTING, 0.5e-5, 0.1e-5, 1.0e-5, "m2 s-1", "ocean background vertical diffusivity"
    ),
    TableParameter("atm_dcs", 600.0, 300.0, 900.0, "um", "autoconversion size threshold"),
    TableParameter("ice_r_snw", 1.25, 0.0, 2.0, "1", "snow grain radius tuning"),
    TableParameter("lnd_fff", 2.5, 0.5, 5.0, "m-1", "surface runoff decay factor"),
)
"""The parameter box, in ``parameters.csv`` order. The default sits where P(freeze) ~ 0.6:
above a 0.2 threshold, so a what-if change exists."""

TABLE_FILE = "params.csv"
"""The parameter table's name beside the members (``parameters.csv`` beside it)."""


def logit(u: np.ndarray, design: str) -> np.ndarray:
    """``z(u)`` for rows of scaled parameters (columns in :data:`PARAMETERS` order)."""
    u = np.atleast_2d(np.asarray(u, float))
    if design == "null":
        return np.zeros(len(u))
    if design != "freeze":
        raise ValueError(f"no freeze probability for parameter design {design!r}")
    a, m = u[:, 0], u[:, 1]
    return MAIN_SLOPE * (0.5 - a) + INTERACTION * (0.5 - a) * (m - 0.5)


def freeze_probability(u: np.ndarray, design: str) -> np.ndarray:
    """True P(freeze within the run) at scaled parameters ``u`` (rows)."""
    return 1.0 / (1.0 + np.exp(-logit(u, design)))


def scaled(values: dict[str, float]) -> np.ndarray:
    """A parameter vector (missing names at their defaults) scaled to ``[0, 1]``."""
    return np.array([p.scaled(values.get(p.name, p.default)) for p in PARAMETERS])


@dataclass(frozen=True)
class ParameterDraw:
    """Members' parameter values and planned fate."""

    u: np.ndarray  # (members, n_parameters), scaled
    froze_planned: np.ndarray  # bool

    def values(self) -> dict[str, np.ndarray]:
        return {p.name: p.value(self.u[:, j]) for j, p in enumerate(PARAMETERS)}


def draw(
    design: str, members: int, rng: np.random.Generator, fixed: np.ndarray | None = None
) -> ParameterDraw:
    """Latin-hypercube parameters (or all members at ``fixed``) and Bernoulli fates."""
    if fixed is None:
        edges = np.arange(members)
        u = np.stack(
            [rng.permutation((edges + rng.random(members)) / members) for _ in PARAMETERS], axis=1
        )
    else:
        u = np.repeat(np.asarray(fixed, float)[None, :], members, axis=0)
    froze = rng.random(members) < freeze_probability(u, design)
    return ParameterDraw(u, froze)


def crossing_years(
    froze: np.ndarray, years: int, earliest: float, rng: np.random.Generator
) -> np.ndarray:
    """When each member's ramp reaches its critical forcing: inside the run iff it freezes."""
    last = max(years - LATEST_FREEZE_MARGIN, earliest + 1.0)
    inside = earliest + rng.random(len(froze)) * (last - earliest)
    outside = (1.6 + 2.4 * rng.random(len(froze))) * years
    return np.where(froze, inside, outside)


def table_truth(design: str) -> dict[str, object]:
    """What truth.json says about the parameter design (detectors never read it)."""
    return {
        "design": design,
        "parameters": [
            {
                "parameter": p.name,
                "default": p.default,
                "min": p.low,
                "max": p.high,
                "role": (
                    "main"
                    if p.name == MAIN
                    else "interaction-only"
                    if p.name == INTERACTING
                    else "nuisance"
                )
                if design == "freeze"
                else "nuisance",
            }
            for p in PARAMETERS
        ],
        "probability": (
            "sigmoid(z), z = 6 (0.5 - u_albedo_snow) + 20 (0.5 - u_albedo_snow)"
            " (u_vmix_background - 0.5), u = (value - min) / (max - min)"
            if design == "freeze"
            else "1/2 for every member"
        ),
    }
