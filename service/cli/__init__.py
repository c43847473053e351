"""The ``esmwatch`` command line: one app, science commands and operations commands.

:mod:`.science` (synth, catalog, features, analyze, check, schema, demo) and :mod:`.ops`
(jobs, tokens, ensembles, models, scan, report, serve, worker, beat) share one error style
and the settings' defaults (:mod:`.common`).  Every heavy import happens inside the command
that needs it, so ``esmwatch --help`` costs little more than importing typer.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from service.cli import ops, science

app = typer.Typer(
    name="esmwatch",
    help="Diagnose coupled CESM ensembles: ingest, learn freeze precursors, explain, watch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

app.registered_commands += science.science_app.registered_commands
app.add_typer(science.analyze_app, name="analyze")
app.add_typer(science.check_app, name="check")
app.add_typer(ops.jobs_app, name="jobs")
app.add_typer(ops.token_app, name="token")
app.add_typer(ops.ensemble_app, name="ensemble")
app.add_typer(ops.model_app, name="model")
for command in (ops.scan, ops.report, ops.serve, ops.worker, ops.beat):
    app.command()(command)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
