"""The whole precursor analysis on CUDA and on the CPU, same data, same seed.

Checks that every step (torch MLP and CNN fits, SHAP, the permutation null, drop tests)
runs on the device ``detectors.models.pick_device`` picks, and that the answer does not
depend on it: the drivers-view ranking and the skill table are printed for both.

    python bench/cuda_analysis.py --members 24 --years 30
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from detectors.precursors.analysis import analyse_precursors
from detectors.precursors.settings import PrecursorSettings
from detectors.samples import SampleRule
from synth.ensemble import simulate_ensemble
from synth.table import feature_table


def run(device: str, table, settings: PrecursorSettings) -> None:
    os.environ["ESMWATCH_DEVICE"] = device
    start = time.perf_counter()
    result = analyse_precursors(table, settings)
    seconds = time.perf_counter() - start
    drivers = [f"{p.process}{'*' if p.significant else ''}" for p in result.top_drivers(4)]
    skill = {(r.view, r.lead_months, r.model): r.roc_auc for r in result.skill
             if r.model in ("mlp", "cnn")}
    print(f"{device}: {seconds:.1f} s; drivers view: {', '.join(drivers)}; "
          f"verdict {result.attribution.verdict if result.attribution else '-'}")
    for key, auc in sorted(skill.items()):
        print(f"  {device} {key}: ROC AUC {auc:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=24)
    parser.add_argument("--years", type=int, default=30)
    parser.add_argument("--scenario", default="greenland_runoff")
    args = parser.parse_args()
    sim = simulate_ensemble("freeze-database", args.scenario, members=args.members,
                            years=args.years, seed=0)
    table = feature_table(sim, [f"b.e30.gpu.{i:03d}" for i in range(args.members)],
                          ensemble="b.e30.gpu")
    settings = PrecursorSettings(models=("mlp", "cnn", "logistic"), explain_model="mlp",
                                 samples=SampleRule(leads_months=(12, 24)), n_boot=200)
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else ""))
    for device in (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]:
        run(device, table, settings)


if __name__ == "__main__":
    main()
