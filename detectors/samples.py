"""Precursor samples: windows of monthly features ending a lead time before onset.

Positives are windows of frozen members ending L months (within a short span) before their
onset.  Negatives come from the *same configuration* at the *same model times*: members
that do not freeze within the horizon, including a frozen member's own windows long before
its onset.  Matching the model time of positives and negatives keeps "time since start"
from passing as skill (the ``model_year`` baseline measures what is left of it).

A negative must be *known* to be one: an unfrozen member's windows whose horizon (lead +
margin) reaches its censoring month (``Labels.censored_from``: the record ends before an
onset could be seen) are dropped and counted, never labelled 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from detectors.labels import Labels
from ensembles.timeaxis import month_key, month_number

View = Literal["full", "drivers"]
NO_ONSET = 10**9  # onset index of a member that did not freeze


class SampleRule(BaseModel):
    """How windows are cut; recorded in every result."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    leads_months: tuple[int, ...] = (6, 12, 24, 36)
    window_months: int = Field(24, ge=6)
    block_months: int = Field(6, ge=1, description="summary block length (lag resolution)")
    positive_span_months: int = Field(6, ge=1, description="window ends per frozen member")
    negative_margin_months: int = Field(
        24, ge=0, description="a negative window must end this long before any onset + lead"
    )
    max_missing_fraction: float = Field(0.1, ge=0, lt=1)


VIEW_ROLES: dict[str, tuple[str, ...]] = {
    "full": ("state", "driver", "feedback"),
    "drivers": ("driver",),
}
VIEW_RULES = {
    "full": "state, driver and feedback features (symptoms rank first: early warning)",
    "drivers": "driver features only; state and feedback features excluded",
}


@dataclass(frozen=True)
class Source:
    """The member x feature x time values the windows were cut from.

    Kept so that the permutation null can hand one member's series to another member's
    outcome (``detectors.permutation``) at the same model times.
    """

    data: np.ndarray  # (members, features, time) raw values, float32
    members: np.ndarray  # (members,) names
    configuration: np.ndarray  # (members,)
    first_valid: np.ndarray  # (members,) first time index with data
    last_valid: np.ndarray  # (members,) last time index with data
    onset: np.ndarray  # (members,) time index of the onset (a huge number when none)


@dataclass
class SampleSet:
    """Windows for one lead and view, as raw values.

    Seasonal climatology and scaling are fitted per cross-validation fold on training
    members only (:class:`Standardiser`), so nothing about test members leaks in.
    """

    lead: int
    view: str
    features: list[str]
    processes: list[str]
    roles: list[str]
    sequences: np.ndarray  # (n, n_features, window) raw monthly values
    y: np.ndarray  # (n,) 0/1
    member: np.ndarray  # (n,) member names
    configuration: np.ndarray  # (n,)
    end_index: np.ndarray  # (n,) time index of the window's last month
    model_month: np.ndarray  # (n,) months since the member's first month
    end_month: np.ndarray  # (n,) calendar month (1-12) of the window's last month
    rule: SampleRule = field(default_factory=SampleRule)
    source: Source | None = None  # the series the windows come from (all members)
    row: np.ndarray | None = None  # (n,) index of each window's member in ``source``
    n_censored: int = 0  # negative windows dropped because their horizon was censored

    @property
    def groups(self) -> np.ndarray:
        """Split/bootstrap groups: member within configuration."""
        return np.char.add(
            np.char.add(self.configuration.astype(str), "/"), self.member.astype(str)
        )

    def summary_columns(self) -> list[tuple[str, int]]:
        """(feature, lag before onset in months) of each column of :func:`summarise`."""
        n_blocks = self.rule.window_months // self.rule.block_months
        return [
            (f, self.lead + b * self.rule.block_months)
            for f in self.features
            for b in range(n_blocks)
        ]

    def select(self, names: list[str], view: str) -> SampleSet:
        """The same windows with only the channels ``names`` (in that order)."""
        index = [self.features.index(n) for n in names]
        source = (replace(self.source, data=self.source.data[:, index])
                  if self.source is not None else None)
        return replace(
            self,
            view=view,
            features=list(names),
            processes=[self.processes[i] for i in index],
            roles=[self.roles[i] for i in index],
            sequences=self.sequences[:, index],
            source=source,
        )

    def subset(self, index: np.ndarray) -> SampleSet:
        return replace(
            self,
            sequences=self.sequences[index],
            y=self.y[index],
            member=self.member[index],
            configuration=self.configuration[index],
            end_index=self.end_index[index],
            model_month=self.model_month[index],
            end_month=self.end_month[index],
            row=self.row[index] if self.row is not None else None,
        )


