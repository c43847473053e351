"""``freshwater_budget``: the closed Lab Sea budget of a feature table, with anomalies."""

from __future__ import annotations

import numpy as np
import xarray as xr

from detectors.budget.anomaly import Comparison
from detectors.budget.content import (
    SALINITY,
    box_area_m2,
    content_m3,
    tendency_msv,
    term_series,
)
from detectors.budget.pathways import UNMEASURED
from detectors.budget.results import Anomaly, Budget, BudgetTerm, Explainer
from detectors.budget.settings import BudgetSettings
from detectors.labels import Labels
from detectors.samples import censor_index, onset_index
from ensembles.areas import OCEAN_AREA_ATTR
from ensembles.registry import registry

MAX_LAG_MONTHS = 12


def _anomaly(comparison: Comparison, series: np.ndarray) -> Anomaly:
    frozen, other, diff, ci = comparison.anomaly(series)

    def clean(v: float) -> float | None:
        return None if not np.isfinite(v) else v

    return Anomaly(
        frozen_msv=clean(frozen),
        other_msv=clean(other),
        anomaly_msv=clean(diff),
        anomaly_ci=None if not all(np.isfinite(ci)) else ci,
    )


def _best_lag(upstream: np.ndarray, term: np.ndarray) -> tuple[int | None, float | None]:
    """Lag (months, upstream leading) of the best correlation of monthly anomalies."""

    def deseason(x: np.ndarray) -> np.ndarray:
        months = x.shape[1] - x.shape[1] % 12
        x = x[:, :months].reshape(x.shape[0], -1, 12)
        return (x - np.nanmean(x, axis=(0, 1))).reshape(x.shape[0], -1)

    a, b = deseason(upstream), deseason(term)
    best: tuple[int | None, float | None] = (None, None)
    for lag in range(MAX_LAG_MONTHS + 1):
        x, y = a[:, : a.shape[1] - lag].ravel(), b[:, lag:].ravel()
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 24 or x[ok].std() == 0 or y[ok].std() == 0:
            continue
        r = float(np.corrcoef(x[ok], y[ok])[0, 1])
        if best[1] is None or r > best[1]:
            best = (lag, r)
    return best


def _comparison(
    features: xr.Dataset,
    labels: Labels,
    configuration: np.ndarray,
    span: int,
    n_boot: int,
    seed: int,
) -> Comparison:
    """Frozen members' windows against same-configuration members known unfrozen then."""
    members = [str(m) for m in features.member.values]
    onset_by_name = onset_index(labels, features.time)
    censor_by_name = censor_index(labels, features.time)
    onsets = {i: onset_by_name[m] for i, m in enumerate(members) if m in onset_by_name}
    censored = {i: censor_by_name[m] for i, m in enumerate(members) if m in censor_by_name}
    return Comparison.build(
        onsets, np.asarray(configuration).astype(str), span, n_boot, seed, censored
    )


