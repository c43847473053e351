"""Anomalies before onset: frozen members against same-configuration members not frozen then.

For each frozen member the mean of a series over the N years before its onset is compared
with the mean, over the same model months, of every member of its configuration that is
known not to freeze within N years after that onset. A member whose record ends too soon to
rule out an onset (``Labels.censored_from``) is known unfrozen only up to that month: it is
not a comparison for a window whose N years after onset reach past it. The anomaly is the
mean of those differences over frozen members; its interval comes from a bootstrap over
members (frozen and comparison members drawn together, so both sides' sampling enters),
percentile, 90%.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.skill import group_counts, interval


@dataclass(frozen=True)
class Comparison:
    """Which windows and members are compared, shared by every series of one budget."""

    frozen: np.ndarray  # (F,) member index of each frozen member used
    windows: list[slice]  # (F,) months before its onset
    eligible: np.ndarray  # (F, M) bool: member j is a comparison for frozen member i
    counts: np.ndarray  # (B, M) bootstrap draws of members
    censored_pairs: int = 0  # (frozen, comparison) pairs dropped because of censoring

    @classmethod
    def build(
        cls,
        onsets: dict[int, int],
        configuration: np.ndarray,
        span: int,
        n_boot: int,
        seed: int,
        censored: dict[int, int] | None = None,
    ) -> Comparison:
        """From onset indices by member index (frozen members only) and, for unfrozen
        members, the index from which an onset cannot be ruled out (``censored``)."""
        n = configuration.size
        never = np.iinfo(np.int64).max
        censored = censored or {}
        onset_of = np.array([onsets.get(j, never) for j in range(n)])
        known_until = np.array([onsets.get(j, censored.get(j, never)) for j in range(n)])
        frozen = np.array(sorted(i for i, t in onsets.items() if t >= span), dtype=int)
        eligible = np.zeros((frozen.size, n), dtype=bool)
        dropped = 0
        for k, i in enumerate(frozen):
            same = configuration == configuration[i]
            eligible[k] = same & (known_until > onsets[i] + span)
            dropped += int((same & (onset_of > onsets[i] + span)).sum() - eligible[k].sum())
        keep = eligible.any(axis=1)
        frozen, eligible = frozen[keep], eligible[keep]
        windows = [slice(onsets[i] - span, onsets[i]) for i in frozen]
        return cls(frozen, windows, eligible, group_counts(n, n_boot, seed), dropped)

    @property
    def usable(self) -> bool:
        return self.frozen.size > 0

    def anomaly(self, series: np.ndarray) -> tuple[float, float, float, tuple[float, float]]:
        """Frozen mean, comparison mean, anomaly and its 90% CI of a (member, time) series."""
        means = np.stack([np.nanmean(series[:, w], axis=1) for w in self.windows])  # (F, M)
        own = means[np.arange(self.frozen.size), self.frozen]
        weight = self.eligible * np.isfinite(means)
        filled = np.where(weight, means, 0.0)
        other = (filled * weight).sum(1) / weight.sum(1)
        point = own - other
        # bootstrap: member j drawn c_j times weighs c_j as a comparison and as a frozen member
        c = self.counts  # (B, M)
        other_b = np.einsum("bm,fm->bf", c, filled * weight) / np.einsum("bm,fm->bf", c, weight)
        c_frozen = c[:, self.frozen]  # (B, F)
        with np.errstate(invalid="ignore", divide="ignore"):
            diff = np.where(np.isfinite(other_b), own[None, :] - other_b, 0.0)
            ok = np.isfinite(other_b) * c_frozen
            replicates = (diff * ok).sum(1) / ok.sum(1)
        return (
            float(np.mean(own)),
            float(np.mean(other)),
            float(np.mean(point)),
            interval(replicates, 0.9),
        )
