"""The verdict rule on hand-made effects: every class, and the cases at its edges."""

from __future__ import annotations

import pytest

from detectors.sensitivity.verdict import VERDICTS, Effect, VerdictSettings, classify
from synth.scenarios import PPE_PARAMETERS

SETTINGS = VerdictSettings()


def effect(value: float, half: float = 1.0) -> Effect:
    return Effect(value, (value - half, value + half))


@pytest.mark.parametrize(("offline", "coupled", "expected"), [
    (effect(10), effect(10.5), "consistent"),
    (effect(6), effect(12), "amplified"),
    (effect(-10), effect(-4), "damped"),
    (effect(10), effect(-10), "sign-flip"),
    (effect(0.2), effect(6), "coupled-only"),
    (effect(-6), effect(0.3), "offline-only"),
    (effect(0.1), effect(-0.4), "no-effect"),
])
def test_every_class_from_hand_made_effects(offline, coupled, expected):
    verdict, reason = classify(offline, coupled, SETTINGS)
    assert verdict == expected and reason


def test_all_seven_classes_are_covered():
    assert set(VERDICTS) == {"consistent", "amplified", "damped", "sign-flip", "coupled-only",
                             "offline-only", "no-effect"}


def test_a_sign_flip_needs_both_cis_to_exclude_zero():
    assert classify(effect(10), effect(-1.5, 2.0), SETTINGS)[0] == "offline-only"
    assert classify(effect(-1.5, 2.0), effect(10), SETTINGS)[0] == "coupled-only"
    assert classify(effect(10), effect(-3, 2.0), SETTINGS)[0] == "sign-flip"


def test_small_but_well_measured_effects_are_absent_below_the_floor():
    tiny = effect(0.15, 0.05)  # CI excludes zero
    assert classify(tiny, effect(8), SETTINGS)[0] == "amplified"  # no floor: 0.15 counts
    assert classify(tiny, effect(8), SETTINGS, scale=10.0)[0] == "coupled-only"  # floor 1
    assert classify(tiny, tiny, SETTINGS)[0] == "consistent"
    assert classify(tiny, tiny, SETTINGS, scale=10.0)[0] == "no-effect"  # floor 1: absent
    absolute = VerdictSettings(min_effect=0.5, min_effect_fraction=0.0)
    assert classify(tiny, tiny, absolute)[0] == "no-effect"


def test_ratio_beyond_a_threshold_within_noise_stays_consistent():
    noisy = Effect(9.0, (1.0, 17.0))
    verdict, reason = classify(effect(5, 0.2), noisy, SETTINGS)
    assert verdict == "consistent" and "within its CI" in reason
    loose = SETTINGS.model_copy(update={"require_difference": False})
    assert classify(effect(5, 0.2), noisy, loose)[0] == "amplified"


def test_thresholds_are_settings():
    strict = VerdictSettings(amplified_ratio=1.1, damped_ratio=0.95)
    assert classify(effect(10, 0.1), effect(11.5, 0.1), strict)[0] == "amplified"
    assert classify(effect(10, 0.1), effect(9.0, 0.1), strict)[0] == "damped"
    with pytest.raises(ValueError):
        VerdictSettings(damped_ratio=1.2)


@pytest.mark.parametrize("parameter", PPE_PARAMETERS, ids=lambda p: p.name)
def test_noise_free_planted_effects_get_the_planted_class(parameter):
    """The generator's effects, with tight CIs, classify as the classes it planted."""
    verdict, _ = classify(effect(parameter.offline_effect, 0.1),
                          effect(parameter.coupled_effect, 0.1), SETTINGS, scale=12.0)
    assert verdict == parameter.verdict
