"""The verdict on one parameter: how its coupled effect compares with its offline effect.

:func:`classify` is a small pure function over two effects with their confidence intervals,
so the rule can be read in one place and tested on hand-made numbers:

1. An effect is *present* when its CI excludes zero and it is at least the floor
   ``max(min_effect, min_effect_fraction x the largest |effect| of any parameter)``: a tiny
   but well-measured effect (offline replicates share their forcing, so their noise is small)
   is not worth a developer's attention.
2. Neither present: ``no-effect``. Only one present: ``offline-only`` or ``coupled-only``.
3. Both present with opposite signs: ``sign-flip`` (so a sign flip always has both CIs
   excluding zero).
4. Both present with the same sign: the ratio coupled / offline decides ``amplified``
   (above ``amplified_ratio``), ``damped`` (below ``damped_ratio``) or ``consistent``;
   with ``require_difference`` the difference must also exceed its own CI (the half-widths
   added in quadrature: the two setups are independent runs), otherwise ``consistent``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["consistent", "amplified", "damped", "sign-flip", "coupled-only",
                  "offline-only", "no-effect"]
VERDICTS: tuple[Verdict, ...] = ("consistent", "amplified", "damped", "sign-flip",
                                 "coupled-only", "offline-only", "no-effect")


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
    require_difference: bool = Field(True, description="amplified/damped only when the "
                                     "coupled-offline difference exceeds its CI")


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


def is_present(effect: Effect, threshold: float) -> bool:
    return effect.excludes_zero and abs(effect.effect) >= threshold


def classify(offline: Effect, coupled: Effect, settings: VerdictSettings, scale: float = 0.0
             ) -> tuple[Verdict, str]:
    """The verdict and a one-line reason (see the module docstring for the rule).

    Parameters
    ----------
    offline, coupled
        The parameter's effect in each setup, with CIs at the analysis' level.
    settings
        Thresholds.
    scale
        The largest |effect| of any parameter on this target in either setup (for the
        relative floor); 0 uses ``min_effect`` alone.
    """
    threshold = floor(settings, scale)
    on, cp = is_present(offline, threshold), is_present(coupled, threshold)
    if not on and not cp:
        return "no-effect", _absent_reason(offline, coupled, threshold)
    if on and not cp:
        return "offline-only", f"coupled effect {_fmt(coupled)} absent{_wide(coupled, offline)}"
    if cp and not on:
        return "coupled-only", f"offline effect {_fmt(offline)} absent{_wide(offline, coupled)}"
    if math.copysign(1.0, offline.effect) != math.copysign(1.0, coupled.effect):
        return "sign-flip", (f"offline {_fmt(offline)} and coupled {_fmt(coupled)} both exclude "
                             "zero, with opposite signs")
    ratio = coupled.effect / offline.effect
    difference = coupled.effect - offline.effect
    margin = math.hypot(offline.half_width, coupled.half_width)
    distinct = abs(difference) > margin or not settings.require_difference
    if ratio > settings.amplified_ratio and distinct:
        return "amplified", f"coupled/offline = {ratio:.2f} > {settings.amplified_ratio:g}"
    if ratio < settings.damped_ratio and distinct:
        return "damped", f"coupled/offline = {ratio:.2f} < {settings.damped_ratio:g}"
    if not distinct and not settings.damped_ratio <= ratio <= settings.amplified_ratio:
        return "consistent", (f"coupled/offline = {ratio:.2f}, but the difference "
                              f"{difference:+.3g} is within its CI (±{margin:.3g})")
    return "consistent", f"coupled/offline = {ratio:.2f}"


def _fmt(effect: Effect) -> str:
    return f"{effect.effect:+.3g} [{effect.ci[0]:+.3g}, {effect.ci[1]:+.3g}]"


def _absent_reason(offline: Effect, coupled: Effect, threshold: float) -> str:
    text = f"offline {_fmt(offline)}, coupled {_fmt(coupled)}: neither excludes zero"
    if threshold > 0:
        text += f" with |effect| >= {threshold:.3g}"
    return text


def _wide(absent: Effect, present: Effect) -> str:
    """A caveat when the absent effect's CI also admits the present one."""
    if absent.ci[0] <= present.effect <= absent.ci[1]:
        return " (its CI also admits the other setup's effect: more members would tell)"
    return ""
