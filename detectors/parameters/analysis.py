"""The whole parameters analysis over a given feature table and parameter table.

``analyse_parameters(features, inputs, settings)`` labels the members, fits and chooses the
emulator of P(freeze | parameters), explains it (exact SHAP, Sobol, permutation null), maps
the safe region, finds the what-if change and links parameters to budget terms. It reads no
file; the service gives it the tables.

No survival model of time to onset is fitted: neither lifelines nor scikit-survival is a
dependency (the comparison's log-rank test is implemented in :mod:`detectors.compare`); the
result says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from detectors.budget.analysis import flux_differences
from detectors.labels import LabelRule, label_freezes
from detectors.parameters import results as rs
from detectors.parameters.drivers import pre_onset_terms, regress_terms
from detectors.parameters.emulator import (
    CLASSIFIERS,
    FreezeEmulator,
    choose_classifier,
    fit,
    probability,
)
from detectors.parameters.importance import directions, explain, permutation_null
from detectors.parameters.outcomes import Outcomes, member_outcomes
from detectors.parameters.region import Change, partial_dependence, safe_region, what_if
from detectors.parameters.tables import ParameterInputs
from detectors.sensitivity.emulator import sobol_indices, sobol_sample

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]
SURVIVAL_NOTE = (
    "no survival model of time to onset: lifelines / scikit-survival are not "
    "dependencies; times to onset and censoring are given per member"
)


class ParametersSettings(BaseModel):
    """Settings of the parameters analysis; echoed into every result."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    threshold: float = Field(
        0.2, gt=0, lt=1, description="P(freeze) above which a setting is unsafe"
    )
    ci_level: float = Field(0.9, gt=0.5, lt=1)
    candidates: tuple[str, ...] = tuple(CLASSIFIERS)
    cv_folds: int = Field(5, ge=2)
    cv_repeats: int = Field(3, ge=1)
    cv_tolerance: float = Field(0.02, ge=0, description="log-loss slack for the simpler model")
    n_bootstrap: int = Field(60, ge=5)
    n_permutations: int = Field(99, ge=19)
    alpha: float = Field(0.05, gt=0, lt=1)
    region_points: int = Field(2048, ge=64, description="power of 2 (Sobol sample)")
    sobol_base: int = Field(512, ge=16, description="power of 2")
    grid_points: int = Field(21, ge=5)
    map_points: int = Field(25, ge=5)
    budget_years: int = Field(5, ge=1)
    seed: int = 0
    label: LabelRule = Field(default_factory=LabelRule)


def _groups(features: xr.Dataset, members: list[str]) -> tuple[np.ndarray, str]:
    if "configuration" in features.coords:
        config = features["configuration"].values.astype(str)
        if len(set(config)) > 2:
            return config, "configuration"
    return np.array(members), "member"


def _change_row(
    change: Change | None, inputs: ParameterInputs, default: np.ndarray
) -> rs.ChangeRow | None:
    if change is None:
        return None
    names = inputs.names
    moves = {}
    for column, target in zip(change.columns, change.target, strict=True):
        before = float(inputs.unscale(default)[column])
        after = float(
            inputs.unscale(np.where(np.arange(len(names)) == column, target, default))[column]
        )
        moves[names[column]] = rs.ParameterMove(default=before, value=after, change=after - before)
    return rs.ChangeRow(
        parameters=moves,
        distance=change.distance,
        distance_ci=change.distance_band,
        p_freeze=change.p_freeze,
        p_freeze_ci=change.p_band,
        confident=change.confident,
    )


def _drivers(
    features: xr.Dataset,
    outcomes: Outcomes,
    labels,
    x: np.ndarray,
    names: list[str],
    directions_: list[str],
    significant: list[bool],
    settings: ParametersSettings,
) -> list[rs.DriverLink]:
    terms, values = pre_onset_terms(features, outcomes, settings.budget_years)
    if not terms:
        return []
    budget = flux_differences(features, labels, settings.budget_years)
    links = []
    tested = [j for j in range(len(names)) if significant[j]]
    if not tested:
        return []
    for slope in regress_terms(x, terms, values, tested):
        j = slope.parameter
        hit = slope.p_holm < settings.alpha
        difference = budget.get(slope.term)
        risky = directions_[j]
        arrow_p = {"+": "↑", "-": "↓"}.get(risky, "?")
        moved = np.sign(slope.slope) * (1 if risky == "+" else -1)
        arrow_t = "↑" if moved > 0 else "↓"
        consistent = None if difference is None or not hit else bool(np.sign(difference) == moved)
        chain = (
            f"{names[j]} {arrow_p} → {slope.term} {arrow_t} → freeze"
            if hit
            else f"{names[j]} does not move {slope.term} significantly"
        )
        links.append(
            rs.DriverLink(
                parameter=names[j],
                term=slope.term,
                process=features[slope.term].attrs.get("process"),
                slope_msv=slope.slope,
                p_value=slope.p_value,
                p_holm=slope.p_holm,
                significant=hit,
                frozen_minus_other_msv=difference,
                chain=chain,
                consistent=consistent,
            )
        )
    links.sort(key=lambda link: (not link.significant, link.p_holm))
    return links


