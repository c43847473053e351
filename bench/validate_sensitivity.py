"""Validation of the coupled-vs-offline sensitivity analysis on synthetic PPEs with planted classes.

For each design (``oaat``, ``sampled``) and seed, a synthetic PPE is written as CESM files
(``esmwatch synth --kind ppe``: coupled numbering shuffled against the offline numbering,
tables and crosswalk beside the roots), analysed exactly as ``esmwatch analyze sensitivity``
does (tables found beside the roots), and the recovered class of every parameter is compared
with the class planted by the generator. Only this script reads ``truth.json``. A second part
checks Sobol indices computed through an emulator against the Ishigami function's analytic
values. A third part sweeps the ensemble size (default members x years, in memory, several
seeds) and counts, per size, the parameters classified right, ``inconclusive`` and wrong: a
small PPE must say ``inconclusive`` rather than a wrong class. Writes
``docs/validation-sensitivity.md``.

Usage::

    nice -n 10 python bench/validate_sensitivity.py [--seeds 0 1] [--in-memory]

``--in-memory`` skips the files and analyses the feature tables the readers would produce
(seconds instead of minutes; same science).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import qmc

from detectors.sensitivity import emulator as emu
from detectors.sensitivity.analysis import SensitivitySettings, analyse_sensitivity
from detectors.sensitivity.results import SensitivityResult
from ensembles.ppe import find_default_files, load_ppe_inputs
from service.analyses.sensitivity import SensitivityParams, run_sensitivity
from synth.ensemble import simulate_ppe, synthesize, write_ppe_tables

ISHIGAMI_S1 = (0.3139, 0.4424, 0.0)
ISHIGAMI_ST = (0.5576, 0.4424, 0.2437)


def _target(truth: dict) -> str:
    t = truth["target"]
    return f"{t['variable']}:{t['region']}:{t['season']}"


def _truth_only(design: str, members: int, years: int, seed: int) -> dict:
    """What synthesize() would write to truth.json, for the in-memory path."""
    with tempfile.TemporaryDirectory() as tmp:
        synthesize(tmp, kind="ppe", design=design, members=1, years=1, seed=seed, size="small")
        truth = json.loads((Path(tmp) / "truth.json").read_text())
    return truth


def _run_files(design: str, members: int, years: int, seed: int, settings: SensitivitySettings,
               workdir: Path) -> tuple[SensitivityResult, dict]:
    data = workdir / f"{design}-{seed}"
    synthesize(data, kind="ppe", design=design, members=members, years=years, seed=seed,
               size="small", progress=False)
    truth = json.loads((data / "truth.json").read_text())
    params = SensitivityParams(coupled=[data / "coupled"], offline=[data / "offline"],
                               target=_target(truth), settings=settings)
    result = run_sensitivity(params, workdir / f"result-{design}-{seed}")
    shutil.rmtree(data)
    return result, truth


def _run_memory(design: str, members: int, years: int, seed: int,
                settings: SensitivitySettings, workdir: Path) -> tuple[SensitivityResult, dict]:
    sim = simulate_ppe(design, members, years, seed)
    tables = workdir / f"tables-{design}-{seed}"
    tables.mkdir(parents=True, exist_ok=True)
    write_ppe_tables(tables, sim)
    files = find_default_files([tables / "coupled"], [tables / "offline"])
    inputs = load_ppe_inputs(sim.cases, files["params"], files["offline_params"],
                             files["parameters"], files["crosswalk"])
    truth = _truth_only(design, members, years, seed)
    datasets = {setup: sim.table(setup) for setup in ("coupled", "offline")}
    return analyse_sensitivity(datasets, inputs, _target(truth), settings), truth


def _rows(result: SensitivityResult, truth: dict, design: str, seed: int, seconds: float
          ) -> list[dict]:
    feature = truth["target"]["feature"]
    planted = {p["parameter"]: p for p in truth["parameters"]}
    rows = []
    for p in result.parameters:
        true = planted[p.parameter]["effects"][feature]
        rows.append({
            "design": design, "seed": seed, "parameter": p.parameter,
            "truth": planted[p.parameter]["class"], "found": p.verdict,
            "offline": (p.offline.effect, p.offline.ci), "coupled": (p.coupled.effect,
                                                                     p.coupled.ci),
            "true_offline": true["offline"], "true_coupled": true["coupled"],
            "covered": [p.offline.ci[0] <= true["offline"] <= p.offline.ci[1],
                        p.coupled.ci[0] <= true["coupled"] <= p.coupled.ci[1]],
            "seconds": seconds,
            "emulators": ", ".join(f"{f.setup} {f.model} (CV R² {f.cv_r2:.3f})"
                                   for f in result.emulator.fits) if result.emulator else "",
            "members": {s: r.n_members for s, r in result.target.resolved.items()},
            "ci_level": result.ci_level_effects,
        })
    return rows


def _ishigami(seeds: list[int], n_train: int, n_base: int) -> list[dict]:
    out = []
    for seed in seeds:
        u = qmc.LatinHypercube(d=3, seed=seed).random(n_train)
        x = -np.pi + 2.0 * np.pi * u
        y = np.sin(x[:, 0]) + 7.0 * np.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * np.sin(x[:, 0])
        model = emu.choose_emulator(u, y, ("linear", "gp", "gbm"), 5, 0.01, seed)
        names = ["x1", "x2", "x3"]
        sample = emu.sobol_sample(names, n_base, seed)
        idx = emu.sobol_indices(names, sample, model.predict(sample), 0.9, seed)
        out.append({"seed": seed, "model": model.name, "cv_r2": model.cv.r2,
                    "s1": idx.s1.tolist(), "st": idx.st.tolist(),
                    "s1_conf": idx.s1_conf.tolist()})
    return out


def _size_sweep(design: str, sizes: list[str], seeds: list[int], settings: SensitivitySettings,
                workdir: Path) -> list[dict]:
    """Right / inconclusive / wrong counts per ensemble size (in memory)."""
    out = []
    for size in sizes:
        members, years = (int(x) for x in size.split("x"))
        counts = {"right": 0, "inconclusive": 0, "wrong": 0}
        wrong: list[str] = []
        for seed in seeds:
            result, truth = _run_memory(design, members, years, seed, settings, workdir)
            planted = {p["parameter"]: p["class"] for p in truth["parameters"]}
            for p in result.parameters:
                kind = ("right" if p.verdict == planted[p.parameter] else "inconclusive"
                        if p.verdict == "inconclusive" else "wrong")
                counts[kind] += 1
                if kind == "wrong":
                    wrong.append(f"{p.parameter} {planted[p.parameter]}→{p.verdict}")
        out.append({"design": design, "members": members, "years": years,
                    "seeds": len(seeds), **counts, "wrong_list": wrong})
        print(f"{design} {size}: {counts}", flush=True)
    return out


def _sweep_lines(sweep: list[dict], seeds: list[int]) -> list[str]:
    lines = [
        "## Misclassification against ensemble size",
        "",
        f"In memory, seeds {', '.join(map(str, seeds))}, default settings (the sampled "
        "design with the bootstrap refits given above). OAAT members are the default "
        "replicates (plus a min and a max member per parameter); sampled members are Latin-"
        "hypercube members. Two spin-up years are dropped from every run.",
        "",
        "| design | members | years | parameters | right | inconclusive | wrong | wrong ones |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sweep:
        n = r["right"] + r["inconclusive"] + r["wrong"]
        lines.append(f"| {r['design']} | {r['members']} | {r['years']} | {n} | {r['right']} | "
                     f"{r['inconclusive']} | {r['wrong']} | "
                     f"{', '.join(r['wrong_list']) or '-'} |")
    return [*lines, ""]


def _fmt(effect: tuple[float, tuple[float, float]]) -> str:
    value, ci = effect
    return f"{value:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _markdown(rows: list[dict], ishigami: list[dict], sweep: list[dict],
              args: argparse.Namespace) -> str:
    command = ("nice -n 10 python bench/validate_sensitivity.py"
               f" --seeds {' '.join(map(str, args.seeds))}"
               f" --oaat-members {args.oaat_members} --oaat-years {args.oaat_years}"
               f" --sampled-members {args.sampled_members} --sampled-years {args.sampled_years}"
               f" --bootstrap {args.bootstrap}" + (" --in-memory" if args.in_memory else "")
               + f" --oaat-sizes {' '.join(args.oaat_sizes)}"
               + f" --sampled-sizes {' '.join(args.sampled_sizes)}"
               + f" --sweep-seeds {' '.join(map(str, args.sweep_seeds))}")
    source = ("the feature tables the readers would produce (physics only, no files)"
              if args.in_memory else "CESM-named netCDF files written by the synthetic "
              "generator and read back by the ensembles layer")
    level = rows[0]["ci_level"] if rows else float("nan")
    lines = [
        "# Validation of coupled-vs-offline sensitivity on synthetic PPEs",
        "",
        f"Generated by `{command}`.",
        "",
        "Each synthetic perturbed-parameter ensemble plants one CLM parameter per class "
        "(`synth/scenarios.py`: `PPE_PARAMETERS`) with a known offline and coupled "
        "effect on JJA latent heat flux over north_america_ne (W m-2). Offline members share "
        "one data-atmosphere forcing (small replicate noise); coupled members are independent "
        "runs with their own weather, and their case numbers are a derangement of the offline "
        "numbers, so only the crosswalk (or the parameter values) pairs them. Inputs: "
        f"{source}; the analysis uses the default settings (90% CIs simultaneous over the "
        f"7 parameters and both setups, i.e. {100 * level:.2f}% each; floor 10% and absent "
        "margin 25% of the largest effect; ratio CIs by parametric bootstrap; 2 spin-up "
        "years dropped) and the "
        "tables found beside the roots, as `esmwatch analyze sensitivity` does. The truth "
        "(`truth.json`) is read only by this script.",
        "",
        f"Designs: **oaat** = {args.oaat_members} default-parameter members (the default and "
        f"its replicates) plus a min and a max member per parameter, {args.oaat_years} years; "
        f"**sampled** = {args.sampled_members} Latin-hypercube members, "
        f"{args.sampled_years} years, emulator chosen by 5-fold CV, {args.bootstrap} bootstrap "
        "refits.",
        "",
        "## Planted versus recovered class",
        "",
        "| design | seed | parameter | planted | recovered | offline effect [CI] (true) | "
        "coupled effect [CI] (true) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mark = ("" if r["truth"] == r["found"] else " (?)" if r["found"] == "inconclusive"
                else " ✗")
        lines.append(f"| {r['design']} | {r['seed']} | {r['parameter']} | {r['truth']} | "
                     f"{r['found']}{mark} | {_fmt(r['offline'])} ({r['true_offline']:+g}) | "
                     f"{_fmt(r['coupled'])} ({r['true_coupled']:+g}) |")
    runs = sorted({(r["design"], r["seed"]) for r in rows})
    lines += ["", "| design | seed | members (coupled / offline) | emulators | s |",
              "|---|---|---|---|---|"]
    for design, seed in runs:
        first = next(r for r in rows if r["design"] == design and r["seed"] == seed)
        lines.append(f"| {design} | {seed} | {first['members']['coupled']} / "
                     f"{first['members']['offline']} | {first['emulators'] or '-'} | "
                     f"{first['seconds']:.0f} |")
    recovered = sum(r["truth"] == r["found"] for r in rows)
    classes = sorted({r["truth"] for r in rows})
    per_class = {c: (sum(r["found"] == c for r in rows if r["truth"] == c),
                     sum(r["truth"] == c for r in rows)) for c in classes}
    false_flips = [r for r in rows if r["found"] == "sign-flip" and r["truth"] != "sign-flip"]
    covered = [c for r in rows for c in r["covered"]]
    lines += [
        "",
        "## Summary",
        "",
        f"- Parameters recovered: {recovered}/{len(rows)} over {len(runs)} PPEs; "
        f"`inconclusive`: {sum(r['found'] == 'inconclusive' for r in rows)}; wrong class: "
        f"{sum(r['found'] not in (r['truth'], 'inconclusive') for r in rows)}.",
        "- Per planted class: " + ", ".join(f"{c} {a}/{b}" for c, (a, b) in
                                            per_class.items()) + ".",
        f"- False `sign-flip` verdicts: {len(false_flips)}.",
        f"- Effect CIs covering the planted effect: {sum(covered)}/{len(covered)} (nominal "
        f"{100 * level:.1f}% each).",
        "",
        "Limits of this check: the planted responses are linear in the parameters, so "
        "cross-validation keeps the linear emulator in every sampled PPE here (the GP is "
        "exercised by the Ishigami check below and by the tests; gradient boosting reaches a "
        "CV R² of about 0.4 on 40 members and is rejected). The ensemble sizes are chosen so "
        "that the coupled weather noise allows every class to be told apart; with fewer "
        "coupled years the CIs widen and the analysis says `inconclusive` (see the size sweep "
        "below) rather than guess.",
        "",
        "## Sobol indices through an emulator: the Ishigami function",
        "",
        "Ishigami (a = 7, b = 0.1) on [-π, π]³, 200 Latin-hypercube training points, emulator "
        "chosen by 5-fold CV among linear, GP and gradient boosting, Sobol indices by SALib "
        "(Saltelli/Sobol sample of 8192 base points through the emulator). Analytic: S1 = "
        f"{', '.join(f'{v:.3f}' for v in ISHIGAMI_S1)}, ST = "
        f"{', '.join(f'{v:.3f}' for v in ISHIGAMI_ST)}.",
        "",
        "| seed | emulator (CV R²) | S1 x1 | S1 x2 | S1 x3 | ST x1 | ST x2 | ST x3 | "
        "max S1 error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ishigami:
        err = max(abs(a - b) for a, b in zip(r["s1"], ISHIGAMI_S1, strict=True))
        lines.append(f"| {r['seed']} | {r['model']} ({r['cv_r2']:.3f}) | "
                     + " | ".join(f"{v:.3f}" for v in (*r["s1"], *r["st"]))
                     + f" | {err:.3f} |")
    lines.append("")
    lines += _sweep_lines(sweep, args.sweep_seeds)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--oaat-members", type=int, default=8)
    parser.add_argument("--oaat-years", type=int, default=120)
    parser.add_argument("--sampled-members", type=int, default=40)
    parser.add_argument("--sampled-years", type=int, default=20)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--in-memory", action="store_true")
    parser.add_argument("--oaat-sizes", nargs="+", default=["4x15", "4x30", "8x30", "8x60",
                                                            "8x120", "16x120"])
    parser.add_argument("--sampled-sizes", nargs="+", default=["12x20", "20x20", "40x20"])
    parser.add_argument("--sweep-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("docs/validation-sensitivity.md"))
    args = parser.parse_args()
    settings = SensitivitySettings(n_bootstrap=args.bootstrap)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="esmwatch-sensitivity-"))
    run = _run_memory if args.in_memory else _run_files
    rows = []
    for design, members, years in (("oaat", args.oaat_members, args.oaat_years),
                                   ("sampled", args.sampled_members, args.sampled_years)):
        for seed in args.seeds:
            start = time.perf_counter()
            result, truth = run(design, members, years, seed, settings, workdir)
            rows += _rows(result, truth, design, seed, time.perf_counter() - start)
            print(f"{design} seed {seed}: "
                  + ", ".join(f"{r['parameter']} {r['found']}" for r in rows[-7:]), flush=True)
    ishigami = _ishigami(args.seeds, 200, 8192)
    sweep = (_size_sweep("oaat", args.oaat_sizes, args.sweep_seeds, settings, workdir)
             + _size_sweep("sampled", args.sampled_sizes, args.sweep_seeds, settings, workdir))
    args.out.write_text(_markdown(rows, ishigami, sweep, args))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
