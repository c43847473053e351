"""Validation of the precursor analysis on synthetic scenarios with known planted causes.

For every scenario a freeze database is simulated (physics only, no files), analysed
exactly as ``esmwatch analyze precursors`` would, and compared with the truth that only
this script reads.  Both views are checked: the drivers view (attribution) and the full view
(early warning), whose symptoms (state and feedback processes) do carry information about a
coming freeze in every scenario, the null included, and so are reported apart from false
alarms.  Writes ``docs/validation.md`` (or ``--out``).

Usage::

    python bench/validate.py [--members 30] [--years 30] [--seeds 0 1] [--models ...]
    python bench/validate.py --scenarios null --seeds 0 1 2 3 4 5 6 7 8 9 \
        --out docs/validation-null.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import beta

from detectors.precursors.analysis import analyse_precursors
from detectors.precursors.results import PrecursorResult
from detectors.precursors.settings import PrecursorSettings
from detectors.samples import SampleRule
from synth.ensemble import simulate_ensemble
from synth.scenarios import SCENARIOS
from synth.table import feature_table

CLASSIFIERS = ("mlp", "cnn", "logistic", "gbm")


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a rate k / n."""
    a = (1 - level) / 2
    lo = float(beta.ppf(a, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(1 - a, k + 1, n - k)) if k < n else 1.0
    return lo, hi


def _row(name: str, seed: int, result: PrecursorResult, settings: PrecursorSettings,
         seconds: float) -> dict:
    truth = SCENARIOS[name]
    drivers = [p for p in result.processes if p.view == "drivers"]
    full = [p for p in result.processes if p.view == "full"]
    top = drivers[0]
    planted = next((p for p in drivers if p.process == truth.main_driver), None)
    others = [p for p in drivers if p.process != truth.main_driver]
    decoy = next((p for p in drivers if p.process == truth.covarying_decoy), None)
    significant = [p.process for p in drivers if p.significant]
    # full view: a driver-role process other than the planted one (and the decoy built to
    # co-vary with it, which carries real information there) is a false alarm; symptoms are not
    informative = {truth.main_driver, truth.covarying_decoy}
    full_false = [p.process for p in full if p.significant and p.role == "driver"
                  and p.process not in informative]
    symptoms = [p.process for p in full if p.significant and p.role != "driver"]
    best = {lead: max((r.roc_auc or 0.0, r.model, r.roc_auc_ci or (np.nan, np.nan))
                      for r in result.skill
                      if r.view == "drivers" and r.lead_months == lead
                      and r.model in CLASSIFIERS)
            for lead in sorted({r.lead_months for r in result.skill})}
    salinity = {r.lead_months: r.roc_auc for r in result.skill
                if r.view == "drivers" and r.model == "salinity_level"}
    classifier_rows = [r for r in result.skill if r.model in CLASSIFIERS
                       and r.chance_band is not None and r.roc_auc is not None]
    inside = [r.chance_band[0] <= r.roc_auc <= r.chance_band[1] for r in classifier_rows
              if r.view == "drivers"]
    explained = {r.lead_months: (r.roc_auc, r.chance_band) for r in result.skill
                 if r.view == "drivers" and r.model == result.explain_model}
    # why the planted driver is or is not significant: the permutation p-value against its
    # Bonferroni level, and the drop test (AUC lost without it, 90% CI)
    why = ({"p": planted.p_value, "level": settings.alpha / len(drivers),
            "drop": planted.drop_auc, "drop_ci": planted.drop_auc_ci} if planted else None)
    ci_clear = (planted is not None and bool(others)
                and planted.ci[0] > max(p.ci[1] for p in others))
    return {
        "scenario": name, "seed": seed, "planted": truth.main_driver or "none",
        "top": top.process, "top_ci": top.ci, "ci_clear_of_others": ci_clear,
        "decoy": truth.covarying_decoy or "", "decoy_rank": (drivers.index(decoy) + 1
                                                             if decoy else None),
        "decoy_significant": bool(decoy and decoy.significant),
        "planted_significant": bool(planted and planted.significant), "planted_tests": why,
        "significant": significant, "false_alarms": [p for p in significant
                                                     if p != truth.main_driver],
        "full_false_alarms": full_false, "symptoms": symptoms,
        "best": best, "salinity": salinity, "frozen": f"{result.n_frozen}/{result.n_members}",
        "inside_band": (sum(inside), len(inside)), "explained": explained,
        "model": result.explain_model, "seconds": seconds,
        "censored": sum(result.censoring.windows_dropped.values()) if result.censoring else 0,
    }


def _fmt_band(auc: float | None, band: tuple[float, float] | None) -> str:
    if auc is None or band is None:
        return "-"
    return f"{auc:.2f} in [{band[0]:.2f}, {band[1]:.2f}]" + (
        "" if band[0] <= auc <= band[1] else (" ABOVE" if auc > band[1] else " BELOW"))


def _fmt_tests(tests: dict | None) -> str:
    """The planted driver's two tests: permutation p (its Bonferroni level), drop AUC [CI]."""
    if not tests:
        return "-"
    drop = ("not tested" if tests["drop"] is None else
            f"{tests['drop']:+.2f} [{tests['drop_ci'][0]:+.2f}, {tests['drop_ci'][1]:+.2f}]")
    return f"{tests['p']:.3f} ({tests['level']:.3f}) / {drop}"


def _denials(planted: list[dict]) -> str:
    """Which test denied significance to the planted driver, and who ranked first instead."""
    failed = [r for r in planted if not r["planted_significant"] and r.get("planted_tests")]
    by_null = [r for r in failed if r["planted_tests"]["p"] > r["planted_tests"]["level"]]
    by_drop = [r for r in failed if r not in by_null]
    runs = "; ".join(f"{r['scenario']} seed {r['seed']} ({_fmt_tests(r['planted_tests'])})"
                     for r in failed) or "none"
    first = ", ".join(f"{r['scenario']} seed {r['seed']}: {r['top']}" for r in planted
                      if r["top"] != r["planted"]) or "none"
    return (f"- Planted driver not significant: permutation null denied it in {len(by_null)}, "
            f"the drop test in {len(by_drop)} (p (level) / drop AUC [90% CI]: {runs}). "
            f"Another process ranked first: {first}.")


def _markdown(rows: list[dict], args: argparse.Namespace) -> str:
    leads = sorted({lead for r in rows for lead in r["best"]})
    lines = [
        "# Validation of precursor detection on synthetic scenarios",
        "",
        "Coupled-vs-offline parameter sensitivity is validated separately: "
        "[validation-sensitivity.md](validation-sensitivity.md).",
        "",
        f"Generated by `python bench/validate.py --members {args.members} --years {args.years}"
        f" --seeds {' '.join(map(str, args.seeds))} --scenarios {' '.join(args.scenarios)}"
        f" --models {' '.join(args.models)} --leads {' '.join(map(str, args.leads))}"
        f" --n-boot {args.n_boot} --out {args.out}`"
        + (" (with `--save-rows`, runs in separate processes combined by `--render`). "
           if args.render else ". ")
        + "Each row is one synthetic freeze database (physics only, the feature table the "
        "readers would produce) analysed with the default settings but the models, leads and "
        "bootstrap size listed and no KernelExplainer cross-check; the truth comes from the "
        "generator and is read only here.",
        "",
        "`significant` means: beats the persistence-preserving permutation null (member "
        "series permuted among members at risk at the same model times; Bonferroni over the "
        "view's processes), and in the drivers view also the drop-process test. Skill is a "
        "stratified ROC AUC (pairs within one cross-validation fold and one window end) and "
        "is read against the permutation chance band, not 0.5.",
        "",
        "Columns: *top* is the first process of the drivers view with its 90% CI; *clear* says "
        "whether the planted driver's CI lies above every other process's CI; *p / drop* "
        "gives the planted driver's two tests in the drivers view: its permutation p-value "
        "(the Bonferroni level it must reach) and the ROC AUC lost when it is dropped, with "
        "its 90% CI over members (it must exceed refit noise); *decoy rank* is "
        "the rank of the process built to co-vary with the driver; *false alarms (drivers)* "
        "are significant drivers-view processes other than the planted one; *false alarms "
        "(full)* are significant driver-role processes of the full view other than the "
        "planted one and its co-varying decoy (which carries real information in that view); "
        "*symptoms* counts significant state/feedback processes of the full view (the Lab "
        "Sea's own state before onset: early warning, not false alarms); skill is the best "
        "classifier's ROC AUC in the drivers view per lead with its 90% CI over members, and "
        "the salinity-level baseline after the slash (for `null`, choosing the best of "
        "several models biases the AUC up); *in band* counts drivers-view classifier rows "
        "whose AUC lies inside the chance band.",
        "",
        "| scenario | seed | frozen | planted | top (90% CI) | clear | p / drop | decoy (rank) "
        "| false alarms (drivers) | false alarms (full) | symptoms | "
        + " | ".join(f"AUC {ld} mo" for ld in leads) + " | in band | censored | explained | s |",
        "|" + "---|" * (15 + len(leads)),
    ]
    for r in rows:
        skill = " | ".join(f"{r['best'][ld][0]:.2f} [{r['best'][ld][2][0]:.2f}, "
                           f"{r['best'][ld][2][1]:.2f}] ({r['best'][ld][1]}) / "
                           f"{r['salinity'].get(ld, float('nan')):.2f}" for ld in leads)
        flag = ", SIGNIFICANT" if r["decoy_significant"] else ""
        decoy = f"{r['decoy']} ({r['decoy_rank']}{flag})" if r["decoy"] else "-"
        lines.append(
            f"| {r['scenario']} | {r['seed']} | {r['frozen']} | {r['planted']} | {r['top']} "
            f"[{r['top_ci'][0]:.2f}, {r['top_ci'][1]:.2f}] | "
            f"{'yes' if r['ci_clear_of_others'] else 'no'} | "
            f"{_fmt_tests(r.get('planted_tests'))} | {decoy} | "
            f"{', '.join(r['false_alarms']) or 'none'} | "
            f"{', '.join(r['full_false_alarms']) or 'none'} | {len(r['symptoms'])} | {skill} | "
            f"{r['inside_band'][0]}/{r['inside_band'][1]} | {r['censored']} | {r['model']} | "
            f"{r['seconds']:.0f} |")
    null = [r for r in rows if r["planted"] == "none"]
    planted = [r for r in rows if r["planted"] != "none"]
    lines += ["", "## Summary", ""]
    if planted:
        lines += [
            f"- Planted driver ranked first: {sum(r['top'] == r['planted'] for r in planted)}"
            f"/{len(planted)} runs; significant: "
            f"{sum(r['planted_significant'] for r in planted)}/{len(planted)}; CI clear of "
            f"every other process: {sum(r['ci_clear_of_others'] for r in planted)}"
            f"/{len(planted)}.",
            _denials(planted),
            f"- Co-varying decoy ranked below its driver: "
            f"{sum((r['decoy_rank'] or 99) > 1 for r in planted if r['decoy'])}"
            f"/{sum(bool(r['decoy']) for r in planted)}; decoy significant in "
            f"{sum(r['decoy_significant'] for r in planted)} runs.",
            f"- False alarms in planted scenarios: drivers view "
            f"{sum(len(r['false_alarms']) for r in planted)}, full view (driver-role) "
            f"{sum(len(r['full_false_alarms']) for r in planted)} over {len(planted)} runs.",
        ]
    if null:
        n = len(null)
        any_alarm = sum(bool(r["false_alarms"] or r["full_false_alarms"]) for r in null)
        drivers_alarm = sum(bool(r["false_alarms"]) for r in null)
        lo, hi = clopper_pearson(any_alarm, n)
        dlo, dhi = clopper_pearson(drivers_alarm, n)
        inside = sum(r["inside_band"][0] for r in null)
        total = sum(r["inside_band"][1] for r in null)
        lines += [
            f"- Null scenario, false-alarm rate per run (any significant process in the "
            f"drivers view or any significant driver-role process in the full view): "
            f"{any_alarm}/{n} = {any_alarm / n:.0%}, 95% Clopper-Pearson CI "
            f"[{lo:.1%}, {hi:.1%}]; drivers view alone {drivers_alarm}/{n} "
            f"[{dlo:.1%}, {dhi:.1%}].",
            f"- Null scenario, symptoms (state/feedback processes) significant in the full "
            f"view: {sum(bool(r['symptoms']) for r in null)}/{n} runs: the Lab Sea's own state "
            "does foreshadow a freeze that an unobserved drift causes, so these are correct.",
            f"- Null scenario, drivers-view classifier skill inside the permutation chance band: "
            f"{inside}/{total} (view, lead, model) rows; the explained model per lead: "
            + "; ".join(f"seed {r['seed']}: " + ", ".join(
                f"{ld} mo {_fmt_band(*r['explained'][ld])}" for ld in sorted(r["explained"]))
                for r in null) + ".",
        ]
    return "\n".join(lines) + "\n"


def _loaded(row: dict) -> dict:
    """A row read back from JSON: lead keys are numbers again."""
    for key in ("best", "salinity", "explained"):
        row[key] = {int(k): v for k, v in row[key].items()}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=30)
    parser.add_argument("--years", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("docs/validation.md"))
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--models", nargs="+", default=list(PrecursorSettings().models))
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--n-boot", type=int, default=PrecursorSettings().n_boot)
    parser.add_argument("--leads", type=int, nargs="+",
                        default=list(SampleRule().leads_months))
    parser.add_argument("--save-rows", type=Path, default=None,
                        help="also write the rows as JSON (to combine parallel runs)")
    parser.add_argument("--render", type=Path, nargs="+", default=None,
                        help="no analysis: combine rows saved by --save-rows into --out")
    args = parser.parse_args()
    if args.render:
        rows = [_loaded(r) for path in args.render for r in json.loads(path.read_text())]
        args.out.write_text(_markdown(rows, args))
        print(f"wrote {args.out} from {len(rows)} rows")
        return
    rows = []
    for name in args.scenarios:
        for seed in args.seeds:
            sim = simulate_ensemble("freeze-database", name, members=args.members,
                                    years=args.years, seed=seed)
            table = feature_table(sim, [f"b.e30.{name}.{i:03d}"
                                        for i in range(1, args.members + 1)],
                                  ensemble=f"b.e30.{name}")
            start = time.perf_counter()
            # the KernelExplainer cross-check is validated elsewhere (tests/test_explain.py)
            settings = PrecursorSettings(seed=seed, models=tuple(args.models), n_jobs=args.jobs,
                                         n_boot=args.n_boot, kernel_samples=0,
                                         samples=SampleRule(leads_months=tuple(args.leads)))
            result = analyse_precursors(table, settings)
            rows.append(_row(name, seed, result, settings, time.perf_counter() - start))
            r = rows[-1]
            print(f"{name} seed {seed}: top {r['top']} clear={r['ci_clear_of_others']} "
                  f"false alarms {r['false_alarms']} full {r['full_false_alarms']} "
                  f"({r['seconds']:.0f} s)", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(_markdown(rows, args))  # partial tables survive a stop
            if args.save_rows:
                args.save_rows.write_text(json.dumps(rows, default=float))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_markdown(rows, args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