def analyse_parameters(
    features: xr.Dataset,
    inputs: ParameterInputs,
    settings: ParametersSettings | None = None,
    ensembles: list[str] | None = None,
    progress: Progress | None = None,
) -> rs.ParametersResult:
    """P(freeze | parameters), importance, safe region, what-if and driver links.

    Raises
    ------
    ConfigurationError
        Too few frozen or unfrozen members, or too many parameters for exact SHAP.
    """
    settings = settings or ParametersSettings()
    step = progress or (lambda fraction, message: None)
    members = [str(m) for m in features["member"].values]
    labels = label_freezes(features, settings.label)
    outcomes = member_outcomes(features, labels)
    values = inputs.values.loc[members]
    x = inputs.scale(values.to_numpy(dtype=float))
    y = outcomes.froze.astype(bool)
    names = inputs.names
    p = len(names)
    groups, grouped_by = _groups(features, members)
    step(0.05, "choosing the emulator")
    emulator = choose_classifier(
        x,
        y,
        groups,
        settings.candidates,
        settings.cv_folds,
        settings.cv_repeats,
        settings.cv_tolerance,
        settings.seed,
    )
    emulator.bootstrap(settings.n_bootstrap)
    step(0.2, "explaining")
    explanation = explain(emulator.predict, x)
    sample = sobol_sample(names, settings.sobol_base, settings.seed)
    sobol = sobol_indices(names, sample, emulator.predict(sample), settings.ci_level, settings.seed)
    step(0.3, f"{settings.n_permutations} permutations")

    def refit(labels_: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        model = fit(CLASSIFIERS[emulator.name].make(p, settings.seed), x, labels_)
        return lambda u: probability(model, u)

    null = permutation_null(refit, x, y, explanation, settings.n_permutations, settings.seed)
    significant = [bool(v < settings.alpha) for v in null.p_values]
    dirs = directions(x, explanation.shap)
    pairs = []
    for j in range(p):
        for k in range(j + 1, p):
            pairs.append(
                rs.PairRow(
                    parameters=(names[j], names[k]),
                    strength=float(explanation.pair_statistic[j, k]),
                    p_value=float(null.pair_p_values[j, k]),
                    significant=bool(null.pair_p_values[j, k] < settings.alpha),
                )
            )
    pairs.sort(key=lambda r: r.strength, reverse=True)
    order = np.argsort(-explanation.importance, kind="stable")
    rank = {int(j): r + 1 for r, j in enumerate(order)}

    def finite(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    rows = []
    for j in order:
        spec = inputs.specs[names[j]]
        partners = [
            b if a == names[j] else a
            for (a, b), row in ((r.parameters, r) for r in pairs)
            if row.significant and names[j] in (a, b)
        ]
        rows.append(
            rs.ParameterRow(
                parameter=names[j],
                units=spec.units,
                default=spec.default,
                min=spec.low,
                max=spec.high,
                rank=rank[int(j)],
                importance=float(explanation.importance[j]),
                importance_logit=float(explanation.statistic[j]),
                direction=dirs[j],
                s1=finite(sobol.s1[j]),
                st=finite(sobol.st[j]),
                interaction_share=finite(sobol.st[j] - sobol.s1[j]),
                partners=partners,
                p_value=float(null.p_values[j]),
                significant=significant[j],
            )
        )
    step(0.75, "safe region and what-if")
    region = safe_region(
        emulator, settings.threshold, settings.ci_level, settings.region_points, settings.seed
    )
    grid = np.linspace(0, 1, settings.grid_points)
    dependence = []
    for j in range(p):
        pd_ = partial_dependence(emulator, (j,), grid, settings.ci_level)
        dependence.append(
            rs.DependenceRow(
                parameter=names[j],
                values=_values(inputs, j, grid).tolist(),
                p_freeze=pd_.mean.tolist(),
                low=pd_.low.tolist(),
                high=pd_.high.tolist(),
            )
        )
    pair_map = None
    if p >= 2:
        top = [int(j) for j in order[:2]]
        if pairs and pairs[0].significant:
            top = [names.index(n) for n in pairs[0].parameters]
        pair_map = _pair_map(emulator, inputs, x, y, members, top, settings)
    default = inputs.default_scaled()
    notes = list(inputs.notes)
    if default is None:
        whatif = rs.WhatIfSection(
            threshold=settings.threshold,
            default=None,
            default_p=None,
            default_p_ci=None,
            already_safe=False,
            best=None,
            alternative=None,
            note="no defaults (no parameters.csv): no what-if",
        )
    else:
        found = what_if(emulator, default, settings.threshold, settings.ci_level)
        note = (
            "the defaults are already below the threshold"
            if found.already_safe
            else "no change within the ranges brings P(freeze) below the threshold"
            if found.best is None
            else "smallest move from the defaults (fraction of each range) that brings the "
            "central P(freeze) below the threshold; 'alternative' avoids its parameters"
        )
        whatif = rs.WhatIfSection(
            threshold=settings.threshold,
            default={n: float(v) for n, v in zip(names, inputs.unscale(default), strict=True)},
            default_p=found.default_p,
            default_p_ci=found.default_band,
            already_safe=found.already_safe,
            best=_change_row(found.best, inputs, default),
            alternative=_change_row(found.alternative, inputs, default),
            note=note,
        )
    step(0.9, "parameters -> drivers")
    drivers = _drivers(features, outcomes, labels, x, names, dirs, significant, settings)
    fitted = emulator.predict(x)
    member_rows = [
        rs.MemberRow(
            member=m,
            froze=bool(y[i]),
            first_freeze=outcomes.onset[i] or None,
            time_years=float(outcomes.time_years[i]),
            censored=not bool(y[i]),
            p_freeze=float(fitted[i]),
            parameters={n: float(values.iloc[i][n]) for n in names},
        )
        for i, m in enumerate(members)
    ]
    cv = emulator.cv
    step(1.0, "done")
    return rs.ParametersResult(
        ensembles=ensembles
        or sorted(
            {str(e) for e in features.coords.get("ensemble", xr.DataArray(["unknown"])).values}
        ),
        n_members=len(members),
        n_frozen=int(y.sum()),
        label=labels.rule.model_dump(),
        files=inputs.files,
        settings=settings.model_dump(mode="json"),
        emulator=rs.EmulatorSection(
            model=emulator.name,
            description=emulator.describe(),
            choice=f"simplest candidate within {settings.cv_tolerance} of the best "
            f"out-of-fold log loss ({settings.cv_folds}-fold, {settings.cv_repeats} "
            "repeats, stratified, grouped)",
            candidates=[
                rs.CandidateScore(
                    name=s.name, log_loss=s.log_loss, brier=s.brier, roc_auc=s.roc_auc
                )
                for s in emulator.scores.values()
            ],
            base_rate_log_loss=_entropy(float(y.mean())),
            cv_folds=settings.cv_folds,
            cv_repeats=settings.cv_repeats,
            groups=grouped_by,
            n_bootstrap=len(emulator.replicates),
            shap_explainer="exact: all 2^p coalitions enumerated, interventional background "
            "= the members",
            shap_additivity_error=explanation.additivity_error,
            cv=[
                rs.CvPoint(member=m, froze=bool(y[i]), predicted=float(cv.predicted[i]))
                for i, m in enumerate(members)
            ],
        ),
        parameters=rows,
        interactions=pairs,
        safe_region=rs.SafeRegionSection(
            threshold=settings.threshold,
            ci_level=settings.ci_level,
            n_points=region.n_points,
            fractions=region.fractions,
            safe_fraction=region.safe_fraction,
            central_safe_fraction=region.central_safe_fraction,
            definition="ruled out: lower band >= threshold; not ruled out: upper band < "
            "threshold; uncertain: otherwise (bands over bootstrap refits)",
        ),
        partial_dependence=dependence,
        pair_map=pair_map,
        what_if=whatif,
        drivers=drivers,
        survival=SURVIVAL_NOTE,
        members=member_rows,
        notes=notes,
    )


def _entropy(rate: float) -> float:
    return float(-sum(q * np.log(q) for q in (rate, 1 - rate) if q > 0))


def _values(inputs: ParameterInputs, j: int, u: np.ndarray) -> np.ndarray:
    """Scaled values of parameter ``j`` in its own units."""
    low, high = inputs.bounds()
    return low[j] + np.asarray(u, float) * (high[j] - low[j])


def _pair_map(
    emulator: FreezeEmulator,
    inputs: ParameterInputs,
    x: np.ndarray,
    y: np.ndarray,
    members: list[str],
    top: list[int],
    settings: ParametersSettings,
) -> rs.PairMap:
    """Partial dependence of P(freeze) on the top pair, its region class, the members."""
    axis = np.linspace(0, 1, settings.map_points)
    a, b = np.meshgrid(axis, axis, indexing="ij")
    grid = np.column_stack([a.ravel(), b.ravel()])
    pd_ = partial_dependence(emulator, tuple(top), grid, settings.ci_level)
    region = np.where(
        pd_.low >= settings.threshold, 0, np.where(pd_.high < settings.threshold, 1, 2)
    )
    shape = (settings.map_points, settings.map_points)
    xs, ys = _values(inputs, top[0], x[:, top[0]]), _values(inputs, top[1], x[:, top[1]])
    return rs.PairMap(
        x=inputs.names[top[0]],
        y=inputs.names[top[1]],
        x_values=_values(inputs, top[0], axis).tolist(),
        y_values=_values(inputs, top[1], axis).tolist(),
        p_freeze=pd_.mean.reshape(shape).tolist(),
        region=region.reshape(shape).tolist(),
        members=[
            rs.MapMember(member=m, x=float(xs[i]), y=float(ys[i]), froze=bool(y[i]))
            for i, m in enumerate(members)
        ],
    )
