"""Risk: the calibrated probability that a member's freeze starts within the next H months.

Unlike the precursor classifiers (one window per lead), the risk model sees every month of
every member that has not frozen yet, so a nightly scan can score the newest month of any
run.  The torch MLP ranks; Platt scaling (a logistic fit of the logit) on *held-out members*
turns its score into a probability — two parameters, so a handful of calibration members
suffice, where isotonic regression over-fitted the extremes — and the reliability on a third
group of members is reported.

Calibration is judged against *climatology*, the constant forecast of the training base rate:
the Brier skill score (1 - Brier / Brier of climatology) and the reliability are measured on
the test members of several random member splits, with member-bootstrap CIs; a model whose
BSS interval does not lie above 0 is flagged (``beats_climatology``), and alerts say so.  The
base rate of a freeze-enriched database is not that of a new run, so the probabilities are
relative to the training base rate, which is stored.  Months whose horizon reaches an
unfrozen member's censoring month (its record ends before an onset could be seen) have no
known target and are dropped and counted.  The
artifact is a state_dict plus JSON (features, climatology, scaling, calibration, versions),
loaded with ``weights_only=True``; scoring a table whose features differ is a clear error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from detectors.artifacts import load_model, save_model
from detectors.labels import Labels
from detectors.models import get_model
from detectors.precursors.results import RiskCalibration
from detectors.samples import NO_ONSET, censor_index, onset_index, summarise
from detectors.skill import group_draws, interval, weighted_brier
from ensembles import __version__
from ensembles.errors import ConfigurationError
from ensembles.timeaxis import month_key


class RiskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    horizon_months: int = Field(24, ge=1, description="target: onset within this many months")
    window_months: int = Field(24, ge=6)
    block_months: int = Field(6, ge=1)
    model: str = "mlp"
    calibration_fraction: float = Field(0.25, gt=0, lt=0.5)
    test_fraction: float = Field(0.25, gt=0, lt=0.5)
    n_splits: int = Field(
        5, ge=1, description="random member splits over which calibration and skill against "
        "climatology are measured (the saved model is the first split's)")
    n_boot: int = Field(500, ge=50, description="member-bootstrap draws for the CIs")
    seed: int = 0


@dataclass
class RiskSamples:
    x: np.ndarray  # (n, features x blocks) standardised block means
    y: np.ndarray
    member: np.ndarray
    time_index: np.ndarray


class Reliability(RiskCalibration):
    """Calibration on held-out members pooled over the repeated member splits, with the
    reliability diagram's bins."""

    bin_mean_predicted: list[float]
    bin_observed: list[float]
    bin_count: list[int]


