"""Land response of perturbed-parameter ensembles (PPE): what each CLM parameter plants.

A PPE member's land features are the coupled or offline background plus a response that is
linear in each parameter's value (:func:`land_response`), so the effect of every parameter in
each setup is known exactly; :mod:`synth.ensemble` adds it to the members' series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from synth.physics import month_of

if TYPE_CHECKING:
    from synth.scenarios import LandParameter

PPE_SEASON = (0.05, 0.05, 0.05, 0.2, 0.5, 1.0, 1.0, 1.0, 0.5, 0.2, 0.05, 0.05)
"""Seasonal shape of a land parameter's response: full in JJA, so JJA means show the effect."""
OFFLINE_REPLICATE_NOISE = 0.1
"""Offline replicates share their forcing; they differ by this fraction of feature noise."""
LAND_TARGETS: Mapping[str, float] = MappingProxyType({
    "eflx_lh_tot_north_america_ne": 1.0,  # W m-2 per W m-2 of latent heat effect
    "fsh_north_america_ne": -0.7,  # W m-2: energy that no longer leaves as latent heat
    "qrunoff_north_america_ne": -0.8,  # mSv: 1 W m-2 of ET over the region is ~1 mSv of water
    "tsa_greenland": -0.03,  # K: a weak downstream signal in the 2 m temperature
})
"""Response of each land feature per W m-2 of a parameter's latent-heat effect."""


def land_response(parameters: Sequence[LandParameter], values: Sequence[Mapping[str, float]],
                  setup: str, n_months: int) -> dict[str, np.ndarray]:
    """Planted response of each land target to each member's parameter values.

    Linear in each parameter: ``effect * (value - default) / (max - min)``, so the response at
    the maximum minus that at the minimum is exactly the parameter's effect in ``setup``
    (``offline`` or ``coupled``), scaled per target by :data:`LAND_TARGETS`.

    Returns
    -------
    dict
        Target feature -> ``(members, months)`` anomaly to add, canonical units.
    """
    latent = np.zeros(len(values))
    for p in parameters:
        position = np.array([(v[p.name] - p.default) / (p.high - p.low) for v in values])
        latent = latent + p.effect(setup) * position
    shape = np.asarray(PPE_SEASON)[month_of(n_months)]
    return {name: per_unit * latent[:, None] * shape[None, :]
            for name, per_unit in LAND_TARGETS.items()}