def summarise(sequences: np.ndarray, block: int) -> np.ndarray:
    """Block means of each feature, latest block first (lag 0 = the block ending the window).

    Block summaries keep lag information (which months before onset matter) with far fewer
    inputs than the full sequence, which suits the MLP, logistic and tree models.
    """
    n_blocks = sequences.shape[2] // block
    tail = sequences[:, :, sequences.shape[2] - n_blocks * block :]
    blocks = tail.reshape(*tail.shape[:2], n_blocks, block)
    means = np.nanmean(blocks, axis=3)[:, :, ::-1]
    return means.reshape(sequences.shape[0], -1)


class Standardiser:
    """Seasonal anomalies and z-scores fitted on training windows only.

    The climatology of each feature and calendar month is the mean over the training
    windows' values in that month; the scale is the standard deviation of the resulting
    anomalies.  Missing values become 0 (the climatology) after standardisation.
    """

    def fit(self, samples: SampleSet) -> Standardiser:
        months = _position_months(samples)
        seq = samples.sequences.astype(float)
        self.clim = np.zeros((seq.shape[1], 12))
        for m in range(12):
            values = np.where(months[:, None, :] == m, seq, np.nan)
            with np.errstate(invalid="ignore"):
                self.clim[:, m] = np.nan_to_num(np.nanmean(values, axis=(0, 2)))
        anom = seq - self.clim[:, months].transpose(1, 0, 2)
        self.scale = np.nanstd(anom, axis=(0, 2))
        self.scale[~np.isfinite(self.scale) | (self.scale == 0)] = 1.0
        return self

    def transform(self, samples: SampleSet) -> np.ndarray:
        months = _position_months(samples)
        anom = samples.sequences - self.clim[:, months].transpose(1, 0, 2)
        return np.nan_to_num(anom / self.scale[None, :, None]).astype(np.float32)


def _position_months(samples: SampleSet) -> np.ndarray:
    """Calendar month index (0-11) of every window position, shape (n, window)."""
    offsets = np.arange(-samples.sequences.shape[2] + 1, 1)
    return (samples.end_month[:, None] - 1 + offsets[None, :]) % 12


def view_features(features: xr.Dataset | SampleSet, view: str) -> list[str]:
    """Features whose role the view admits (see :data:`VIEW_ROLES`)."""
    roles = VIEW_ROLES[view]
    if isinstance(features, SampleSet):
        return [f for f, r in zip(features.features, features.roles, strict=True) if r in roles]
    return sorted(
        name for name, var in features.data_vars.items() if var.attrs.get("role") in roles
    )


def onset_index(labels: Labels, times: xr.DataArray) -> dict[str, int]:
    """Time index of each frozen member's onset month."""
    keys = [month_key(t) for t in times.values]
    position = {k: i for i, k in enumerate(keys)}
    return {
        str(m): position[o]
        for m, o in zip(labels.onset.member.values, labels.onset.values, strict=True)
        if o and o in position
    }


def censor_index(labels: Labels, times: xr.DataArray) -> dict[str, int]:
    """Time index (may lie past the record) from which each unfrozen member is censored."""
    first = month_number(month_key(times.values[0]))
    return {
        str(m): month_number(c) - first
        for m, c in zip(labels.censored_from.member.values, labels.censored_from.values,
                        strict=True)
        if c
    }


