"""Coupled-versus-offline parameter sensitivity of one target: effects, CIs, verdicts.

:func:`analyse_sensitivity` takes both setups' feature tables, the PPE inputs read by
:func:`ensembles.ppe.load_ppe_inputs` and a target, and returns a
:class:`~detectors.sensitivity.results.SensitivityResult`. It reads no file: the planted truth
of synthetic ensembles is never seen here.

OAAT designs are analysed member by member (:mod:`.effects`), sampled designs through an
emulator per setup (:mod:`.emulator`); both give, per parameter and setup, the effect (high end
minus low end, target units) with a CI, and :func:`.verdict.classify` compares the two setups.

Effect CIs are **simultaneous over the parameters and both setups** by default (Bonferroni:
each at ``1 - (1 - ci_level) / (2 p)``), because every verdict reads both setups' intervals.
With per-parameter 90% intervals, a PPE of seven parameters would call some absent effect
present in about half of all analyses; with simultaneous intervals that happens in at most 10%
of them over both setups, and a false sign flip (two intervals excluding zero in opposite
directions) far more rarely.

The first ``spinup_years`` model years of every member are dropped before the season means
(default 2: a perturbed land state adjusts over the first years, and the coupled system with
it); the result states which years were used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from detectors.sensitivity import effects as oaat
from detectors.sensitivity import emulator as emu
from detectors.sensitivity.effects import SetupEffect
from detectors.sensitivity.results import (
    CvPoint,
    EmulatorFit,
    EmulatorSection,
    MemberRow,
    NoiseRow,
    ParameterRow,
    ResolvedFeature,
    SensitivityResult,
    SetupEffectRow,
    ShapRow,
    SobolRow,
    TargetRow,
)
from detectors.sensitivity.targets import TargetSpec, parse_target, resolve_target, responses
from detectors.sensitivity.verdict import (
    Effect,
    VerdictSettings,
    classify,
    floor,
    is_absent,
    is_present,
    margin,
    ratio_ci,
)
from ensembles.errors import ConfigurationError
from ensembles.ppe import SETUPS, PpeInputs

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]

EFFECT_DEFINITION = ("emulator mean prediction with the parameter at the top of its range minus "
                     "at the bottom, averaged over the members' own values of the other "
                     "parameters (partial-dependence difference)")
CHOICE_RULE = ("K-fold cross-validated R^2 (pooled out-of-fold predictions); the simplest "
               "candidate (linear < gp < gbm) within cv_tolerance of the best is kept")


class SensitivitySettings(BaseModel):
    """Every number of the analysis, echoed into the result."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ci_level: float = Field(0.9, gt=0.5, lt=1.0, description="level of every CI")
    simultaneous: bool = Field(True, description="effect CIs are simultaneous over the "
                               "parameters and both setups (Bonferroni: each at "
                               "1 - (1 - ci_level) / (2 p)), so that the chance of any absent "
                               "effect looking present, in either setup, is at most "
                               "1 - ci_level")
    spinup_years: int = Field(2, ge=0, description="the first model years of every member "
                              "dropped as spin-up")
    n_bootstrap: int = Field(200, ge=0, description="sampled designs: bootstrap refits")
    cv_folds: int = Field(5, ge=2)
    cv_tolerance: float = Field(0.01, ge=0.0, description="CV R^2 a simpler emulator may lose")
    emulators: tuple[str, ...] = Field(("linear", "gp", "gbm"), min_length=1)
    sobol_base_samples: int = Field(1024, ge=2, description="Saltelli base sample (power of 2)")
    shap_background: int = Field(100, ge=2, description="at most this many members as the "
                                                        "SHAP background")
    min_cv_r2: float = Field(0.5, description="below this cross-validated R^2 the result "
                             "warns that the emulator's effects are unreliable")
    seed: int = 0
    verdict: VerdictSettings = Field(default_factory=VerdictSettings)

    def effect_level(self, n_parameters: int) -> float:
        """Level of each effect's CI (Bonferroni over parameters x setups when
        ``simultaneous``)."""
        if not self.simultaneous:
            return self.ci_level
        return 1.0 - (1.0 - self.ci_level) / (2 * max(n_parameters, 1))


