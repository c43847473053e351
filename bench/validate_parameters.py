"""Validation of the parameters analysis and the comparison against the generator's truth.

For each seed: a freeze database whose parameter table decides the freezes
(``synth.parameters``: ``albedo_snow`` main, ``vmix_background`` only through its
interaction with it, three nuisance parameters) and a null database where no parameter
matters. The analysis (:func:`detectors.parameters.analysis.analyse_parameters`) sees the
feature table and the parameter table only; this script alone reads the truth to score it:

- recovered: the main parameter ranks first and is significant; false positives: nuisance
  parameters flagged significant; interaction: the (main, interacting) pair significant;
- safe-region volume: the analysis' not-ruled-out and central fractions against the true
  fraction of the box with P(freeze) below the threshold;
- what-if: the proposed change is re-simulated with the generator (``--resim`` members at the
  defaults and at the changed setting, fresh noise) and the freeze fractions compared
  (Fisher exact, one-sided), also through ``compare``;
- compare: two pertlim halves (expect no difference) and the ``candidate`` kind's changed
  parameter against its reference (expect a difference).

Fast path: the generator's feature table (``synth.table``), the exact table the readers give,
with the parameter table written to CSV and read back through the real contract
(:func:`detectors.parameters.tables.load_parameter_inputs`). ``--files-seed N`` runs one
seed through written netCDF files and ``service.analyses.parameters.run_parameters`` (the
CLI's path). Writes ``docs/validation-parameters.md``.

    nice -n 10 python bench/validate_parameters.py --seeds 1 2 3 --members 60
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

from detectors.compare import compare_ensembles
from detectors.parameters.analysis import ParametersSettings, analyse_parameters
from detectors.parameters.results import ParametersResult
from detectors.parameters.tables import load_parameter_inputs
from synth import parameters as truth
from synth.ensemble import (
    case_name,
    plan_ensemble,
    simulate_plan,
    simulate_setting,
    synthesize,
    write_parameter_tables,
)
from synth.table import feature_table

log = logging.getLogger("validate_parameters")
SCENARIO = "greenland_runoff"
OUT = Path(__file__).resolve().parents[1] / "docs" / "validation-parameters.md"


def _table(sim, label: str):
    n = sim.froze.shape[0]
    return feature_table(sim, [case_name("cesm3", label, i + 1) for i in range(n)])


def true_safe_fraction(design: str, threshold: float, n: int = 200_000) -> float:
    u = np.random.default_rng(0).random((n, len(truth.PARAMETERS)))
    return float(np.mean(truth.freeze_probability(u, design) < threshold))


def analyse_fast(
    design: str, seed: int, members: int, years: int, settings: ParametersSettings, workdir: Path
) -> tuple[ParametersResult, float]:
    plan = plan_ensemble("freeze-database", SCENARIO, members, years, seed, design)[0]
    sim = simulate_plan(plan, SCENARIO, years, seed)
    cases = [case_name("cesm3", "freeze", i + 1) for i in range(members)]
    features = feature_table(sim, cases)
    root = workdir / f"{design}-{seed}"
    root.mkdir(parents=True, exist_ok=True)
    write_parameter_tables(root, cases, plan.design["parameter_table"])
    inputs = load_parameter_inputs(cases, root / truth.TABLE_FILE, root / "parameters.csv")
    started = time.perf_counter()
    result = analyse_parameters(features, inputs, settings, ensembles=[f"{design}-{seed}"])
    return result, time.perf_counter() - started


def analyse_files(
    seed: int, members: int, years: int, settings: ParametersSettings, workdir: Path
) -> tuple[ParametersResult, float]:
    from service.analyses.parameters import ParametersParams, run_parameters

    root = workdir / f"files-{seed}"
    started = time.perf_counter()
    synthesize(
        root,
        kind="freeze-database",
        scenario=SCENARIO,
        members=members,
        years=years,
        seed=seed,
        size="small",
        layout="tseries",
        packed=True,
        parameters="freeze",
    )
    log.info("wrote %d members in %.0f s", members, time.perf_counter() - started)
    started = time.perf_counter()
    result = run_parameters(ParametersParams(roots=[root], settings=settings), workdir / "out")
    return result, time.perf_counter() - started


def score(result: ParametersResult, design: str, threshold: float) -> dict:
    rows = {r.parameter: r for r in result.parameters}
    flagged = [r.parameter for r in result.parameters if r.significant]
    pair = next(
        r for r in result.interactions if set(r.parameters) == {truth.MAIN, truth.INTERACTING}
    )
    top_pair = result.interactions[0]
    row = {
        "design": design,
        "members": result.n_members,
        "frozen": result.n_frozen,
        "emulator": result.emulator.model,
        "cv_log_loss": {c.name: round(c.log_loss, 3) for c in result.emulator.candidates},
        "top": result.parameters[0].parameter,
        "main_p": rows[truth.MAIN].p_value,
        "main_significant": rows[truth.MAIN].significant,
        "significant": flagged,
        "false_positives": [p for p in flagged if p in truth.NUISANCE or design == "null"],
        "interaction_p": pair.p_value,
        "interaction_found": pair.significant,
        "top_pair": list(top_pair.parameters),
        "pairs_flagged": [list(r.parameters) for r in result.interactions if r.significant],
        "safe_not_ruled_out": result.safe_region.safe_fraction,
        "safe_central": result.safe_region.central_safe_fraction,
        "safe_uncertain": result.safe_region.fractions["uncertain"],
        "safe_true": true_safe_fraction(design, threshold),
        "drivers": [d.chain for d in result.drivers if d.significant][:3],
    }
    return row


def resimulate(result: ParametersResult, seed: int, members: int, years: int) -> dict | None:
    best = result.what_if.best
    if best is None:
        return None
    change = {name: move.value for name, move in best.parameters.items()}
    before = simulate_setting({}, members, years, 1000 + seed, SCENARIO)
    after = simulate_setting(change, members, years, 2000 + seed, SCENARIO)
    table = [
        [int(after.froze.sum()), members - int(after.froze.sum())],
        [int(before.froze.sum()), members - int(before.froze.sum())],
    ]
    _, p = stats.fisher_exact(table, alternative="less")
    compared = compare_ensembles(
        _table(before, "default"), _table(after, "whatif"), ("defaults", "what-if")
    )
    true_p = float(truth.freeze_probability(truth.scaled(change), "freeze")[0])
    return {
        "change": {k: round(v, 6) for k, v in change.items()},
        "predicted_p": best.p_freeze,
        "predicted_ci": best.p_freeze_ci,
        "true_p_after": true_p,
        "true_p_default": float(truth.freeze_probability(truth.scaled({}), "freeze")[0]),
        "fraction_default": before.froze.mean(),
        "fraction_after": after.froze.mean(),
        "fisher_one_sided_p": p,
        "compare_verdict": compared.verdict,
        "alternative": None
        if result.what_if.alternative is None
        else {k: round(v.value, 6) for k, v in result.what_if.alternative.parameters.items()},
    }


def compare_checks(seed: int, members: int, years: int) -> dict:
    pertlim = simulate_plan(
        plan_ensemble("pertlim", SCENARIO, members, years, seed)[0], SCENARIO, years, seed
    )
    table = _table(pertlim, "pertlim")
    half = members // 2
    halves = compare_ensembles(
        table.isel(member=slice(0, half)),
        table.isel(member=slice(half, members)),
        ("first", "second"),
    )
    plans = plan_ensemble("candidate", SCENARIO, members, years, seed)
    ref, cand = (_table(simulate_plan(p, SCENARIO, years, seed), p.label) for p in plans)
    changed = compare_ensembles(ref, cand, ("reference", "candidate"))
    return {
        "pertlim_halves": halves.verdict,
        "pertlim_reason": halves.reason,
        "candidate": changed.verdict,
        "candidate_reason": changed.reason[:200],
    }


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def write_markdown(rows: list[dict], args: argparse.Namespace, command: str) -> None:
    lines = [
        "# Validation: which parameter settings freeze",
        "",
        "Produced by `bench/validate_parameters.py` (command below); every number is "
        "measured by that run. The generator (`synth/parameters.py`) makes P(freeze) = "
        "sigmoid(6 (0.5 - u_albedo) + 20 (0.5 - u_albedo)(u_vmix - 0.5)): `albedo_snow` "
        "is the main parameter, `vmix_background` acts only through its interaction "
        "with it, `atm_dcs`, `ice_r_snw`, `lnd_fff` are nuisance. In the null design no "
        "parameter matters (P = 1/2). About 10% of members' realised fates differ from "
        "their drawn fate (the reduced physics' noise near the end of the run), so the "
        "truth P is an upper bound on the signal. The detectors never read the truth.",
        "",
        f"    {command}",
        "",
        f"Members per database: {args.members}, years: {args.years}, threshold "
        f"{args.threshold}, permutations {args.permutations}, bootstrap "
        f"{args.bootstrap}. Path: `fast` = generator feature table + parameter CSVs "
        "read through the contract; `files` = netCDF files written by `esmwatch "
        "synth` and read by `run_parameters` (the CLI path).",
        "",
        "## Parameters",
        "",
        "| seed | design | path | frozen | emulator | top | main p | significant | false "
        "positives | interaction p (found) | safe: not ruled out / central / true | "
        "runtime s |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['design']} | {r['path']} | {r['frozen']}/{r['members']} | "
            f"{r['emulator']} | {r['top']} | {_fmt(r['main_p'])} | "
            f"{', '.join(r['significant']) or 'none'} | "
            f"{', '.join(r['false_positives']) or 'none'} | {_fmt(r['interaction_p'])} "
            f"({'yes' if r['interaction_found'] else 'no'}) | {_fmt(r['safe_not_ruled_out'])} /"
            f" {_fmt(r['safe_central'])} / {_fmt(r['safe_true'])} | {r['runtime_s']:.0f} |"
        )
    lines += [
        "",
        "## What-if, re-simulated",
        "",
        f"The best change is re-simulated with {args.resim} members at the defaults and "
        f"{args.resim} at the changed setting (fresh noise seeds).",
        "",
        "| seed | path | change | predicted P (CI) | true P default -> after | freeze "
        "fraction default -> after | Fisher one-sided p | compare verdict | "
        "alternative |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        w = r.get("what_if")
        if r["design"] != "freeze":
            continue
        if w is None:
            lines.append(f"| {r['seed']} | {r['path']} | none found | | | | | | |")
            continue
        lines.append(
            f"| {r['seed']} | {r['path']} | {w['change']} | {_fmt(w['predicted_p'])} "
            f"[{_fmt(w['predicted_ci'][0])}, {_fmt(w['predicted_ci'][1])}] | "
            f"{_fmt(w['true_p_default'])} -> {_fmt(w['true_p_after'])} | "
            f"{_fmt(w['fraction_default'])} -> {_fmt(w['fraction_after'])} | "
            f"{w['fisher_one_sided_p']:.2g} | {w['compare_verdict']} | {w['alternative']} |"
        )
    lines += ["", "## Driver links (significant chains, freeze design)", ""]
    lines += [
        f"- seed {r['seed']} ({r['path']}): " + ("; ".join(r["drivers"]) or "none")
        for r in rows
        if r["design"] == "freeze"
    ]
    lines += [
        "",
        "## Compare",
        "",
        "| seed | pertlim halves | candidate vs reference |",
        "|---|---|---|",
    ]
    for r in rows:
        if "compare" in r:
            c = r["compare"]
            lines.append(
                f"| {r['seed']} | {c['pertlim_halves']} ({c['pertlim_reason']}) | "
                f"{c['candidate']} ({c['candidate_reason']}) |"
            )
    lines += ["", "Raw rows: `docs/validation-parameters.json`.", ""]
    OUT.write_text("\n".join(lines))
    OUT.with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float) + "\n")


def _write(rows: list[dict], args: argparse.Namespace) -> None:
    if args.no_write:
        return
    command = (
        f"nice -n 10 python bench/validate_parameters.py --seeds "
        f"{' '.join(map(str, args.seeds))} --members {args.members} --years {args.years}"
        + (f" --files-seed {args.files_seed}" if args.files_seed is not None else "")
    )
    write_markdown(rows, args, command)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--members", type=int, default=60)
    parser.add_argument("--years", type=int, default=30)
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--permutations", type=int, default=99)
    parser.add_argument("--bootstrap", type=int, default=60)
    parser.add_argument("--resim", type=int, default=60)
    parser.add_argument("--files-seed", type=int, default=None)
    parser.add_argument("--files-members", type=int, default=30)
    parser.add_argument("--files-years", type=int, default=25)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in args.seeds:
            settings = ParametersSettings(
                threshold=args.threshold,
                seed=seed,
                n_permutations=args.permutations,
                n_bootstrap=args.bootstrap,
            )
            for design in ("freeze", "null"):
                result, seconds = analyse_fast(
                    design, seed, args.members, args.years, settings, work
                )
                row = {
                    "seed": seed,
                    "path": "fast",
                    **score(result, design, args.threshold),
                    "runtime_s": seconds,
                }
                if design == "freeze":
                    row["what_if"] = resimulate(result, seed, args.resim, args.years)
                    row["compare"] = compare_checks(seed, 20, args.years)
                rows.append(row)
                log.info("%s", json.dumps(row, default=float))
        _write(rows, args)  # the fast seeds first: the file path takes longer
        if args.files_seed is not None:
            settings = ParametersSettings(
                threshold=args.threshold,
                seed=args.files_seed,
                n_permutations=args.permutations,
                n_bootstrap=args.bootstrap,
            )
            result, seconds = analyse_files(
                args.files_seed, args.files_members, args.files_years, settings, work
            )
            row = {
                "seed": args.files_seed,
                "path": "files",
                **score(result, "freeze", args.threshold),
                "runtime_s": seconds,
            }
            row["what_if"] = resimulate(result, args.files_seed, args.resim, args.years)
            rows.append(row)
            log.info("%s", json.dumps(row, default=float))
            _write(rows, args)


if __name__ == "__main__":
    main()