def build_samples(
    features: xr.Dataset,
    labels: Labels,
    lead: int,
    configuration: xr.DataArray | None = None,
    rule: SampleRule | None = None,
) -> SampleSet:
    """Positive and matched negative windows for one lead, over every feature with a role.

    Views select channels afterwards (:meth:`SampleSet.select`), so all views and the
    baselines see exactly the same windows.
    """
    rule = rule or SampleRule()
    names = sorted(n for n, v in features.data_vars.items() if v.attrs.get("role"))
    if not names:
        raise ValueError("no features with a role (state, driver, feedback) in the table")
    data = np.stack([features[n].transpose("member", "time").values for n in names], axis=1)
    members = features.member.values.astype(str)
    config = (
        np.asarray(configuration.values).astype(str)
        if configuration is not None
        else np.full(members.size, "default")
    )
    onsets = onset_index(labels, features.time)
    censored = censor_index(labels, features.time)
    # the earliest month each member's outcome is unknown or positive from
    horizon_end = {m: onsets.get(m, censored.get(m)) for m in set(onsets) | set(censored)}
    calendar_month = features.time.dt.month.values
    first_valid = _first_valid(data)
    win = rule.window_months
    picks: list[tuple[int, int, int]] = []  # (member index, end index, label)
    dropped: set[tuple[int, int]] = set()
    for i, member in enumerate(members):
        if member not in onsets:
            continue
        for k in range(rule.positive_span_months):
            end = onsets[member] - lead - k
            if end - win + 1 < first_valid[i]:
                continue
            picks.append((i, end, 1))
            for j in range(members.size):
                if config[j] != config[i] or end - win + 1 < first_valid[j]:
                    continue
                if _negative_ok(horizon_end.get(members[j]), end, lead, rule):
                    picks.append((j, end, 0))
                elif members[j] not in onsets:
                    dropped.add((j, end))
    picks = list(dict.fromkeys(picks))  # a negative can match several positives
    picks = [p for p in picks if _complete(data[p[0], :, p[1] - win + 1 : p[1] + 1], rule)]
    rows = np.array([p[0] for p in picks], dtype=int)
    ends = np.array([p[1] for p in picks], dtype=int)
    seq = (
        np.stack([data[r, :, e - win + 1 : e + 1] for r, e in zip(rows, ends, strict=True)])
        if picks
        else np.empty((0, len(names), win))
    )
    return SampleSet(
        lead=lead,
        view="all",
        features=names,
        processes=[features[n].attrs.get("process", "") for n in names],
        roles=[features[n].attrs.get("role", "") for n in names],
        sequences=seq.astype(np.float32),
        y=np.array([p[2] for p in picks], dtype=int),
        member=members[rows],
        configuration=config[rows],
        end_index=ends,
        model_month=ends - first_valid[rows],
        end_month=calendar_month[ends],
        rule=rule,
        source=Source(data.astype(np.float32), members, config, first_valid, _last_valid(data),
                      np.array([onsets.get(m, NO_ONSET) for m in members])),
        row=rows,
        n_censored=len(dropped),
    )


def _first_valid(data: np.ndarray) -> np.ndarray:
    """First time index with any data, per member (members may start at different years)."""
    has = ~np.all(np.isnan(data), axis=1)
    return np.where(has.any(axis=1), has.argmax(axis=1), data.shape[2])


def _last_valid(data: np.ndarray) -> np.ndarray:
    has = ~np.all(np.isnan(data), axis=1)
    return np.where(has.any(axis=1), data.shape[2] - 1 - has[:, ::-1].argmax(axis=1), -1)


def _negative_ok(unknown_from: int | None, end: int, lead: int, rule: SampleRule) -> bool:
    """No onset (nor censoring) within the window's horizon: lead + margin months."""
    return unknown_from is None or end + lead + rule.negative_margin_months < unknown_from


def _complete(window: np.ndarray, rule: SampleRule) -> bool:
    return window.size > 0 and float(np.isnan(window).mean()) <= rule.max_missing_fraction