def _member_responses(dataset: xr.Dataset, spec: TargetSpec, members: Sequence[str],
                      setup: str, spinup_years: int, notes: list[str]
                      ) -> tuple[pd.Series, xr.DataArray]:
    series = dataset[spec.feature].sel(member=list(members))
    if spinup_years:
        years = series["time"].dt.year
        first = int(years.min())
        series = series.isel(time=np.flatnonzero((years >= first + spinup_years).values))
        if not series.sizes["time"]:
            raise ConfigurationError(
                f"{setup} runs cover {int(years.max()) - first + 1} model year(s); dropping "
                f"{spinup_years} spin-up years leaves none (set spinup_years lower)")
        notes.append(f"{setup}: model years {first:04d}-{first + spinup_years - 1:04d} "
                     f"dropped as spin-up ({spinup_years} years)")
    response, by_year = responses(series, spec)
    values = pd.Series(response.values, index=[str(m) for m in response["member"].values])
    bad = values.index[~np.isfinite(values.to_numpy())]
    if len(bad):
        notes.append(f"{len(bad)} {setup} member(s) have no {spec.season} data for "
                     f"{spec.feature} and are left out: {', '.join(bad[:5])}")
    return values[np.isfinite(values.to_numpy())], by_year.sel(
        member=[m for m in by_year["member"].values if str(m) not in set(bad)])


def _roles(inputs: PpeInputs, setup: str) -> dict[str, str]:
    design = inputs.setups[setup]
    if design.design == "sampled":
        return {str(m): "sample" for m in design.values.index}
    roles = {m: "default" for m in design.replicates}
    for name, members in design.perturbed.items():
        for m in members:
            roles[m] = f"{name}={design.values.at[m, name]:g}"
    return roles


def _oaat(response: Mapping[str, pd.Series], by_year: Mapping[str, xr.DataArray],
          inputs: PpeInputs, settings: SensitivitySettings, notes: list[str]
          ) -> tuple[dict[str, dict[str, SetupEffect]], list[NoiseRow]]:
    found, rows = {}, []
    for setup in SETUPS:
        design = inputs.setups[setup]
        noise = oaat.replicate_noise(setup, response[setup], by_year[setup], design)
        if noise.source != "replicates":
            notes.append(f"{setup}: default-parameter replicates missing ({noise.n_replicates} "
                         f"found); CIs use the year-to-year spread of season means instead")
        found[setup], more = oaat.oaat_effects(response[setup], design, noise,
                                               settings.effect_level(len(inputs.names)))
        notes.extend(more)
        rows.append(NoiseRow(setup=setup, source=noise.source,
                             replicates_missing=noise.source != "replicates", sd=noise.sd,
                             df=noise.df, n_replicates=noise.n_replicates,
                             replicates=noise.replicates))
    return found, rows


def _unit_inputs(values: pd.DataFrame, inputs: PpeInputs) -> np.ndarray:
    low = np.array([inputs.parameters[n].low for n in values.columns])
    high = np.array([inputs.parameters[n].high for n in values.columns])
    return (values.to_numpy(dtype=float) - low) / (high - low)


def _direction(u: np.ndarray, values: np.ndarray) -> str:
    if np.std(u) == 0 or np.std(values) == 0:
        return "0"
    r = float(np.corrcoef(u, values)[0, 1])
    return "+" if r > 0.1 else "-" if r < -0.1 else "0"


def _ci_or_none(ci: np.ndarray) -> tuple[float, float] | None:
    return (float(ci[0]), float(ci[1])) if np.all(np.isfinite(ci)) else None


