"""Science commands of the ``esmwatch`` CLI: synth, catalog, features, analyses, schema, demo.

Each command imports its science stack inside its body (``esmwatch --help`` stays fast),
reads features through the one path every job uses (:mod:`service.analyses.inputs`, with
the settings' feature cache by default), and writes ``result.json`` once from the result
contract (:func:`service.result_files.write_result`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ensembles.errors import EsmwatchError
from service.cli.common import CACHE_HELP, ProgressBar, cache_dir_or_default, user_errors

science_app = typer.Typer()
analyze_app = typer.Typer(help="Run an analysis in-process and write result.json + report.html.",
                          no_args_is_help=True)
check_app = typer.Typer(help="Statistical checks of a candidate configuration.",
                        no_args_is_help=True)


@science_app.command()
def synth(
    outdir: Annotated[Path, typer.Argument(help="Directory to write the ensemble into.")],
    kind: Annotated[
        str, typer.Option(help="freeze-database, pertlim, control, candidate or ppe.")
    ] = "freeze-database",
    scenario: Annotated[
        str,
        typer.Option(
            help="Planted cause, e.g. greenland_runoff, sea_ice_import, precipitation, null."
        ),
    ] = "greenland_runoff",
    members: Annotated[int, typer.Option(min=1)] = 8,
    years: Annotated[int, typer.Option(min=1)] = 30,
    seed: Annotated[int, typer.Option()] = 0,
    flavour: Annotated[
        str, typer.Option(help="cesm3 (MOM6, CAM-SE) or cesm2 (POP, CAM-FV).")
    ] = "cesm3",
    size: Annotated[str, typer.Option(help="Grid size: default or small.")] = "default",
    layout: Annotated[
        str, typer.Option(help="history (short-term archive) or tseries.")
    ] = "history",
    design: Annotated[
        str, typer.Option(help="ppe only: oaat (one at a time) or sampled (Latin hypercube).")
    ] = "oaat",
    packed: Annotated[bool, typer.Option(
        help="tseries only: 16-bit packed fields (half the size, lossy at ~1/65000 of "
             "each file's range).")] = False,
    output: Annotated[str, typer.Option(
        help="full, or reduced: a lean production output list (no LANDFRAC, PRECC + PRECL "
             "instead of PRECT, no ocean velocities).")] = "full",
    parameters: Annotated[str, typer.Option(
        help="freeze-database only: 'freeze' writes params.csv + parameters.csv whose values "
             "decide the freezes, 'null' one where no parameter matters.")] = "none",
) -> None:
    """Write a synthetic CESM-like ensemble with known planted causes (truth.json beside it)."""
    from synth.ensemble import synthesize

    with user_errors():
        root = synthesize(outdir, kind=kind, scenario=scenario, members=members, years=years,
                          seed=seed, flavour=flavour, size=size, layout=layout, progress=True,
                          design=design, packed=packed, output=output,
                          parameters=parameters)
    typer.echo(f"wrote {kind} ensemble ({scenario}, {flavour}) to {root}")


@science_app.command()
def catalog(
    roots: Annotated[list[Path], typer.Argument(help="Data roots to scan.")],
    output: Annotated[
        str, typer.Option("-o", "--output", help="Catalog name (NAME.json + NAME.csv).")
    ] = "catalog",
    outdir: Annotated[Path, typer.Option(help="Where to write the catalog.")] = Path("."),
) -> None:
    """Write an intake-esm compatible catalog (esmcat JSON + CSV) of CESM files."""
    from ensembles.catalog import build_catalog, write_catalog

    with user_errors():
        table, problems = build_catalog(roots)
        path = write_catalog(table, outdir, output)
    for problem in problems:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"catalogued {len(table)} files of {table['case'].nunique() if len(table) else 0} "
        f"cases -> {path}"
    )


@science_app.command("features")
def features_cmd(
    roots: Annotated[list[Path], typer.Argument(help="Data roots to scan.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="netCDF file to write.")] = Path(
        "features.nc"
    ),
    cache_dir: Annotated[Path | None, typer.Option(help=CACHE_HELP)] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel reader processes.")] = None,
    verify: Annotated[bool, typer.Option(
        help="Check every file's size and mtime, also in directories unchanged since the "
             "last scan (which are otherwise trusted; a file rewritten in place is only "
             "seen this way).")] = False,
) -> None:
    """Build the monthly regional feature table (member x time) of every member found."""
    from ensembles.coverage import render
    from ensembles.features import build_features

    with user_errors():
        result = build_features(roots, cache_dir=cache_dir_or_default(cache_dir),
                                n_workers=workers, progress=True, verify=verify)
        result.dataset.to_netcdf(output)
    for problem in result.problems:
        typer.secho(f"problem: {problem}", fg=typer.colors.YELLOW, err=True)
    ds = result.dataset
    typer.echo(render(result.coverage(), result.streams()))
    typer.echo(
        f"{ds.sizes.get('member', 0)} members x {ds.sizes.get('time', 0)} months x "
        f"{len(ds.data_vars)} features -> {output} ({result.files_read} files read, "
        f"{result.files_cached} from cache, {len(result.problems)} problems)"
    )


def _parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@analyze_app.command("precursors")
def analyze_precursors(
    roots: Annotated[list[Path], typer.Argument(help="Ensemble roots (freeze database, pertlim).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("precursors"),
    leads: Annotated[str, typer.Option(help="Lead times in months, comma separated.")
                     ] = "6,12,24,36",
    models: Annotated[str, typer.Option(help="Classifiers, comma separated.")
                      ] = "mlp,cnn,logistic,gbm",
    explain_model: Annotated[str, typer.Option(help="Model whose SHAP values rank processes.")
                             ] = "mlp",
    seed: Annotated[int, typer.Option()] = 0,
    cache_dir: Annotated[Path | None, typer.Option(help=CACHE_HELP)] = None,
    configuration: Annotated[list[str] | None, typer.Option(
        help="Configuration (compset + grid + code tag) of each root, in order (repeat once "
             "per root); negatives come only from a member's own configuration. Without it "
             "the case-name stem is used.")] = None,
) -> None:
    """Learn which signals precede a Labrador Sea freeze and which processes drive it."""
    from detectors.precursors.settings import PrecursorSettings
    from detectors.samples import SampleRule
    from service.analyses.inputs import load_features
    from service.analyses.precursors import run_precursors, top_findings
    from service.result_files import write_result

    with user_errors():
        settings = PrecursorSettings(models=_names(models), explain_model=explain_model,
                                     seed=seed, samples=SampleRule(leads_months=_parse_ints(leads)))
        with ProgressBar() as report:
            if configuration and len(configuration) != len(roots):
                raise typer.BadParameter(f"{len(configuration)} --configuration for "
                                         f"{len(roots)} root(s): give one per root")
            built = load_features(roots, cache_dir_or_default(cache_dir), report,
                                  configurations=configuration)
            result = run_precursors(built.dataset, out, settings,
                                    [str(p) for p in built.problems], report)
        write_result(out, result)
    typer.echo(f"{result.n_members} members, {result.n_frozen} froze; report: "
               f"{(out / 'report.html').resolve()}")
    for line in top_findings(result):
        typer.echo(f"  {line}")


@analyze_app.command("sensitivity")
def analyze_sensitivity(
    coupled: Annotated[list[Path], typer.Option(help="Root of the coupled PPE (repeatable).")],
    offline: Annotated[list[Path], typer.Option(help="Root of the offline (land-only) PPE "
                                                     "(repeatable).")],
    target: Annotated[str, typer.Option(help="variable:region:season[:YYYY-YYYY], e.g. "
                                             "eflx_lh_tot:north_america_ne:JJA.")
                      ] = "eflx_lh_tot:north_america_ne:JJA",
    params: Annotated[Path | None, typer.Option(
        help="Parameter table of the coupled runs (or both setups). Default: "
             "coupled_params.csv in a coupled root or its parent.")] = None,
    offline_params: Annotated[Path | None, typer.Option(
        help="Parameter table of the offline runs. Default: offline_params.csv in an offline "
             "root or its parent; else paired through the crosswalk.")] = None,
    parameters: Annotated[Path | None, typer.Option(
        help="parameters.csv (parameter,default,min,max). Default: parameters.csv beside the "
             "roots; else ranges come from the tables.")] = None,
    crosswalk: Annotated[Path | None, typer.Option(
        help="coupled,offline pairs. Default: crosswalk.csv beside the roots.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("sensitivity"),
    bootstrap: Annotated[int, typer.Option(min=0, help="Sampled designs: bootstrap refits.")
                         ] = 200,
    ci_level: Annotated[float, typer.Option(help="Level of every confidence interval.")] = 0.9,
    seed: Annotated[int, typer.Option()] = 0,
    cache_dir: Annotated[Path | None, typer.Option(help=CACHE_HELP)] = None,
) -> None:
    """Coupled vs offline effect of each parameter on a target, with CIs and a verdict.

    Verdicts: consistent, amplified, damped, sign-flip, coupled-only, offline-only, no-effect,
    inconclusive (the intervals cannot tell the classes apart: more members would).
    Tables not given are looked for beside the roots (the layout `esmwatch synth --kind ppe`
    writes).
    """
    from detectors.sensitivity.analysis import SensitivitySettings
    from service.analyses.sensitivity import SensitivityParams, run_sensitivity
    from service.result_files import write_result

    with user_errors():
        job = SensitivityParams(
            coupled=coupled, offline=offline, params=params, offline_params=offline_params,
            parameters=parameters, crosswalk=crosswalk, target=target,
            settings=SensitivitySettings(n_bootstrap=bootstrap, ci_level=ci_level, seed=seed))
        with ProgressBar() as report:
            result = run_sensitivity(job, out, cache_dir_or_default(cache_dir), report)
        write_result(out, result)
    typer.echo(f"{result.design} design, target {result.target.feature} {result.target.season}"
               f" ({result.target.units}); report: {(out / 'report.html').resolve()}")
    for line in result.summary_lines():
        typer.echo(f"  {line}")


@analyze_app.command("parameters")
def analyze_parameters(
    roots: Annotated[list[Path], typer.Argument(help="Root(s) of the freeze database.")],
    params: Annotated[Path | None, typer.Option(
        help="Parameter table member,<param>... Default: params.csv in a root or its parent."
    )] = None,
    parameters: Annotated[Path | None, typer.Option(
        help="parameters.csv (parameter,default,min,max). Default: parameters.csv beside the "
             "roots; else ranges come from the table and there is no what-if.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("parameters"),
    threshold: Annotated[float, typer.Option(help="P(freeze) above which a setting is unsafe.")
                         ] = 0.2,
    permutations: Annotated[int, typer.Option(min=19, help="Permutations of the null.")] = 99,
    seed: Annotated[int, typer.Option()] = 0,
    cache_dir: Annotated[Path | None, typer.Option(help=CACHE_HELP)] = None,
) -> None:
    """Which parameter settings freeze: P(freeze | parameters), importance, safe region, what-if.

    Tables not given are looked for beside the roots (the layout `esmwatch synth --kind
    freeze-database --parameters freeze` writes).
    """
    from detectors.parameters.analysis import ParametersSettings
    from service.analyses.parameters import ParametersParams, run_parameters
    from service.result_files import write_result

    with user_errors():
        job = ParametersParams(roots=roots, params=params, parameters=parameters,
                               settings=ParametersSettings(threshold=threshold, seed=seed,
                                                           n_permutations=permutations))
        with ProgressBar() as report:
            result = run_parameters(job, out, cache_dir_or_default(cache_dir), report)
        write_result(out, result)
    typer.echo(f"{result.summary()}; report: {(out / 'report.html').resolve()}")


@science_app.command("compare")
def compare(
    ensemble_a: Annotated[Path, typer.Argument(help="Root of ensemble A (e.g. the old tag).")],
    ensemble_b: Annotated[Path, typer.Argument(help="Root of ensemble B (e.g. the new tag).")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("compare"),
    risk: Annotated[bool, typer.Option(help="Score both with the promoted risk model.")] = True,
    cache_dir: Annotated[Path | None, typer.Option(help=CACHE_HELP)] = None,
) -> None:
    """Compare two ensembles: freeze fraction, time to onset, risk, shifted budget terms."""
    from service.analyses.compare import CompareParams, run_compare
    from service.result_files import write_result

    with user_errors():
        job = CompareParams(a=[ensemble_a], b=[ensemble_b],
                            names=(ensemble_a.name or "A", ensemble_b.name or "B"))
        model = _promoted_risk() if risk else None
        with ProgressBar() as report:
            result = run_compare(job, out, cache_dir_or_default(cache_dir), report, model=model)
        write_result(out, result)
    typer.echo(f"{result.verdict}: {result.reason}; report: {(out / 'report.html').resolve()}")


def _promoted_risk() -> tuple[str, object] | None:
    """The promoted risk model of the configured store, if any."""
    from service.model_registry import load_promoted_risk
    from service.settings import get_settings
    from service.store import get_store

    settings = get_settings()
    promoted = load_promoted_risk(get_store(settings), settings)
    return (f"risk v{promoted[0].version}", promoted[1]) if promoted else None


@check_app.command("consistency")
def check_consistency(
    reference: Annotated[Path, typer.Option(help="Root of the reference (pertlim) ensemble.")],
    case: Annotated[Path, typer.Option(help="Root holding the candidate's runs.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("consistency"),
    sigma: Annotated[float | None, typer.Option(
        help="PC score threshold in ensemble sd (default: calibrated to --target-fpr).")] = None,
    min_failing_pcs: Annotated[int, typer.Option(
        help="Failing PCs that fail the case (pyCECT's 3).")] = 3,
    target_fpr: Annotated[float, typer.Option(
        help="False-positive rate on held-out reference triples.")] = 0.005,
    cache_dir: Annotated[Path | None, typer.Option(help=CACHE_HELP)] = None,
) -> None:
    """pyCECT-style test: is the candidate statistically distinguishable from the reference?"""
    from detectors.consistency.test import ConsistencySettings
    from service.analyses.consistency import run_consistency
    from service.analyses.inputs import load_features
    from service.result_files import write_result

    with user_errors():
        settings = ConsistencySettings(sigma=sigma, min_failing_pcs=min_failing_pcs,
                                       target_fpr=target_fpr)
        cache = cache_dir_or_default(cache_dir)
        ref = load_features([reference], cache).dataset
        cand = load_features([case], cache).dataset
        result = run_consistency(ref, cand, out, settings)
        write_result(out, result)
    typer.echo(f"{result.verdict}: {result.failing_pcs}/{result.n_pcs} PCs fail at sigma "
               f"{result.sigma:g}, false-positive rate {result.false_positive_rate:.2%}; report: "
               f"{(out / 'report.html').resolve()}")


@science_app.command()
def schema(
    job: Annotated[str | None, typer.Argument(help="Job type; all when omitted.")] = None,
) -> None:
    """Print the JSON Schema of result.json (per job type), generated from its model."""
    from service.job_types import register_all
    from service.jobs import result_schemas

    register_all()
    schemas = result_schemas()
    with user_errors():
        if job is not None:
            if job not in schemas:
                raise EsmwatchError(f"unknown job {job!r}; known: {', '.join(sorted(schemas))}")
            schemas = {job: schemas[job]}
    typer.echo(json.dumps(schemas, indent=2))


@science_app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where data, cache and results go.")
                       ] = Path("esmwatch-demo"),
    scenario: Annotated[str, typer.Option(help="Planted cause of the synthetic freezes.")
                        ] = "greenland_runoff",
    members: Annotated[int, typer.Option(min=6)] = 12,
    years: Annotated[int, typer.Option(min=15)] = 30,
) -> None:
    """Synthetic ensembles -> precursors -> sensitivity -> nightly scan -> HTML reports.

    Runs embedded (SQLite, no broker) entirely under WORKDIR, through the same jobs as
    production. The planted cause is in WORKDIR/data/freeze/truth.json, which the analysis
    never reads: compare it with the report.
    """
    from service.demo import planned_megabytes, run_demo

    typer.echo(f"esmwatch demo: writes about {planned_megabytes(members, years)} MB under "
               f"{workdir.absolute()} (synthetic archives, feature cache, job database, "
               "reports); data already there is reused")
    with user_errors(), ProgressBar() as report:
        outcome = run_demo(workdir, scenario=scenario, members=members, years=years,
                           progress=report)
    typer.echo(f"report: {outcome.report}")
    typer.echo("top findings:")
    for line in outcome.findings:
        typer.echo(f"  {line}")
    typer.echo(f"planted cause (truth.json, never read by the analysis): "
               f"{outcome.truth.get('main_driver')}")
