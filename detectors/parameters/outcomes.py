"""Each member's outcome: frozen or not, and time to onset censored at the end of its run.

The freeze labels are :func:`detectors.labels.label_freezes`' (the same rule as every other
analysis); this module only turns them into the two outcomes the parameter analysis and the
comparison need. A member's run ends at its last month with any finite feature, so a member
whose archive stops early is censored there, not at the end of the longest run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from detectors.labels import Labels
from detectors.samples import onset_index

MONTHS = 12


@dataclass(frozen=True)
class Outcomes:
    """Per-member outcomes, in the feature table's member order.

    Attributes
    ----------
    members
        Case names.
    froze
        The member froze within its run.
    time_years
        Years from the start of the run to onset (frozen) or to the end of the run (censored).
    run_years
        Length of each member's run in years.
    onset
        ``YYYY-01`` of onset, ``""`` when censored.
    """

    members: list[str]
    froze: np.ndarray
    time_years: np.ndarray
    run_years: np.ndarray
    onset: list[str]

    @property
    def event(self) -> np.ndarray:
        return self.froze


def member_outcomes(features: xr.Dataset, labels: Labels) -> Outcomes:
    """Frozen/not and time to onset of every member of ``features``."""
    members = [str(m) for m in features["member"].values]
    stacked = np.stack(
        [features[n].transpose("member", "time").values for n in features.data_vars], axis=0
    )
    finite = np.isfinite(stacked).any(axis=0)  # (member, time)
    last = np.where(finite.any(axis=1), finite.shape[1] - np.argmax(finite[:, ::-1], axis=1), 0)
    onsets = onset_index(labels, features["time"])
    froze = np.array([m in onsets for m in members])
    months = np.array([onsets.get(m, last[i]) for i, m in enumerate(members)], dtype=float)
    onset_of = dict(zip(labels.onset.member.values.astype(str), labels.onset.values, strict=True))
    return Outcomes(
        members,
        froze,
        months / MONTHS,
        last / MONTHS,
        [str(onset_of.get(m, "") or "") for m in members],
    )
