"""The sensitivity analysis as the CLI and the job runner both run it.

``run_sensitivity(params, outdir)`` reads both setups through the ensembles layer, the
parameter tables through :mod:`ensembles.ppe`, runs
:func:`detectors.sensitivity.analysis.analyse_sensitivity` and writes ``report.html`` and its
PNG figures into ``outdir`` (``result.json`` is written once by the caller).

Default input files: an option left out is looked for beside the roots (in each root and in
its parent): ``coupled_params.csv`` near the coupled roots, ``offline_params.csv`` near the
offline roots, ``parameters.csv`` and ``crosswalk.csv`` near either: the layout
``esmwatch synth --kind ppe`` writes. The files used are recorded in the result.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from detectors.sensitivity.analysis import SensitivitySettings, analyse_sensitivity
from detectors.sensitivity.results import SensitivityResult
from detectors.sensitivity.targets import parse_target
from ensembles.ppe import find_default_files, load_ppe_inputs
from service.analyses import sensitivity_figures as figs
from service.analyses.inputs import Progress, load_features
from service.report import Section, Table, format_ci, write_report

log = logging.getLogger(__name__)


class SensitivityParams(BaseModel):
    """Parameters of a sensitivity job (JSON-serialisable, validated at the boundary)."""

    model_config = ConfigDict(extra="forbid")
    coupled: list[Path] = Field(min_length=1, description="roots of the coupled PPE")
    offline: list[Path] = Field(min_length=1, description="roots of the offline (land-only) PPE")
    params: Path | None = Field(None, description="parameter table of the coupled runs (or of "
                                "both setups); default: coupled_params.csv beside the roots")
    offline_params: Path | None = Field(None, description="parameter table of the offline runs;"
                                        " default: offline_params.csv beside the roots")
    parameters: Path | None = Field(None, description="parameters.csv (defaults and ranges); "
                                    "default: parameters.csv beside the roots")
    crosswalk: Path | None = Field(None, description="coupled,offline pairs; default: "
                                   "crosswalk.csv beside the roots")
    target: str = Field("eflx_lh_tot:north_america_ne:JJA",
                        description="variable:region:season[:YYYY-YYYY]")
    settings: SensitivitySettings = Field(default_factory=SensitivitySettings)
    find_defaults: bool = Field(True, description="look for the tables beside the roots when "
                                "not given")


def resolve_inputs(params: SensitivityParams) -> dict[str, Path | None]:
    """The table files to use: the ones given, else those found beside the roots."""
    given = {"params": params.params, "offline_params": params.offline_params,
             "parameters": params.parameters, "crosswalk": params.crosswalk}
    found = find_default_files(params.coupled, params.offline) if params.find_defaults else {}
    chosen = {key: value if value is not None else found.get(key) for key, value in given.items()}
    for key, value in chosen.items():
        if given[key] is None and value is not None:
            log.info("using %s as %s (found beside the roots)", value, key)
    return chosen


def run_sensitivity(params: SensitivityParams, outdir: Path, cache_dir: Path | None = None,
                    progress: Progress | None = None, scheduler: str | None = None
                    ) -> SensitivityResult:
    """Features of both setups -> effects and verdicts -> report.html and figures (the caller
    writes result.json)."""
    step = progress or (lambda fraction, message: None)
    spec = parse_target(params.target)  # a bad target fails before any file is read
    files = resolve_inputs(params)
    step(0.02, f"reading {len(params.coupled)} coupled root(s)")
    coupled = load_features(params.coupled, cache_dir, scheduler=scheduler)
    step(0.2, f"reading {len(params.offline)} offline root(s)")
    offline = load_features(params.offline, cache_dir, scheduler=scheduler)
    datasets = {"coupled": coupled.dataset, "offline": offline.dataset}
    members = {s: [str(m) for m in d["member"].values] for s, d in datasets.items()}
    inputs = load_ppe_inputs(members, files["params"], files["offline_params"],
                             files["parameters"], files["crosswalk"])

    def scaled(fraction: float, message: str) -> None:
        step(0.35 + 0.55 * fraction, message)

    result = analyse_sensitivity(datasets, inputs, spec, params.settings,
                                 roots={"coupled": [str(r) for r in params.coupled],
                                        "offline": [str(r) for r in params.offline]},
                                 progress=scaled)
    found = [k for k in files if getattr(params, k) is None and files[k] is not None]
    if found:
        result.notes.append("found beside the roots: " + ", ".join(
            f"{k} = {files[k]}" for k in found))
    result.notes.extend(f"input: {p}" for p in [*coupled.problems, *offline.problems])
    step(0.92, "writing report")
    outdir.mkdir(parents=True, exist_ok=True)
    write_sensitivity_report(result, outdir)
    step(1.0, "done")
    return result


def write_sensitivity_report(result: SensitivityResult, outdir: Path) -> Path:
    """report.html with the verdict table and figures (PNG files beside it)."""
    t = result.target
    level = round(100 * result.settings["ci_level"])
    each = f"{100 * result.ci_level_effects:.1f}%"
    verdict_rows = [(p.parameter, p.verdict, p.offline.effect, format_ci(p.offline.ci),
                     p.coupled.effect, format_ci(p.coupled.ci),
                     "" if p.ratio is None else p.ratio,
                     format_ci(p.ratio_ci), p.reason)
                    for p in result.parameters]
    counts = {v: sum(p.verdict == v for p in result.parameters)
              for v in dict.fromkeys(p.verdict for p in result.parameters)}
    sections = [
        Section("Summary", paragraphs=[
            f"Target: {t.variable} ({t.component}) over {t.region}, {t.season} means of "
            f"season-years {t.years[0]:04d}-{t.years[-1]:04d} ({t.period}), in {t.units}; "
            f"coupled from {t.resolved['coupled'].source_variable or t.feature}, offline from "
            f"{t.resolved['offline'].source_variable or t.feature}.",
            f"{result.design.upper()} design: {t.resolved['coupled'].n_members} coupled and "
            f"{t.resolved['offline'].n_members} offline members, paired by "
            f"{result.pairing['method']} ({result.pairing['n_pairs']} pairs).",
            "Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".",
            f"An effect is the response at the high end of the parameter's range minus the low "
            f"end; it counts as present when its CI excludes zero and it is at least "
            f"{result.verdict_floor:.3g} {t.units}, and absent when its whole CI lies within "
            f"+-{result.absent_margin:.3g} {t.units}; neither makes the verdict "
            f"`inconclusive` where the class depends on it. A sign flip needs both CIs to "
            f"exclude zero; amplified and damped are read from the CI of the ratio. The first "
            f"{result.spinup_years} model years are dropped as spin-up. CIs are {level}% "
            + (f"simultaneous over the parameters and both setups (each {each}, Bonferroni)."
               if result.settings.get("simultaneous") else "per parameter.")],
            notes=result.notes),
        Section("Offline versus coupled effects", tables=[Table(
            ["parameter", "class", "offline", f"{each} CI", "coupled", f"{each} CI",
             "coupled/offline", "ratio CI", "why"], verdict_rows)],
            figures=[figs.effects(result, outdir)]),
    ]
    if result.noise:
        sections.append(Section("Noise (default-parameter replicates)", tables=[Table(
            ["setup", "source", "sd of one member", "df", "replicates"],
            [(n.setup, n.source, n.sd, n.df, n.n_replicates) for n in result.noise])]))
    if result.emulator is not None:
        em = result.emulator
        sections.append(Section("Emulators", paragraphs=[
            f"Choice: {em.choice}. Effects: {em.effect_definition}. CIs: {em.bootstrap} "
            "bootstrap refits over members."], tables=[Table(
                ["setup", "emulator", "CV R²", "CV RMSE", "candidates (CV R²)", "members"],
                [(f.setup, f.model, "" if f.cv_r2 is None else f.cv_r2, f.cv_rmse,
                  ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}"
                            for k, v in f.candidates.items()), f.n_members)
                 for f in em.fits])],
            figures=[f for f in (figs.emulator_fit(result, outdir),) if f]))
        sections.append(Section("Sobol indices", paragraphs=[em.sobol], tables=[Table(
            ["parameter", "setup", "S1", "S1 CI", "ST", "ST CI"],
            [(r.parameter, r.setup, "" if r.s1 is None else r.s1, format_ci(r.s1_ci),
              "" if r.st is None else r.st, format_ci(r.st_ci)) for r in result.sobol])],
            figures=[f for f in (figs.sobol(result, outdir),) if f]))
        sections.append(Section("SHAP explanations of the emulators", paragraphs=[
            f"{em.shap_explainer}; background: {em.shap_background} members. Additivity error "
            "(max |sum of SHAP + base - prediction|): " + ", ".join(
                f"{f.setup} {f.shap_additivity_error:.1e}" for f in em.fits
                if f.shap_additivity_error is not None)], tables=[Table(
                    ["parameter", "setup", "mean |SHAP|", "direction"],
                    [(r.parameter, r.setup, r.mean_abs, r.direction) for r in result.shap])],
            figures=[f for f in (figs.shap_summary(result, outdir),) if f]))
    sections.append(Section("Members", tables=[Table(
        ["member", "setup", "role", f"response ({t.units})"],
        [(m.member, m.setup, m.role, m.response) for m in result.members])]))
    return write_report(outdir, f"esmwatch: coupled vs offline sensitivity of {t.feature} "
                                f"({t.season})", sections)
