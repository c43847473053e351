"""The Lab Sea freshwater budget around onset: the physical check beside the SHAP ranking.

For every freshwater-flux integral (mSv) the mean over the years before onset in frozen
members is compared with the same model years in members that did not freeze then, so a
ranking that blames, say, Greenland runoff can be checked against how much more runoff
actually arrived.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from detectors.labels import Labels
from detectors.samples import onset_index

YEARS_BEFORE = 5


def freshwater_budget(features: xr.Dataset, labels: Labels, years: int = YEARS_BEFORE) -> dict:
    """Mean flux before onset (frozen members) vs the same years (other members), in mSv."""
    onsets = onset_index(labels, features.time)
    terms = []
    names = [n for n, v in features.data_vars.items() if v.attrs.get("units") == "mSv"]
    span = 12 * years
    for name in sorted(names):
        values = features[name].transpose("member", "time").values
        frozen, other = [], []
        for i, member in enumerate(features.member.values.astype(str)):
            if member not in onsets or onsets[member] < span:
                continue
            window = slice(onsets[member] - span, onsets[member])
            frozen.append(np.nanmean(values[i, window]))
            others = [
                j
                for j, m in enumerate(features.member.values.astype(str))
                if m not in onsets or onsets[m] > onsets[member] + span
            ]
            if others:
                other.append(np.nanmean(values[others, window]))
        if not frozen or not other:
            continue
        attrs = features[name].attrs
        terms.append(
            {
                "feature": name,
                "process": attrs.get("process"),
                "role": attrs.get("role"),
                "frozen_msv": float(np.mean(frozen)),
                "other_msv": float(np.mean(other)),
                "difference_msv": float(np.mean(frozen) - np.mean(other)),
            }
        )
    terms.sort(key=lambda t: abs(t["difference_msv"]), reverse=True)
    return {"years_before_onset": years, "units": "mSv", "terms": terms}
