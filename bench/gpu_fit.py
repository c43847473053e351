"""Torch classifier training on CPU and CUDA at the precursor benchmark's sizes.

Needs only numpy, scikit-learn and torch, so it runs on a bare GPU machine too. Sizes
match a 50-member x 40-year freeze database at one lead: ~3000 windows, 144 summary
columns (36 features x 4 lag blocks) for the MLP, 36 channels x 24 months for the CNN.

Usage::

    python bench/gpu_fit.py            # every device torch can see
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from detectors.models import get_model


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, channels, months = 3000, 36, 24
    seq = rng.normal(size=(n, channels, months)).astype(np.float32)
    drive = seq[:, 0, -12:].mean(axis=1) + 0.5 * seq[:, 1, -6:].mean(axis=1)
    y = (drive + 0.3 * rng.normal(size=n) > 0.6).astype(int)
    summary = seq.reshape(n, channels, 4, 6).mean(axis=3).reshape(n, -1)
    groups = np.repeat(np.arange(n // 60), 60)
    return seq, summary, y, groups


def main() -> None:
    seq, summary, y, groups = _data()
    train, test = groups < 40, groups >= 40
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"torch {torch.__version__}; devices: {devices}; "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}"
    )
    timings: dict[tuple[str, str], float] = {}
    for device in devices:
        os.environ["ESMWATCH_DEVICE"] = device
        for name, x in (("mlp", summary), ("cnn", seq)):
            spec = get_model(name)
            spec.build(seed=0).fit(x[train][:600], y[train][:600], groups=groups[train][:600])
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                model = spec.build(seed=0).fit(x[train], y[train], groups=groups[train])
                best = min(best, time.perf_counter() - start)
            auc = roc_auc_score(y[test], model.predict_proba(x[test]))
            timings[(name, device)] = best
            print(
                f"{name:4s} on {device:4s}: fit {best:6.2f} s (best of 3, "
                f"{model.history_['epochs']} epochs), held-out AUC {auc:.3f}"
            )
    if "cuda" in devices:
        for name in ("mlp", "cnn"):
            ratio = timings[(name, "cpu")] / timings[(name, "cuda")]
            print(f"{name}: CPU/GPU fit-time ratio {ratio:.2f}")

if __name__ == "__main__":
    main()