def _climatology(values: np.ndarray, months: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per feature and calendar month means, and per feature anomaly scale (training only)."""
    clim = np.stack([np.nanmean(values[:, :, months == m], axis=(0, 2)) for m in range(1, 13)],
                    axis=1)
    anomalies = values - clim[:, months - 1][None]
    scale = np.nanstd(anomalies, axis=(0, 2))
    return np.nan_to_num(clim), np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def _windows(table: xr.Dataset, names: list[str], clim: np.ndarray, scale: np.ndarray,
             settings: RiskSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Summaries of every complete window, with (member index, end index) of each."""
    data = np.stack([table[n].transpose("member", "time").values for n in names], axis=1)
    months = table.time.dt.month.values
    anom = np.nan_to_num((data - clim[:, months - 1][None]) / scale[None, :, None])
    win = settings.window_months
    members, ends = np.meshgrid(np.arange(data.shape[0]), np.arange(win - 1, data.shape[2]),
                                indexing="ij")
    members, ends = members.ravel(), ends.ravel()
    windows = np.stack([anom[m, :, e - win + 1: e + 1] for m, e in zip(members, ends,
                                                                       strict=True)])
    return summarise(windows, settings.block_months), members, ends


def _targets(table: xr.Dataset, labels: Labels, members: np.ndarray, ends: np.ndarray,
             horizon: int) -> tuple[np.ndarray, np.ndarray, int]:
    """y = onset within (t, t + H]; months at or after onset are dropped (already frozen),
    and so are an unfrozen member's months whose horizon reaches its censoring month (the
    record ends before an onset there could be seen): returns y, the kept mask and how
    many months were censored."""
    onsets = onset_index(labels, table.time)
    censored = censor_index(labels, table.time)
    names = table.member.values.astype(str)
    onset = np.array([onsets.get(m, NO_ONSET) for m in names])[members]
    censor = np.array([censored.get(m, NO_ONSET) for m in names])[members]
    unknown = (onset == NO_ONSET) & (ends + horizon >= censor)
    keep = (ends < onset) & ~unknown
    y = (onset - ends <= horizon) & keep
    return y[keep].astype(int), keep, int(unknown.sum())


@dataclass
class RiskModel:
    """A trained, calibrated risk model and everything needed to score new months."""

    network: object
    features: list[str]
    clim: np.ndarray
    scale: np.ndarray
    calibration: tuple[float, float]  # Platt: p = expit(a * logit(raw) + b)
    settings: RiskSettings
    reliability: Reliability

    def score(self, table: xr.Dataset) -> xr.DataArray:
        """Calibrated P(onset within H months), dims (member, time), NaN before a window."""
        missing = [f for f in self.features if f not in table]
        if missing:
            raise ConfigurationError(f"the risk model needs features the table lacks: "
                                     f"{', '.join(missing)}")
        x, members, ends = _windows(table, self.features, self.clim, self.scale, self.settings)
        p = calibrate(self.network.predict_proba(x), self.calibration)
        out = np.full((table.sizes["member"], table.sizes["time"]), np.nan)
        out[members, ends] = p
        return xr.DataArray(out, coords={"member": table.member, "time": table.time},
                            name="risk", attrs={"units": "1", "long_name":
                                                f"P(freeze onset within "
                                                f"{self.settings.horizon_months} months)"})

    def save(self, directory: str | Path, training_ensembles: list[str]) -> Path:
        metadata = {
            "features": [f"{f}@lag{b}" for f in self.features
                         for b in range(self.settings.window_months // self.settings.block_months)],
            "risk_features": self.features, "clim": self.clim.tolist(),
            "scale": self.scale.tolist(), "settings": self.settings.model_dump(),
            "calibration": list(self.calibration),
            "reliability": self.reliability.model_dump(), "esmwatch_version": __version__,
            "training_ensembles": training_ensembles,
        }
        return save_model(self.network, self.settings.model, directory, metadata)

    @classmethod
    def load(cls, directory: str | Path, expected_features: list[str] | None = None) -> RiskModel:
        """Reload with ``weights_only=True``; other features than the saved ones are an error."""
        network, document = load_model(directory)
        meta = document["metadata"]
        if expected_features is not None and sorted(expected_features) != sorted(
                meta["risk_features"]):
            missing = sorted(set(meta["risk_features"]) - set(expected_features))
            extra = sorted(set(expected_features) - set(meta["risk_features"]))
            raise ConfigurationError(f"risk model {directory} was trained on other features: "
                                     f"missing {missing or 'none'}, extra {extra or 'none'}")
        return cls(network, meta["risk_features"], np.array(meta["clim"]),
                   np.array(meta["scale"]), tuple(meta["calibration"]),
                   RiskSettings(**meta["settings"]),
                   Reliability(**meta["reliability"]))


def before_onset(risk: xr.DataArray, onsets: Mapping[str, str]) -> xr.DataArray:
    """Risk blanked from each member's onset month (``"YYYY-MM"``) on: the model never saw
    frozen months, so no risk is defined there."""
    months = np.array([month_key(t) for t in risk.time.values])
    frozen = np.stack([months >= onsets[str(m)] if str(m) in onsets
                       else np.zeros(months.size, bool) for m in risk.member.values])
    return risk.where(~frozen)


def _split_members(names: np.ndarray, settings: RiskSettings, frozen: set[str]
                   ) -> tuple[set[str], set[str], set[str]]:
    """Train / calibration / test members, each with frozen and unfrozen members."""
    rng = np.random.default_rng(settings.seed)
    sets: tuple[set[str], set[str], set[str]] = (set(), set(), set())
    for group in (sorted(frozen), sorted(set(map(str, names)) - frozen)):
        order = list(rng.permutation(group))
        n_cal = max(1, round(settings.calibration_fraction * len(order)))
        n_test = max(1, round(settings.test_fraction * len(order)))
        sets[1].update(order[:n_cal])
        sets[2].update(order[n_cal:n_cal + n_test])
        sets[0].update(order[n_cal + n_test:])
    return sets


def reliability(y: np.ndarray, p: np.ndarray, raw: np.ndarray, members: list[str],
                bins: int = 10) -> Reliability:
    """Reliability bins, ECE and Brier scores of calibrated ``p`` (and ``raw``) against ``y``."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    mean_p, observed, count = [], [], []
    for b in range(bins):
        sel = which == b
        if sel.any():
            mean_p.append(float(p[sel].mean()))
            observed.append(float(y[sel].mean()))
            count.append(int(sel.sum()))
    ones = np.ones((1, y.size))
    return Reliability(bin_mean_predicted=mean_p, bin_observed=observed, bin_count=count,
                       expected_calibration_error=float(_ece(y, p, ones, bins)[0]),
                       brier_raw=float(weighted_brier(y, raw, ones)[0]),
                       brier_calibrated=float(weighted_brier(y, p, ones)[0]),
                       test_members=members)


def _ece(y: np.ndarray, p: np.ndarray, w: np.ndarray, bins: int = 10) -> np.ndarray:
    """Expected calibration error for each row of sample weights ``w`` (B, n)."""
    which = np.clip(np.digitize(p, np.linspace(0, 1, bins + 1)) - 1, 0, bins - 1)
    one_hot = np.zeros((p.size, bins))
    one_hot[np.arange(p.size), which] = 1.0
    w = np.atleast_2d(w)
    count, pred, obs = w @ one_hot, (w * p) @ one_hot, (w * y) @ one_hot
    return np.abs(pred - obs).sum(axis=1) / count.sum(axis=1)


@dataclass
class _Split:
    """One member split's fitted model, calibration and held-out predictions."""

    network: object
    platt: tuple[float, float]
    y: np.ndarray  # test months
    p: np.ndarray  # calibrated risk
    raw: np.ndarray
    climatology: float  # training (train + calibration) base rate
    members: np.ndarray  # test member of each month
    test: set[str]


def _fit_split(x: np.ndarray, y: np.ndarray, member_names: np.ndarray, frozen: set[str],
               settings: RiskSettings, seed: int) -> _Split:
    train, calib, test = _split_members(member_names, settings.model_copy(update={"seed": seed}),
                                        frozen)
    part = {name: np.isin(member_names, sorted(s)) for name, s in
            (("train", train), ("calib", calib), ("test", test))}
    network = get_model(settings.model).build(seed=seed).fit(
        x[part["train"]], y[part["train"]], groups=member_names[part["train"]])
    raw = {k: network.predict_proba(x[v]) for k, v in part.items() if k != "train"}
    platt = fit_platt(raw["calib"], y[part["calib"]])
    seen = part["train"] | part["calib"]
    return _Split(network, platt, y[part["test"]], calibrate(raw["test"], platt), raw["test"],
                  float(y[seen].mean()), member_names[part["test"]], test)


def _pooled_reliability(splits: list[_Split], settings: RiskSettings, n_censored: int,
                        base_rate: float) -> Reliability:
    """Reliability and skill against climatology pooled over splits, member-bootstrap CIs."""
    y = np.concatenate([s.y for s in splits])
    p = np.concatenate([s.p for s in splits])
    clim = np.concatenate([np.full(s.y.size, s.climatology) for s in splits])
    members = np.concatenate([s.members for s in splits])
    rel = reliability(y, p, np.concatenate([s.raw for s in splits]),
                      sorted(set().union(*(s.test for s in splits))))
    ones = np.ones((1, y.size))
    draws = group_draws(members, settings.n_boot, settings.seed)
    brier, brier_clim = weighted_brier(y, p, draws), weighted_brier(y, clim, draws)
    with np.errstate(invalid="ignore", divide="ignore"):
        bss = 1.0 - brier / brier_clim
    point_clim = float(weighted_brier(y, clim, ones)[0])
    bss_ci = interval(bss, 0.9)
    return rel.model_copy(update={
        "brier_calibrated_ci": interval(brier, 0.9),
        "expected_calibration_error_ci": interval(_ece(y, p, draws), 0.9),
        "brier_climatology": point_clim,
        "brier_skill_score": 1.0 - rel.brier_calibrated / point_clim if point_clim else None,
        "brier_skill_score_ci": bss_ci if np.isfinite(bss_ci).all() else None,
        "beats_climatology": bool(np.isfinite(bss_ci[0]) and bss_ci[0] > 0),
        "training_base_rate": base_rate, "n_splits": len(splits),
        "n_censored_months": n_censored})


def train_risk(table: xr.Dataset, labels: Labels, settings: RiskSettings | None = None
               ) -> RiskModel:
    """Train on some members, calibrate on others, measure reliability on the rest.

    The split is repeated ``n_splits`` times with other members; reliability and the skill
    against climatology pool the held-out months of all splits; the first split's model is
    the one returned (and saved).
    """
    settings = settings or RiskSettings()
    names = sorted(n for n, v in table.data_vars.items() if v.attrs.get("role"))
    frozen = {str(m) for m, f in zip(labels.froze.member.values, labels.froze.values,
                                     strict=True) if f}
    if len(frozen) < 3:
        raise ConfigurationError(f"risk needs at least 3 frozen members, got {len(frozen)}")
    first_train, _, _ = _split_members(table.member.values, settings, frozen)
    data = np.stack([table[n].sel(member=sorted(first_train)).transpose("member", "time").values
                     for n in names], axis=1)
    clim, scale = _climatology(data, table.time.dt.month.values)
    x, members, ends = _windows(table, names, clim, scale, settings)
    y, keep, n_censored = _targets(table, labels, members, ends, settings.horizon_months)
    x, member_names = x[keep], table.member.values.astype(str)[members[keep]]
    splits = [_fit_split(x, y, member_names, frozen, settings, settings.seed + k)
              for k in range(settings.n_splits)]
    first = splits[0]
    train = ~np.isin(member_names, sorted(first.test))
    rel = _pooled_reliability(splits, settings, n_censored, float(y[train].mean()))
    return RiskModel(first.network, names, clim, scale, first.platt, settings, rel)


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(p, 1e-6, 1 - 1e-6))


def fit_platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    fit = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], y)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def calibrate(raw: np.ndarray, platt: tuple[float, float]) -> np.ndarray:
    return expit(platt[0] * _logit(raw) + platt[1])