def _number_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _sampled(response: Mapping[str, pd.Series], inputs: PpeInputs,
             settings: SensitivitySettings, progress: Progress, notes: list[str]
             ) -> tuple[dict[str, dict[str, SetupEffect]], EmulatorSection, list[SobolRow],
                        list[ShapRow]]:
    names = inputs.names
    sample = emu.sobol_sample(names, settings.sobol_base_samples, settings.seed)
    found: dict[str, dict[str, SetupEffect]] = {}
    fits, sobol_rows, shap_rows = [], [], []
    explainer, background = "", 0
    for k, setup in enumerate(SETUPS):
        members = list(response[setup].index)
        values = inputs.setups[setup].values.loc[members, names]
        u, y = _unit_inputs(values, inputs), response[setup].to_numpy(dtype=float)
        progress(0.2 + 0.4 * k, f"{setup}: cross-validating emulators")
        model = emu.choose_emulator(u, y, settings.emulators, settings.cv_folds,
                                    settings.cv_tolerance, settings.seed)
        if not model.cv.r2 >= settings.min_cv_r2:
            notes.append(f"{setup}: the best emulator ({model.name}) explains only "
                         f"R^2 = {model.cv.r2:.2f} out of sample; its effects are shrunk "
                         "towards zero and its verdicts are unreliable (more members?)")
        progress(0.3 + 0.4 * k, f"{setup}: {settings.n_bootstrap} bootstrap refits")
        low, high = emu.main_effects(model.predict, u)
        boot = emu.bootstrap(model, names, sample, settings.n_bootstrap, settings.ci_level,
                             settings.seed)
        half = emu.normal_half_width(boot.effects, settings.effect_level(len(names)))
        found[setup] = {
            n: SetupEffect(float(high[j] - low[j]), (float(high[j] - low[j] - half[j]),
                                                     float(high[j] - low[j] + half[j])),
                           float(low[j]), float(high[j]), inputs.parameters[n].low,
                           inputs.parameters[n].high, None, None)
            for j, n in enumerate(names)}
        progress(0.4 + 0.4 * k, f"{setup}: Sobol indices and SHAP")
        indices = emu.sobol_indices(names, sample, model.predict(sample), settings.ci_level,
                                    settings.seed)
        if settings.n_bootstrap:
            s1_ci = emu.percentile_ci(boot.s1, settings.ci_level)
            st_ci = emu.percentile_ci(boot.st, settings.ci_level)
        else:
            s1_ci = np.stack([indices.s1 - indices.s1_conf, indices.s1 + indices.s1_conf], 1)
            st_ci = np.stack([indices.st - indices.st_conf, indices.st + indices.st_conf], 1)
        sobol_rows += [SobolRow(parameter=n, setup=setup, s1=_number_or_none(indices.s1[j]),
                                s1_ci=_ci_or_none(s1_ci[j]), st=_number_or_none(indices.st[j]),
                                st_ci=_ci_or_none(st_ci[j])) for j, n in enumerate(names)]
        shap = emu.shap_values(model, settings.shap_background, settings.seed)
        explainer, background = shap.explainer, shap.background
        shap_rows += [ShapRow(parameter=n, setup=setup,
                              mean_abs=float(np.mean(np.abs(shap.values[:, j]))),
                              direction=_direction(u[:, j], shap.values[:, j]),
                              values=shap.values[:, j].tolist(),
                              parameter_values=values[n].tolist()) for j, n in enumerate(names)]
        fits.append(EmulatorFit(
            setup=setup, model=model.name, description=model.describe(),
            cv_r2=_number_or_none(model.cv.r2), cv_rmse=model.cv.rmse,
            candidates={c: _number_or_none(s.r2) for c, s in model.scores.items()},
            cv_folds=min(settings.cv_folds, len(y)), n_members=len(y),
            cv=[CvPoint(member=m, actual=float(a), predicted=float(p))
                for m, a, p in zip(members, y, model.cv.predicted, strict=True)],
            shap_additivity_error=shap.additivity_error))
    ci_source = ("percentiles over the bootstrap refits" if settings.n_bootstrap
                 else "SALib resampling")
    section = EmulatorSection(
        fits=fits, effect_definition=EFFECT_DEFINITION, choice=CHOICE_RULE,
        bootstrap=settings.n_bootstrap, shap_explainer=explainer, shap_background=background,
        sobol=(f"SALib Saltelli/Sobol sample, {settings.sobol_base_samples} base points x "
               f"(p + 2), through the emulator's mean prediction; uniform over each parameter's "
               f"range; CIs: {ci_source}"))
    return found, section, sobol_rows, shap_rows


def _effect_row(effect: SetupEffect, threshold: float, band: float) -> SetupEffectRow:
    return SetupEffectRow(effect=effect.effect, ci=effect.ci, low=effect.low, high=effect.high,
                          low_value=effect.low_value, high_value=effect.high_value,
                          n_low=effect.n_low, n_high=effect.n_high,
                          present=is_present(Effect(effect.effect, effect.ci), threshold),
                          absent=is_absent(Effect(effect.effect, effect.ci), band))


def _range_notes(found: Mapping[str, Mapping[str, SetupEffect]], inputs: PpeInputs) -> list[str]:
    notes = []
    for setup, by_name in found.items():
        for name, e in by_name.items():
            spec = inputs.parameters[name]
            slack = 1e-6 * (spec.high - spec.low)
            if e.low_value > spec.low + slack or e.high_value < spec.high - slack:
                notes.append(f"{name}: the {setup} runs span {e.low_value:g} to "
                             f"{e.high_value:g}, narrower than its range {spec.low:g} to "
                             f"{spec.high:g}; the effect is over the tested values")
    return notes


