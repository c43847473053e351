"""Training benchmark: 50 members x 40 years of synthetic features -> precursor analysis.

Times, on whatever device torch picks (CUDA when present, else CPU):
  (1) one cross-validated fit per model, lead and view, with grouped-bootstrap skill CIs
      (no refitting) for every model and baseline;
  (2) the persistence-preserving permutation null (a ridge discriminant refitted on every
      permutation of member series, enough permutations for the Bonferroni level);
  (3) fast SHAP (exact explainer of the chosen model, out of fold);
  (4) drop-process retraining of the significant drivers;
and, separately, KernelExplainer on <= 50 windows against the fast explainer on the same
windows (the ratio says why KernelExplainer is only a cross-check).

Usage::

    python bench/train.py [--members 50] [--years 40] [--jobs 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from detectors.crossval import Fold, fold_inputs, make_folds
from detectors.explain import explain, kernel_crosscheck
from detectors.labels import label_freezes
from detectors.models import get_model, pick_device
from detectors.precursors.analysis import analyse_precursors
from detectors.precursors.settings import PrecursorSettings
from detectors.samples import Standardiser, build_samples, view_features
from synth.ensemble import simulate_ensemble
from synth.table import feature_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--years", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--scenario", default="greenland_runoff")
    args = parser.parse_args()
    print(f"device: {pick_device()}")
    sim = simulate_ensemble("freeze-database", args.scenario, members=args.members,
                            years=args.years, seed=0)
    table = feature_table(sim, [f"b.e30.bench.{i:03d}" for i in range(1, args.members + 1)])
    # KernelExplainer is timed on its own below, so the analysis runs without its cross-check
    settings = PrecursorSettings(n_jobs=args.jobs, kernel_samples=0)
    marks: list[tuple[str, float]] = []
    start = time.perf_counter()
    result = analyse_precursors(table, settings,
                                progress=lambda _, m: marks.append((m, time.perf_counter())))
    end = time.perf_counter()
    stamps = [t for _, t in marks] + [end]
    phases = ["(1) CV fits of every model/lead/view + bootstrap skill",
              "(2) permutation null (ridge refits)", "(3) fast SHAP (out of fold)",
              "(4) drop-process retraining"]
    for name, t0, t1 in zip(phases, stamps[0:], stamps[1:], strict=False):
        print(f"{name:<58s} {t1 - t0:7.1f} s")
    print(f"{'total':<58s} {end - start:7.1f} s   (explained model: {result.explain_model})")
    for summary in result.permutations:
        print(f"{summary.view} view: {summary.n_permutations} permutations "
              f"(alpha per process {summary.alpha_per_process:.4f})")
    lead = 12
    base = build_samples(table, label_freezes(table), lead, table["ensemble"])
    samples = base.select(view_features(base, "drivers"), "drivers")
    fold = make_folds(samples, 5, 0)[0]
    fold = Fold(fold.train, fold.test, Standardiser().fit(samples.subset(fold.train)))
    x_train = fold_inputs(samples, fold, fold.train, "summary")
    x_test = fold_inputs(samples, fold, fold.test, "summary")
    for name in ("mlp", result.explain_model):
        spec = get_model(name)
        model = spec.build(seed=0).fit(x_train, samples.y[fold.train],
                                       groups=samples.groups[fold.train])
        rows = x_test[:50]
        t0 = time.perf_counter()
        explain(model, spec, x_train[:100], rows)
        fast = time.perf_counter() - t0
        check = kernel_crosscheck(model, spec, x_train[:100], rows, n_samples=50)
        print(f"{name}: fast explainer {fast:.2f} s vs KernelExplainer "
              f"{check['seconds_kernel']:.1f} s on {check['n']} windows "
              f"(ratio {check['seconds_kernel'] / max(fast, 1e-9):.0f}x, rank correlation "
              f"{check['spearman_mean_abs']:.2f})")
    best = max((r for r in result.skill if r.view == "drivers" and r.lead_months == lead),
               key=lambda r: r.roc_auc or 0)
    print(f"best drivers-view model at {lead} months: {best.model} AUC {best.roc_auc:.3f}")
    top = next(p for p in result.processes if p.view == "drivers")
    print(f"top driver: {top.process} (significant={top.significant}); "
          f"n_samples per lead ~{np.mean([r.n_samples for r in result.skill]):.0f}")


if __name__ == "__main__":
    main()
