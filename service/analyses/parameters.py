"""The parameters analysis as the CLI and the job runner both run it.

``run_parameters(params, outdir)`` reads the members through the ensembles layer, the
parameter table and ``parameters.csv`` through :mod:`detectors.parameters.tables` (the PPE
contracts), runs :func:`detectors.parameters.analysis.analyse_parameters` and writes
``report.html`` and its figures (``result.json`` is written once by the caller).

Tables not given are looked for beside the roots (in each root, then its parent):
``params.csv`` and ``parameters.csv``, the layout ``esmwatch synth --kind freeze-database
--parameters freeze`` writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from detectors.parameters.analysis import ParametersSettings, analyse_parameters
from detectors.parameters.results import ParametersResult
from detectors.parameters.tables import load_parameter_inputs
from ensembles.errors import ConfigurationError
from service.analyses import parameters_figures as figs
from service.analyses.inputs import Progress, load_features
from service.report import Section, Table, format_ci, write_report

log = logging.getLogger(__name__)
TABLE_FILES = {"params": "params.csv", "parameters": "parameters.csv"}


class ParametersParams(BaseModel):
    """Parameters of a parameters job (JSON-serialisable, validated at the boundary)."""

    model_config = ConfigDict(extra="forbid")
    roots: list[Path] = Field(min_length=1, description="roots of the freeze database")
    params: Path | None = Field(
        None, description="parameter table member,<param>...; default: params.csv beside the roots"
    )
    parameters: Path | None = Field(
        None,
        description="parameters.csv (defaults and ranges); "
        "default: parameters.csv beside the roots",
    )
    settings: ParametersSettings = Field(default_factory=ParametersSettings)
    find_defaults: bool = Field(True, description="look for the tables beside the roots")


def find_tables(roots: Sequence[Path]) -> dict[str, Path]:
    """``params.csv`` / ``parameters.csv`` in a root or its parent, first found wins."""
    found: dict[str, Path] = {}
    for key, name in TABLE_FILES.items():
        for root in roots:
            hit = next(
                (d / name for d in (Path(root), Path(root).parent) if (d / name).is_file()), None
            )
            if hit is not None:
                found[key] = hit
                break
    return found


def resolve_inputs(params: ParametersParams) -> dict[str, Path | None]:
    """The table files to use: the ones given, else those found beside the roots."""
    found = find_tables(params.roots) if params.find_defaults else {}
    return {
        "params": params.params or found.get("params"),
        "parameters": params.parameters or found.get("parameters"),
    }


def run_parameters(
    params: ParametersParams,
    outdir: Path,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    scheduler: str | None = None,
) -> ParametersResult:
    """Features + tables -> P(freeze | parameters), safe region, what-if -> report.html."""
    step = progress or (lambda fraction, message: None)
    files = resolve_inputs(params)
    if files["params"] is None:
        raise ConfigurationError(
            "no parameter table: give --params (member,<param>...) or put "
            "params.csv beside the roots"
        )
    built = load_features(params.roots, cache_dir, scheduler=scheduler)
    cases = [str(m) for m in built.dataset["member"].values]
    inputs = load_parameter_inputs(cases, files["params"], files["parameters"])

    def scaled(fraction: float, message: str) -> None:
        step(0.3 + 0.6 * fraction, message)

    result = analyse_parameters(
        built.dataset,
        inputs,
        params.settings,
        ensembles=[str(r) for r in params.roots],
        progress=scaled,
    )
    result.notes.extend(f"input: {p}" for p in built.problems)
    outdir.mkdir(parents=True, exist_ok=True)
    write_parameters_report(result, outdir)
    step(1.0, "done")
    return result


def _change(row) -> str:
    if row is None:
        return "none"
    moves = ", ".join(f"{n}: {m.default:.4g} → {m.value:.4g}" for n, m in row.parameters.items())
    return (
        f"{moves} (P(freeze) {row.p_freeze:.2f} {format_ci(row.p_freeze_ci)}"
        + (", confident" if row.confident else ", not confident")
        + ")"
    )


def write_parameters_report(result: ParametersResult, outdir: Path) -> Path:
    """report.html with the parameter table, safe region, what-if, drivers and figures."""
    em, region, w = result.emulator, result.safe_region, result.what_if
    sections = [
        Section(
            "Summary",
            paragraphs=[
                f"{result.n_frozen} of {result.n_members} members froze. Emulator of P(freeze "
                f"within the run | parameters): {em.model} ({em.description}); {em.choice}.",
                result.summary(),
            ],
            notes=result.notes,
        ),
        Section(
            "Parameters",
            paragraphs=[
                "Importance = mean |SHAP| (exact) in P(freeze); p-values from a permutation null "
                "over members (maxT over parameters); direction '+': higher value, more freezing."
            ],
            tables=[
                Table(
                    [
                        "rank",
                        "parameter",
                        "importance",
                        "direction",
                        "S1",
                        "ST",
                        "ST−S1",
                        "partners",
                        "p",
                        "significant",
                    ],
                    [
                        (
                            p.rank,
                            p.parameter,
                            p.importance,
                            p.direction,
                            p.s1,
                            p.st,
                            p.interaction_share,
                            ", ".join(p.partners),
                            p.p_value,
                            p.significant,
                        )
                        for p in result.parameters
                    ],
                ),
                Table(
                    ["pair", "interaction strength (log-odds)", "p", "significant"],
                    [
                        (" × ".join(r.parameters), r.strength, r.p_value, r.significant)
                        for r in result.interactions[:10]
                    ],
                ),
            ],
            figures=[figs.partial_dependence(result, outdir)],
        ),
        Section(
            "Safe region",
            paragraphs=[region.definition],
            tables=[Table(["class", "fraction of the box"], list(region.fractions.items()))],
            figures=[
                f for f in (figs.safe_fraction(result, outdir), figs.pair_map(result, outdir)) if f
            ],
        ),
        Section(
            "What-if",
            paragraphs=[
                w.note,
                "P(freeze) at the defaults: "
                + (
                    "unknown"
                    if w.default_p is None
                    else f"{w.default_p:.2f} {format_ci(w.default_p_ci)}"
                ),
                f"Smallest change: {_change(w.best)}",
                f"Alternative: {_change(w.alternative)}",
            ],
        ),
        Section(
            "Parameters → drivers",
            paragraphs=[result.survival],
            tables=[
                Table(
                    [
                        "chain",
                        "term",
                        "slope (mSv over the range)",
                        "p (Holm)",
                        "frozen − other (mSv)",
                        "consistent",
                    ],
                    [
                        (
                            d.chain,
                            d.term,
                            d.slope_msv,
                            d.p_holm,
                            d.frozen_minus_other_msv,
                            d.consistent,
                        )
                        for d in result.drivers
                        if d.significant
                    ][:20],
                )
            ],
        ),
        Section(
            "Emulator choice",
            tables=[
                Table(
                    ["candidate", "CV log loss", "CV Brier", "CV ROC AUC"],
                    [(c.name, c.log_loss, c.brier, c.roc_auc) for c in em.candidates],
                )
            ],
        ),
        Section(
            "Members",
            tables=[
                Table(
                    [
                        "member",
                        "froze",
                        "first freeze",
                        "years (to onset or censoring)",
                        "P(freeze)",
                    ],
                    [
                        (m.member, m.froze, m.first_freeze or "", m.time_years, m.p_freeze)
                        for m in result.members
                    ],
                )
            ],
        ),
    ]
    return write_report(outdir, "esmwatch: which parameter settings freeze", sections)