def analyse_sensitivity(datasets: Mapping[str, xr.Dataset], inputs: PpeInputs,
                        target: str | TargetSpec,
                        settings: SensitivitySettings | None = None, *,
                        roots: Mapping[str, Sequence[str]] | None = None,
                        progress: Progress | None = None) -> SensitivityResult:
    """Effects of every parameter on ``target`` in both setups, and the verdicts.

    Parameters
    ----------
    datasets
        ``{"coupled": features, "offline": features}`` as :func:`ensembles.features.
        build_features` returns them (dims ``member, time``).
    inputs
        Parameter values, design and pairing of both setups' members.
    target
        ``variable:region:season[:period]`` or a parsed :class:`TargetSpec`.
    settings
        Levels, emulator and verdict thresholds.
    roots
        The setups' root directories, for the result's provenance only.
    progress
        Optional ``(fraction, message)`` callback.
    """
    settings = settings or SensitivitySettings()
    step = progress or (lambda fraction, message: None)
    spec = parse_target(target) if isinstance(target, str) else target
    resolved = resolve_target(spec, datasets)
    notes = list(inputs.notes)
    response, by_year = {}, {}
    for setup in SETUPS:
        members = list(inputs.setups[setup].values.index)
        response[setup], by_year[setup] = _member_responses(
            datasets[setup], spec, members, setup, settings.spinup_years, notes)
    step(0.1, f"{inputs.design} design: {len(response['coupled'])} coupled and "
              f"{len(response['offline'])} offline members")
    noise: list[NoiseRow] = []
    section, sobol_rows, shap_rows = None, [], []
    if inputs.design == "oaat":
        found, noise = _oaat(response, by_year, inputs, settings, notes)
    else:
        found, section, sobol_rows, shap_rows = _sampled(response, inputs, settings, step, notes)
    notes.extend(_range_notes(found, inputs))
    names = [n for n in inputs.names if all(n in found[s] for s in SETUPS)]
    if not names:
        raise ConfigurationError(f"target {spec}: no parameter has an effect estimate in both "
                                 "setups")
    scale = max(abs(found[s][n].effect) for s in SETUPS for n in names)
    threshold, band = floor(settings.verdict, scale), margin(settings.verdict, scale)
    level = settings.effect_level(len(inputs.names))
    rows = []
    for name in names:
        off, cpl = found["offline"][name], found["coupled"][name]
        off_e, cpl_e = Effect(off.effect, off.ci), Effect(cpl.effect, cpl.ci)
        verdict, reason = classify(off_e, cpl_e, settings.verdict, scale, level)
        spec_p = inputs.parameters[name]
        rows.append(ParameterRow(
            parameter=name, units=spec_p.units, default=spec_p.default, min=spec_p.low,
            max=spec_p.high, offline=_effect_row(off, threshold, band),
            coupled=_effect_row(cpl, threshold, band), verdict=verdict, reason=reason,
            ratio=cpl.effect / off.effect if off.effect != 0 else None,
            ratio_ci=(ratio_ci(off_e, cpl_e, level, settings.verdict.seed)
                      if is_present(off_e, threshold) and is_present(cpl_e, threshold)
                      and off.effect * cpl.effect > 0 else None)))
    step(0.95, "verdicts")
    years = sorted({int(y) for s in SETUPS for y in by_year[s]["year"].values})
    target_row = TargetRow(
        variable=spec.variable, component=resolved["coupled"].component, region=spec.region,
        season=spec.season, period=spec.period_text, units=resolved["coupled"].units,
        feature=spec.feature, months=list(spec.months), years=years,
        resolved={s: ResolvedFeature(feature=r.feature, component=r.component,
                                     source_variable=r.source_variable,
                                     n_members=len(response[s])) for s, r in resolved.items()})
    member_rows = []
    for setup in SETUPS:
        roles = _roles(inputs, setup)
        values = inputs.setups[setup].values
        member_rows += [MemberRow(member=m, setup=setup, role=roles.get(m, "other"),
                                  response=float(r),
                                  parameters={k: float(v) for k, v in values.loc[m].items()})
                        for m, r in response[setup].items()]
    return SensitivityResult(
        target=target_row, design=inputs.design,
        ensembles={s: [str(r) for r in (roots or {}).get(s, [])] for s in SETUPS},
        inputs=dict(inputs.files),
        pairing={"method": inputs.pairing, "n_pairs": len(inputs.pairs),
                 "pairs": [list(p) for p in inputs.pairs],
                 "sources": {s: inputs.setups[s].source for s in SETUPS}},
        settings=settings.model_dump(mode="json"),
        ci_level_effects=level, verdict_floor=threshold, absent_margin=band,
        spinup_years=settings.spinup_years,
        parameters=rows,
        noise=noise, emulator=section, sobol=sobol_rows, shap=shap_rows, members=member_rows,
        notes=notes)
