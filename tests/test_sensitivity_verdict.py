"""The verdict rule on hand-made effects: every class, the cases at its edges, and the ratio CI.

All expectations are worked out by hand from the rule in the module docstring of
:mod:`detectors.sensitivity.verdict` (scale 12: floor 1.2, absent margin +-3).
"""

from __future__ import annotations

import pytest

from detectors.sensitivity.verdict import (
    VERDICTS,
    Effect,
    VerdictSettings,
    classify,
    ratio_ci,
)

SETTINGS = VerdictSettings()
SCALE = 12.0


def effect(value: float, half: float = 1.0) -> Effect:
    return Effect(value, (value - half, value + half))


CASES = [
    (effect(10, 0.5), effect(10.5, 0.5), "consistent"),  # ratio ~1.05 +- 0.1
    (effect(6, 0.3), effect(12, 0.3), "amplified"),  # ratio ~2.0 +- 0.1
    (effect(-10, 0.3), effect(-4, 0.3), "damped"),  # ratio ~0.4
    (effect(10), effect(-10), "sign-flip"),
    (effect(0.2), effect(6), "coupled-only"),  # offline CI [-0.8, 1.2] within +-3
    (effect(-6), effect(0.3), "offline-only"),
    (effect(0.1), effect(-0.4), "no-effect"),
    (effect(6, 0.3), effect(1, 4), "inconclusive"),  # coupled CI [-3, 5]: unresolved
]


@pytest.mark.parametrize(("offline", "coupled", "expected"), CASES)
def test_every_class_from_hand_made_effects(offline, coupled, expected):
    verdict, reason = classify(offline, coupled, SETTINGS, SCALE)
    assert verdict == expected and reason


def test_the_hand_made_cases_reach_every_class():
    assert {c[2] for c in CASES} == set(VERDICTS)


def test_wide_intervals_are_inconclusive_not_a_class():
    # neither present, one CI too wide to call it absent
    assert classify(effect(0.1), effect(0.5, 5.0), SETTINGS, SCALE)[0] == "inconclusive"
    # offline present, coupled [-3.5, 0.5]: not present, and not inside +-3
    assert classify(effect(10), effect(-1.5, 2.0), SETTINGS, SCALE)[0] == "inconclusive"
    assert classify(effect(-1.5, 2.0), effect(10), SETTINGS, SCALE)[0] == "inconclusive"
    # the same absent effect measured tightly: now it is absent
    assert classify(effect(10), effect(-0.5, 1.0), SETTINGS, SCALE)[0] == "offline-only"
    assert classify(effect(10), effect(-3, 2.0), SETTINGS, SCALE)[0] == "sign-flip"


def test_amplified_needs_the_ratio_ci_not_the_point_ratio():
    """Point ratio 9/5 = 1.8 > 1.5, but coupled sd 8/1.645 = 4.9 puts 1 inside the CI."""
    verdict, reason = classify(effect(5, 0.2), effect(9, 8), SETTINGS, SCALE)
    assert verdict == "inconclusive" and "contains 1" in reason
    # a ratio CI straddling 1.5 from above 1 is amplified; straddling 1 is not
    assert classify(effect(5, 0.2), effect(9, 2), SETTINGS, SCALE)[0] == "amplified"
    assert classify(effect(5, 0.2), effect(6, 3), SETTINGS, SCALE)[0] == "inconclusive"


def test_ratio_ci_of_an_exact_denominator_is_the_numerators_ci_divided():
    """Offline known exactly (5): the ratio's CI is the coupled CI [8, 12] / 5 = [1.6, 2.4]."""
    low, high = ratio_ci(Effect(5.0, (5.0, 5.0)), Effect(10.0, (8.0, 12.0)), 0.9)
    assert low == pytest.approx(1.6, abs=0.02) and high == pytest.approx(2.4, abs=0.02)


def test_small_but_well_measured_effects_are_absent_below_the_floor():
    tiny = effect(0.15, 0.05)  # CI excludes zero, |effect| below the floor 1.0 of scale 10
    assert classify(tiny, effect(8), SETTINGS, scale=10.0)[0] == "coupled-only"
    assert classify(tiny, tiny, SETTINGS, scale=10.0)[0] == "no-effect"
    absolute = VerdictSettings(min_effect=0.5, min_effect_fraction=0.0, absent_fraction=0.1)
    assert classify(tiny, tiny, absolute)[0] == "no-effect"  # within +-0.5
    # with no floor and no scale nothing can be shown absent: a present pair is compared
    tight = effect(0.15, 0.01)  # ratio ~1 +- 0.1
    assert classify(tight, tight, SETTINGS)[0] == "consistent"


def test_thresholds_are_settings():
    strict = VerdictSettings(amplified_ratio=1.1, damped_ratio=0.95)
    assert classify(effect(10, 0.1), effect(11.5, 0.1), strict, SCALE)[0] == "amplified"
    assert classify(effect(10, 0.1), effect(9.0, 0.1), strict, SCALE)[0] == "damped"
    assert classify(effect(10, 0.1), effect(10.2, 0.1), strict, SCALE)[0] == "consistent"
    with pytest.raises(ValueError):
        VerdictSettings(damped_ratio=1.2)
