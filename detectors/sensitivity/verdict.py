"""The verdict on one parameter: how its coupled effect compares with its offline effect.

:func:`classify` is a small pure function over two effects with their confidence intervals,
so the rule can be read in one place and tested on hand-made numbers. Small PPEs give wide
intervals, and a wide interval must not become a class: where the evidence cannot tell the
classes apart the verdict is ``inconclusive``, with the reason.

1. The floor is ``max(min_effect, min_effect_fraction x the largest |effect| of any
   parameter)``: a tiny but well-measured effect (offline replicates share their forcing, so
   their noise is small) is not worth a developer's attention.
2. Each setup's effect is *present* when its CI excludes zero and |effect| >= the floor;
   *absent* when its whole CI lies within +-``max(floor, absent_fraction x largest |effect|)``
   (an equivalence margin: the data rule out an effect that matters); otherwise
   *unresolved* (the CI admits both).
3. Both absent: ``no-effect``. One present and the other absent: ``offline-only`` or
   ``coupled-only``. Anything unresolved where the class depends on it: ``inconclusive``.
4. Both present with opposite signs: ``sign-flip`` (both CIs exclude zero).
5. Both present with the same sign: a CI on the ratio coupled / offline decides, never the
   point ratio. Inside ``[damped_ratio, amplified_ratio]`` (equivalence shown):
   ``consistent``; above 1 and reaching past ``amplified_ratio`` (a difference shown, and
   not a negligible one): ``amplified``; below 1 and reaching under ``damped_ratio``:
   ``damped``; containing 1 and reaching past a threshold: ``inconclusive``. The ratio CI
   is a parametric bootstrap at the effects' own level (each effect drawn from a normal with
   the sd its CI implies; the setups are independent runs), percentiles of the ratio draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import norm

Verdict = Literal["consistent", "amplified", "damped", "sign-flip", "coupled-only",
                  "offline-only", "no-effect", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("consistent", "amplified", "damped", "sign-flip",
                                 "coupled-only", "offline-only", "no-effect", "inconclusive")
RATIO_DRAWS = 20000  # parametric-bootstrap draws of the ratio; its percentiles to ~0.01


class VerdictSettings(BaseModel):
    """Thresholds of the verdict, echoed into every result."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    amplified_ratio: float = Field(1.5, gt=1.0, description="coupled/offline above this: "
                                   "amplified")
    damped_ratio: float = Field(0.67, gt=0.0, lt=1.0, description="coupled/offline below this: "
                                "damped")
    min_effect: float = Field(0.0, ge=0.0, description="effects smaller than this (target "
                              "units) count as absent")
    min_effect_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="effects smaller than "
                                       "this fraction of the target's largest |effect| count "
                                       "as absent")
    absent_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="an effect is absent "
                                   "when its CI lies within +- this fraction of the target's "
                                   "largest |effect| (or the floor, if larger)")
    seed: int = Field(0, description="seed of the ratio's parametric bootstrap")


@dataclass(frozen=True)
class Effect:
    """An effect (high end minus low end, target units) and its confidence interval."""

    effect: float
    ci: tuple[float, float]

    @property
    def excludes_zero(self) -> bool:
        return self.ci[0] > 0.0 or self.ci[1] < 0.0

    @property
    def half_width(self) -> float:
        return (self.ci[1] - self.ci[0]) / 2.0


def floor(settings: VerdictSettings, scale: float) -> float:
    """The smallest effect that counts, given the target's largest |effect| ``scale``."""
    return max(settings.min_effect, settings.min_effect_fraction * abs(scale))


def margin(settings: VerdictSettings, scale: float) -> float:
    """Half-width of the band a CI must lie in for the effect to be absent."""
    return max(floor(settings, scale), settings.absent_fraction * abs(scale))


def is_present(effect: Effect, threshold: float) -> bool:
    return effect.excludes_zero and abs(effect.effect) >= threshold


def is_absent(effect: Effect, band: float) -> bool:
    return -band <= effect.ci[0] and effect.ci[1] <= band


def ratio_ci(offline: Effect, coupled: Effect, level: float, seed: int = 0
             ) -> tuple[float, float]:
    """CI of coupled / offline at ``level``: parametric bootstrap of two independent effects."""
    z = float(norm.ppf(0.5 + level / 2.0))
    rng = np.random.default_rng(seed)
    off = rng.normal(offline.effect, offline.half_width / z, RATIO_DRAWS)
    cpl = rng.normal(coupled.effect, coupled.half_width / z, RATIO_DRAWS)
    low, high = np.quantile(cpl / off, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return float(low), float(high)


def classify(offline: Effect, coupled: Effect, settings: VerdictSettings, scale: float = 0.0,
             level: float = 0.9) -> tuple[Verdict, str]:
    """The verdict and a one-line reason (see the module docstring for the rule).

    Parameters
    ----------
    offline, coupled
        The parameter's effect in each setup, with CIs at ``level``.
    settings
        Thresholds.
    scale
        The largest |effect| of any parameter on this target in either setup (for the
        relative floor and margin); 0 uses ``min_effect`` alone.
    level
        The level of the effects' CIs, used for the ratio's CI too.
    """
    threshold, band = floor(settings, scale), margin(settings, scale)
    on, cp = is_present(offline, threshold), is_present(coupled, threshold)
    off_absent, cpl_absent = is_absent(offline, band), is_absent(coupled, band)
    if not on and not cp:
        if off_absent and cpl_absent:
            return "no-effect", (f"offline {_fmt(offline)}, coupled {_fmt(coupled)}: both "
                                 f"within +-{band:.3g}")
        return "inconclusive", (f"offline {_fmt(offline)}, coupled {_fmt(coupled)}: neither "
                                f"present, and not both within +-{band:.3g} (more members "
                                "would tell)")
    if on != cp:
        present, absent = (offline, coupled) if on else (coupled, offline)
        names = ("offline", "coupled") if on else ("coupled", "offline")
        only: Verdict = "offline-only" if on else "coupled-only"
        if cpl_absent if on else off_absent:
            return only, (f"{names[1]} effect {_fmt(absent)} within +-{band:.3g}, "
                          f"{names[0]} {_fmt(present)}")
        return "inconclusive", (f"{names[0]} {_fmt(present)} present; {names[1]} "
                                f"{_fmt(absent)} neither present nor within +-{band:.3g} "
                                "(more members would tell)")
    if math.copysign(1.0, offline.effect) != math.copysign(1.0, coupled.effect):
        return "sign-flip", (f"offline {_fmt(offline)} and coupled {_fmt(coupled)} both exclude "
                             "zero, with opposite signs")
    low, high = ratio_ci(offline, coupled, level, settings.seed)
    text = f"coupled/offline {coupled.effect / offline.effect:.2f} [{low:.2f}, {high:.2f}]"
    if settings.damped_ratio <= low and high <= settings.amplified_ratio:
        return "consistent", (f"{text} within [{settings.damped_ratio:g}, "
                              f"{settings.amplified_ratio:g}]")
    if low > 1.0:
        return "amplified", f"{text} above 1, reaching past {settings.amplified_ratio:g}"
    if high < 1.0:
        return "damped", f"{text} below 1, reaching under {settings.damped_ratio:g}"
    return "inconclusive", (f"{text} contains 1 but not within [{settings.damped_ratio:g}, "
                            f"{settings.amplified_ratio:g}] (more members would tell)")


def _fmt(effect: Effect) -> str:
    return f"{effect.effect:+.3g} [{effect.ci[0]:+.3g}, {effect.ci[1]:+.3g}]"