def freshwater_budget(
    features: xr.Dataset,
    labels: Labels,
    configuration: np.ndarray | None = None,
    settings: BudgetSettings | None = None,
) -> Budget:
    """Tendency, every term counted once, residual, and anomalies before onset (mSv)."""
    settings = settings or BudgetSettings()
    notes: list[str] = []
    if configuration is None:
        configuration = np.full(features.sizes["member"], "default")
    span = 12 * settings.years_before_onset
    comparison = _comparison(features, labels, configuration, span, settings.n_boot, settings.seed)
    if comparison.censored_pairs:
        notes.append(
            f"{comparison.censored_pairs} comparison(s) of a frozen member with an unfrozen one "
            f"dropped: the unfrozen member's record ends before the {settings.years_before_onset} "
            "years after the onset could rule out its own freeze (censored)"
        )
    if not comparison.usable:
        notes.append(
            f"no frozen member has {settings.years_before_onset} years before onset "
            "and a same-configuration member not frozen then: no anomalies"
        )
    if settings.area_m2 is not None:
        area, area_source = settings.area_m2, "given in the budget settings"
    elif OCEAN_AREA_ATTR in features.attrs:
        area = float(features.attrs[OCEAN_AREA_ATTR])
        area_source = str(features.attrs.get(f"{OCEAN_AREA_ATTR}_source", "the ocean grid"))
    else:
        area = box_area_m2("labsea")
        area_source = (
            "labsea boxes on the sphere (no ocean grid was read: includes land, so the "
            "tendency is an upper bound; set area_m2 to the grid's ocean area)"
        )
    ref = settings.reference_salinity
    series = term_series(features, ref)
    terms: list[BudgetTerm] = []
    computable = [t for t in series if t.values is not None]
    for t in series:
        if t.values is None:
            terms.append(
                BudgetTerm(
                    source=t.pathway.source,
                    description=t.pathway.description,
                    computable=False,
                    lacks=t.lacks,
                )
            )
            continue
        explainers = [
            Explainer(
                feature=name,
                lag_months=lag,
                correlation=r,
                anomaly=_anomaly(
                    comparison, features[name].transpose("member", "time").values.astype(float)
                ),
            )
            for name in t.pathway.explained_by
            if name in features
            for lag, r in [_best_lag(features[name].transpose("member", "time").values, t.values)]
        ]
        terms.append(
            BudgetTerm(
                source=t.pathway.source,
                description=t.pathway.description,
                computable=True,
                features=t.features,
                mean_msv=float(np.nanmean(t.values)),
                anomaly=_anomaly(comparison, t.values) if comparison.usable else None,
                explained_by=explainers,
            )
        )
    by_source = {t.source: t for t in terms}
    for t in series:  # a term measured net of a pathway that is missing also carries it
        missing_import = not by_source["sea_ice_import"].computable
        if t.pathway.minus_ice_import and t.values is not None and missing_import:
            by_source[t.pathway.source].includes = ["sea_ice_import"]
            notes.append(
                f"no ice import term: {t.pathway.source} also holds the melt of imported ice"
            )
    tendency = total = residual = None
    closure = None
    if SALINITY in features:
        salinity = features[SALINITY].transpose("member", "time").values.astype(float)
        tendency_series = tendency_msv(content_m3(salinity, area, ref))
        total_series = sum(t.values for t in computable) if computable else None
        if total_series is not None:
            residual_series = tendency_series - total_series
            ok = np.isfinite(residual_series) & np.isfinite(tendency_series)
            closure = (
                float(
                    np.sqrt(np.mean(residual_series[ok] ** 2))
                    / np.sqrt(np.mean(tendency_series[ok] ** 2))
                )
                if ok.any()
                else None
            )
        if comparison.usable:
            tendency = _anomaly(comparison, tendency_series)
            if total_series is not None:
                total = _anomaly(comparison, total_series)
                residual = _anomaly(comparison, residual_series)
    else:
        notes.append(f"no {SALINITY}: freshwater content and its tendency cannot be computed")
    return Budget(
        reference_salinity=ref,
        layer_m=tuple(registry().upper_ocean_m),
        area_m2=area,
        area_source=area_source,
        years_before_onset=settings.years_before_onset,
        n_frozen=int(comparison.frozen.size),
        tendency=tendency,
        sum_of_terms=total,
        residual=residual,
        closure=closure,
        complete=all(t.computable for t in terms),
        terms=terms,
        unmeasured=list(UNMEASURED),
        notes=notes,
    )


def flux_differences(features: xr.Dataset, labels: Labels, years: int) -> dict[str, float]:
    """Frozen-minus-comparison mean over ``years`` before onset of every mSv feature.

    Per feature, not per pathway: what the parameter analysis links parameters to.
    """
    configuration = np.full(features.sizes["member"], "default")
    comparison = _comparison(features, labels, configuration, 12 * years, 50, 0)
    if not comparison.usable:
        return {}
    return {
        name: comparison.anomaly(var.transpose("member", "time").values.astype(float))[2]
        for name, var in features.data_vars.items()
        if var.attrs.get("units") == "mSv"
    }
