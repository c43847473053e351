"""Validation of the consistency test's false-positive rate and power on synthetic ensembles.

For each reference size and seed, a control-like reference ensemble of the ``candidate``
planner (``synth.ensemble``) is simulated and tested exactly as ``esmwatch check
consistency`` does:

1. **In sample**: the rate on every held-out triple (``C(n, 3)``), for the rule, variables and
   number of PCs actually used, with its exact binomial CI, against the target.
2. **Out of sample**: the chosen rule applied to triples of *fresh* members of the same
   configuration (other random streams: members the calibration never saw). This is the rate a
   user meets; a rule tuned on its own reference could only look good in sample.
3. **Per reference size**: the out-of-sample failures pooled over seeds, with the exact CI, and
   whether the target lies within it (the issue's acceptance). A size below the test's
   ``min_reference`` is run with the minimum lowered to it and marked: it shows why the minimum
   is where it is.
4. **Power**: the detection rate of held-out triples shifted by d reference sd, and whether the
   generator's planted candidate (one parameter changed) fails.

Only this script knows which members are fresh. Writes ``docs/validation-consistency.md``.

Usage::

    nice -n 10 python bench/validate_consistency.py [--sizes 20 30 40] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.stats import binomtest
from scipy.stats import t as t_dist

from detectors.consistency.test import (
    ConsistencySettings,
    annual_means,
    consistency_test,
    rule_fails,
)
from synth.ensemble import plan_ensemble, simulate_plan
from synth.table import feature_table

SCENARIO = "greenland_runoff"
MIN_REFERENCE = ConsistencySettings().min_reference


def _ensembles(members: int, years: int, seed: int) -> dict[str, xr.Dataset]:
    out = {}
    for plan in plan_ensemble("candidate", SCENARIO, members=members, years=years, seed=seed):
        sim = simulate_plan(plan, SCENARIO, years, seed=seed)
        out[plan.role] = feature_table(sim, [f"{plan.role}.{i:03d}" for i in range(members)],
                                       ensemble=plan.role)
    return out


def _ci(k: int, n: int) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def _one(size: int, seed: int, years: int, fresh_members: int, fresh_triples: int) -> dict:
    start = time.perf_counter()
    runs = _ensembles(size, years, seed)
    settings = ConsistencySettings(min_reference=min(size, MIN_REFERENCE))
    result = consistency_test(runs["reference"], runs["candidate"], settings)
    pool = _ensembles(fresh_members, years, seed + 1000)["reference"]
    ref = annual_means(runs["reference"], result.years).sel(variable=result.variables).values
    fresh = annual_means(pool, result.years).sel(variable=result.variables).values
    rng = np.random.default_rng(seed)
    triples = np.array([rng.choice(fresh_members, 3, replace=False)
                        for _ in range(fresh_triples)])
    fails = rule_fails(ref, fresh[triples], result.n_pcs, result.sigma, 2,
                       result.min_failing_pcs).sum()
    return {"size": size, "seed": seed, "result": result,
            "fresh_fails": int(fails), "fresh_n": fresh_triples,
            "seconds": time.perf_counter() - start}


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _rate(k: int, n: int, target: float) -> tuple[str, str]:
    """'rate [CI]' and whether the target lies within the CI."""
    lo, hi = _ci(k, n)
    return f"{_pct(k / n)} [{_pct(lo)}, {_pct(hi)}]", "yes" if lo <= target <= hi else "no"


def _mean_ci(rates: list[float]) -> tuple[float, float, float]:
    """Mean of per-reference rates and its t 95% CI (the spread between references)."""
    mean = float(np.mean(rates))
    if len(rates) < 2:
        return mean, float("nan"), float("nan")
    half = float(t_dist.ppf(0.975, len(rates) - 1) * np.std(rates, ddof=1) / len(rates) ** 0.5)
    return mean, max(mean - half, 0.0), mean + half


def _size_label(size: int) -> str:
    return f"{size} (below the minimum)" if size < MIN_REFERENCE else str(size)


def _reading(groups: list[tuple[str, list[dict]]], target: float) -> list[str]:
    """One bullet per group: the averaged rate against the target, and the planted change."""
    out = []
    for label, group in groups:
        mean, lo, hi = _mean_ci([r["fresh_fails"] / r["fresh_n"] for r in group])
        side = ("the target lies within its CI" if lo <= target <= hi else
                "below the target (conservative)" if hi < target else "above the target")
        failed = sum(r["result"].verdict == "fail" for r in group)
        out.append(f"- {label} members: fresh runs fail at {_pct(mean)} [{_pct(lo)}, {_pct(hi)}] "
                   f"averaged over {len(group)} references, {side}; the planted candidate "
                   f"fails against {failed} of the {len(group)} references.")
    return [
        *out,
        "- One reference's own rate is not what the calibration controls: its held-out triples "
        "share its few members, so sigma cannot follow that reference's quirks, and the rate "
        "of a given reference scatters around the average (last column above).",
    ]


def _markdown(rows: list[dict], args: argparse.Namespace) -> str:
    command = (f"nice -n 10 python bench/validate_consistency.py --sizes "
               f"{' '.join(map(str, args.sizes))} --seeds {' '.join(map(str, args.seeds))} "
               f"--years {args.years} --fresh-members {args.fresh_members} "
               f"--fresh-triples {args.fresh_triples}")
    target = rows[0]["result"].calibration.target_fpr
    lines = [
        "# Validation of the consistency test (pyCECT-style) on synthetic ensembles",
        "",
        f"Generated by `{command}`.",
        "",
        f"Reference: the `{SCENARIO}` scenario's control-like reference ensemble "
        f"(`synth.ensemble.plan_ensemble('candidate', ...)`), {args.years} years; the candidate "
        "is the same configuration with one parameter changed (the generator's planted change). "
        "The test uses its defaults: pyCECT's variable filters (constant, near-constant, "
        "linearly dependent), the last 20 common years, at most members / 3 PCs, a PC fails in "
        "2 of 3 runs, the case fails with pyCECT's 3 failing PCs (fixed), and sigma is "
        f"calibrated to a {_pct(target)} false-positive rate on every held-out triple of the "
        "reference. The previous rule also chose the failing-PC count (1 to 3) by power on the "
        "same triples; out of sample it failed 0.75% of fresh triples pooled (1.13% at 20 "
        "members): the search overfit the triples it was scored on. Fixing K gives up some "
        "power against a change confined to one or two PCs: the previous rule failed the "
        "planted candidate against 4 of the 9 references of seeds 0-2 at 20, 30 and 40 "
        "members, this one against 3 (docs/validation-consistency.md at commit db57406).",
        "",
        "## False-positive rate: in sample (every held-out triple) and out of sample",
        "",
        "In sample: the rate over all C(n, 3) held-out triples, the test rebuilt from the other "
        "n - 3 members with the same variables and PCs (exact 95% binomial CI; triples share "
        "members, so the CI is optimistic). Out of sample: the chosen rule applied to "
        f"{args.fresh_triples} random triples of {args.fresh_members} fresh members of the same "
        "configuration, never seen by the calibration.",
        "",
        "| members | seed | variables (dropped) | PCs | sigma | K | triples | in sample [95% CI] "
        "| out of sample [95% CI] | target within CI | candidate | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        res, cal = r["result"], r["result"].calibration
        fresh, within = _rate(r["fresh_fails"], r["fresh_n"], target)
        lines.append(
            f"| {_size_label(r['size'])} | {r['seed']} | {len(res.variables)} "
            f"({len(res.dropped_variables)}) | {res.n_pcs} | {res.sigma:g} | "
            f"{res.min_failing_pcs} | {cal.n_triples} ({cal.method}) | "
            f"{_pct(cal.false_positive_rate)} [{_pct(cal.ci[0])}, {_pct(cal.ci[1])}] | {fresh} | "
            f"{within} | {res.verdict} ({res.failing_pcs}/{res.n_pcs} PCs) | "
            f"{r['seconds']:.0f} |")
    lines += [
        "",
        "## Out of sample per reference size (the acceptance)",
        "",
        f"Fresh triples pooled over the {len(args.seeds)} references (seeds) of each size. Two "
        "95% CIs: the exact binomial CI of the pooled triples, which counts triples and is "
        "optimistic, and the t interval of the per-reference rates, which counts references: "
        "one reference's rate varies around the average (range in the last column), and a user "
        "meets the average over the references they might have had.",
        "",
        "| members | references | fresh triples failing | pooled [binomial 95% CI] | "
        "target within CI | mean of references [t 95% CI] | target within CI | target | "
        "per-reference range |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    at_least = [r for r in rows if r["size"] >= MIN_REFERENCE]
    groups = [(_size_label(size), [r for r in rows if r["size"] == size])
              for size in dict.fromkeys(r["size"] for r in rows)]
    if at_least:
        groups.append((f"all at or above {MIN_REFERENCE}", at_least))
    for label, group in groups:
        k = sum(r["fresh_fails"] for r in group)
        n = sum(r["fresh_n"] for r in group)
        pooled, within = _rate(k, n, target)
        each = [r["fresh_fails"] / r["fresh_n"] for r in group]
        mean, lo, hi = _mean_ci(each)
        lines.append(
            f"| {label} | {len(group)} | {k}/{n} | {pooled} | {within} | {_pct(mean)} "
            f"[{_pct(lo)}, {_pct(hi)}] | {'yes' if lo <= target <= hi else 'no'} | "
            f"{_pct(target)} | {_pct(min(each))} to {_pct(max(each))} |")
    lines += ["", *_reading(groups, target), "", "## Power against effect size",
        "",
        "Detection rate of held-out triples shifted by d reference standard deviations, in one "
        "variable (each in turn, averaged) or in every variable at once, tested with the chosen "
        "rule (300 triples; exact 95% CI). A change confined to one of many variables is hard "
        "to see by design: the PCs spread it over many directions.",
        "",
        "| members | seed | shifted | " + " | ".join(
            f"d = {p.shift_sd:g}" for p in rows[0]["result"].power
            if p.pattern == "one variable") + " |",
        "|---|---|---|" + "---|" * len(rows[0]["result"].settings["power_shifts"]),
    ]
    for r in rows:
        for pattern in ("one variable", "every variable"):
            cells = [f"{p.detection_rate:.2f} [{p.ci[0]:.2f}, {p.ci[1]:.2f}]"
                     for p in r["result"].power if p.pattern == pattern]
            lines.append(f"| {r['size']} | {r['seed']} | {pattern} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 30, 40])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--years", type=int, default=20)
    parser.add_argument("--fresh-members", type=int, default=300)
    parser.add_argument("--fresh-triples", type=int, default=20000)
    parser.add_argument("--out", type=Path, default=Path("docs/validation-consistency.md"))
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        for seed in args.seeds:
            rows.append(_one(size, seed, args.years, args.fresh_members, args.fresh_triples))
            r = rows[-1]
            print(f"{size} members seed {seed}: sigma {r['result'].sigma:g} K "
                  f"{r['result'].min_failing_pcs} in {r['result'].false_positive_rate:.4f} "
                  f"out {r['fresh_fails']}/{r['fresh_n']} {r['seconds']:.0f}s", flush=True)
    args.out.write_text(_markdown(rows, args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
