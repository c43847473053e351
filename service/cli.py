"""The ``esmwatch`` command line.

Every command maps esmwatch's own errors to a one-line message and a non-zero exit, so a
user never sees a traceback for bad input; ``--verbose`` shows the logging detail.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ensembles.errors import EsmwatchError

app = typer.Typer(
    name="esmwatch",
    help="Diagnose coupled CESM ensembles: ingest, learn freeze precursors, explain, watch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("esmwatch")

from service.cli_ops import (  # noqa: E402
    beat,
    ensemble_app,
    jobs_app,
    model_app,
    report,
    scan,
    serve,
    token_app,
    worker,
)

app.add_typer(jobs_app, name="jobs")
app.add_typer(token_app, name="token")
app.add_typer(ensemble_app, name="ensemble")
app.add_typer(model_app, name="model")
app.command()(scan)
app.command()(report)
app.command()(serve)
app.command()(worker)
app.command()(beat)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _fail(err: Exception) -> typer.Exit:
    typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


@app.command()
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
) -> None:
    """Write a synthetic CESM-like ensemble with known planted causes (truth.json beside it)."""
    from synth.ensemble import synthesize

    try:
        root = synthesize(
            outdir,
            kind=kind,
            scenario=scenario,
            members=members,
            years=years,
            seed=seed,
            flavour=flavour,
            size=size,
            layout=layout,
            progress=True,
            design=design,
        )
    except EsmwatchError as err:
        raise _fail(err) from None
    typer.echo(f"wrote {kind} ensemble ({scenario}, {flavour}) to {root}")


@app.command()
def catalog(
    roots: Annotated[list[Path], typer.Argument(help="Data roots to scan.")],
    output: Annotated[
        str, typer.Option("-o", "--output", help="Catalog name (NAME.json + NAME.csv).")
    ] = "catalog",
    outdir: Annotated[Path, typer.Option(help="Where to write the catalog.")] = Path("."),
) -> None:
    """Write an intake-esm compatible catalog (esmcat JSON + CSV) of CESM files."""
    from ensembles.catalog import build_catalog, write_catalog

    try:
        table, problems = build_catalog(roots)
        path = write_catalog(table, outdir, output)
    except EsmwatchError as err:
        raise _fail(err) from None
    for problem in problems:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    typer.echo(
        f"catalogued {len(table)} files of {table['case'].nunique() if len(table) else 0} "
        f"cases -> {path}"
    )


@app.command("features")
def features_cmd(
    roots: Annotated[list[Path], typer.Argument(help="Data roots to scan.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="netCDF file to write.")] = Path(
        "features.nc"
    ),
    cache_dir: Annotated[
        Path | None, typer.Option(help="Per-file feature cache directory.")
    ] = Path(".esmwatch-cache"),
    workers: Annotated[int | None, typer.Option(help="Parallel reader processes.")] = None,
) -> None:
    """Build the monthly regional feature table (member x time) of every member found."""
    from ensembles.features import build_features

    try:
        result = build_features(roots, cache_dir=cache_dir, n_workers=workers, progress=True)
        result.dataset.to_netcdf(output)
    except EsmwatchError as err:
        raise _fail(err) from None
    for problem in result.problems:
        typer.secho(f"problem: {problem}", fg=typer.colors.YELLOW, err=True)
    ds = result.dataset
    typer.echo(
        f"{ds.sizes.get('member', 0)} members x {ds.sizes.get('time', 0)} months x "
        f"{len(ds.data_vars)} features -> {output} ({result.files_read} files read, "
        f"{result.files_cached} from cache, {len(result.problems)} problems)"
    )


analyze_app = typer.Typer(help="Run an analysis in-process and write result.json + report.html.",
                          no_args_is_help=True)
app.add_typer(analyze_app, name="analyze")


def _parse_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None


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
    cache_dir: Annotated[Path | None, typer.Option(help="Per-file feature cache directory.")
                         ] = Path(".esmwatch-cache"),
) -> None:
    """Learn which signals precede a Labrador Sea freeze and which processes drive it."""
    from detectors.precursors import PrecursorSettings
    from detectors.samples import SampleRule
    from service.analyses import load_features, run_precursors, top_findings

    try:
        settings = PrecursorSettings(
            models=tuple(m.strip() for m in models.split(",") if m.strip()),
            explain_model=explain_model, seed=seed,
            samples=SampleRule(leads_months=_parse_ints(leads)))
        with _ProgressBar() as report:
            built = load_features(roots, cache_dir, report)
            result = run_precursors(built.dataset, out, settings,
                                    [str(p) for p in built.problems], report)
    except (EsmwatchError, ValueError) as err:
        raise _fail(err) from None
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
    cache_dir: Annotated[Path | None, typer.Option(help="Per-file feature cache directory.")
                         ] = Path(".esmwatch-cache"),
) -> None:
    """Coupled vs offline effect of each parameter on a target, with CIs and a verdict.

    Verdicts: consistent, amplified, damped, sign-flip, coupled-only, offline-only, no-effect.
    Tables not given are looked for beside the roots (the layout `esmwatch synth --kind ppe`
    writes).
    """
    from detectors.sensitivity.analysis import SensitivitySettings
    from service.sensitivity import SensitivityParams, run_sensitivity, summary_lines

    try:
        job = SensitivityParams(
            coupled=coupled, offline=offline, params=params, offline_params=offline_params,
            parameters=parameters, crosswalk=crosswalk, target=target,
            settings=SensitivitySettings(n_bootstrap=bootstrap, ci_level=ci_level, seed=seed))
        with _ProgressBar() as report:
            result = run_sensitivity(job, out, cache_dir, report)
    except (EsmwatchError, ValueError) as err:
        raise _fail(err) from None
    typer.echo(f"{result.design} design, target {result.target.feature} {result.target.season}"
               f" ({result.target.units}); report: {(out / 'report.html').resolve()}")
    for line in summary_lines(result):
        typer.echo(f"  {line}")


class _ProgressBar:
    """A rich progress bar fed by (fraction, message) callbacks."""

    def __enter__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TimeElapsedColumn(), transient=True)
        self._progress.start()
        self._task = self._progress.add_task("starting", total=1.0)
        return self._update

    def _update(self, fraction: float, message: str) -> None:
        self._progress.update(self._task, completed=fraction, description=message)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


@app.command()
def schema(
    job: Annotated[str | None, typer.Argument(help="Job type; all when omitted.")] = None,
) -> None:
    """Print the JSON Schema of result.json (per job type)."""
    import json

    from detectors.consistency import ConsistencyResult
    from detectors.results import PrecursorResult
    from detectors.sensitivity_results import SensitivityResult

    schemas = {"precursors": PrecursorResult.model_json_schema(by_alias=True),
               "consistency": ConsistencyResult.model_json_schema(by_alias=True),
               "sensitivity": SensitivityResult.model_json_schema(by_alias=True)}
    try:
        from service.jobs import result_schemas

        schemas = {**result_schemas(), **schemas}
    except ImportError:  # pragma: no cover - the service layer is always installed
        pass
    if job is not None:
        if job not in schemas:
            raise _fail(EsmwatchError(f"unknown job {job!r}; known: {', '.join(sorted(schemas))}"))
        schemas = {job: schemas[job]}
    typer.echo(json.dumps(schemas, indent=2))


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Where data, cache and results go.")
                       ] = Path("esmwatch-demo"),
    scenario: Annotated[str, typer.Option(help="Planted cause of the synthetic freezes.")
                        ] = "greenland_runoff",
    members: Annotated[int, typer.Option(min=6)] = 16,
    years: Annotated[int, typer.Option(min=15)] = 30,
) -> None:
    """Synthetic ensembles -> precursors -> sensitivity -> nightly scan -> HTML reports.

    Runs embedded (SQLite, no broker) entirely under WORKDIR, through the same jobs as
    production. The planted cause is in WORKDIR/data/freeze/truth.json, which the analysis
    never reads: compare it with the report.
    """
    from service.demo import run_demo

    try:
        with _ProgressBar() as report:
            outcome = run_demo(workdir, scenario=scenario, members=members, years=years,
                               progress=report)
    except EsmwatchError as err:
        raise _fail(err) from None
    typer.echo(f"report: {outcome.report}")
    typer.echo("top findings:")
    for line in outcome.findings:
        typer.echo(f"  {line}")
    typer.echo(f"planted cause (truth.json, never read by the analysis): "
               f"{outcome.truth.get('main_driver')}")


check_app = typer.Typer(help="Statistical checks of a candidate configuration.",
                        no_args_is_help=True)
app.add_typer(check_app, name="check")


@check_app.command("consistency")
def check_consistency(
    reference: Annotated[Path, typer.Option(help="Root of the reference (pertlim) ensemble.")],
    case: Annotated[Path, typer.Option(help="Root holding the candidate's runs.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("consistency"),
    sigma: Annotated[float, typer.Option(help="PC score threshold in ensemble sd.")] = 2.0,
    min_failing_pcs: Annotated[int, typer.Option(help="Failing PCs that fail the case.")] = 2,
    cache_dir: Annotated[Path | None, typer.Option(help="Per-file feature cache directory.")
                         ] = Path(".esmwatch-cache"),
) -> None:
    """pyCECT-style test: is the candidate statistically distinguishable from the reference?"""
    from detectors.consistency import ConsistencySettings
    from service.analyses import load_features, run_consistency

    try:
        settings = ConsistencySettings(sigma=sigma, min_failing_pcs=min_failing_pcs)
        ref = load_features([reference], cache_dir).dataset
        cand = load_features([case], cache_dir).dataset
        result = run_consistency(ref, cand, out, settings)
    except (EsmwatchError, ValueError) as err:
        raise _fail(err) from None
    typer.echo(f"{result.verdict}: {result.failing_pcs}/{result.n_pcs} PCs fail, "
               f"false-positive rate {result.false_positive_rate:.1%}; report: "
               f"{(out / 'report.html').resolve()}")
