"""The attribution verdict on hand-made budget and model rankings (the rule in one place)."""

from __future__ import annotations

import pytest

from detectors.precursors.verdict import BudgetLine, ModelLine, decide

GREENLAND = BudgetLine("greenland_runoff", 7.7, (5.0, 10.0))
ICE = BudgetLine("sea_ice_import", 0.5, (0.1, 0.9))
PRECIP = BudgetLine("precipitation", -0.2, (-0.7, 0.3))


def model(*rows: tuple[str, bool] | tuple[str, bool, str]) -> list[ModelLine]:
    return [
        ModelLine(r[0], 1.0 - 0.1 * i, r[1], r[2] if len(r) > 2 else "+")
        for i, r in enumerate(rows)
    ]


def test_both_lines_agree_and_are_significant_confident() -> None:
    d = decide([GREENLAND, ICE, PRECIP], model(("greenland_runoff", True), ("wind_stress", False)))
    assert (d.verdict, d.top_source) == ("confident", "greenland_runoff")


def test_the_issue_case_budget_right_model_top_not_significant_is_budget_only() -> None:
    d = decide(
        [GREENLAND, ICE], model(("ocean_freshwater_transport", False), ("greenland_runoff", False))
    )
    assert (d.verdict, d.top_source) == ("budget-only", "greenland_runoff")


def test_lines_that_disagree_are_ambiguous_with_both_named() -> None:
    d = decide([GREENLAND, ICE], model(("sea_ice_import", True)))
    assert d.verdict == "ambiguous" and d.top_source is None
    assert (d.budget_top, d.model_top) == ("greenland_runoff", "sea_ice_import")


def test_model_alone_significant_is_model_only() -> None:
    d = decide([PRECIP], model(("wind_stress", True, "-")))
    assert (d.verdict, d.top_source) == ("model-only", "wind_stress")


def test_model_contradicted_by_the_budget_is_ambiguous() -> None:
    d = decide(
        [PRECIP, BudgetLine("evaporation", -3.0, (-4.0, -2.0))], model(("evaporation", True))
    )
    assert d.verdict == "ambiguous"


def test_budget_terms_that_overlap_are_not_decisive() -> None:
    close = BudgetLine("sea_ice_import", 6.5, (4.0, 9.0))
    d = decide([GREENLAND, close], model(("greenland_runoff", True)))
    assert d.verdict == "model-only" and d.budget_top is None


def test_a_missing_pathway_with_a_larger_residual_blocks_confidence() -> None:
    residual = BudgetLine("residual", 9.0, (6.0, 12.0))
    d = decide(
        [GREENLAND],
        model(("greenland_runoff", True)),
        residual=residual,
        missing=["arctic_outflow"],
    )
    assert d.verdict != "confident" and "missing pathway" in d.reason
    complete = decide([GREENLAND], model(("greenland_runoff", True)), residual=residual)
    assert complete.verdict == "confident"  # the residual is then only vertical exchange


def test_a_freshwater_source_that_lowers_risk_is_not_the_answer() -> None:
    d = decide([GREENLAND], model(("greenland_runoff", True, "-")))
    assert d.verdict == "budget-only"


@pytest.mark.parametrize("significant", [False, True])
def test_null_nothing_stands_out(significant: bool) -> None:
    d = decide(
        [PRECIP, BudgetLine("evaporation", 0.1, (-0.4, 0.6))],
        model(("precipitation", False), ("evaporation", False)),
    )
    assert d.verdict == "ambiguous" and d.top_source is None
    # a lone significant process with no budget support is at most model-only, never confident
    d = decide([PRECIP], model(("precipitation", significant)))
    assert d.verdict in ("ambiguous", "model-only") and d.verdict != "confident"


def test_a_term_that_also_carries_a_missing_pathway_decides_nothing() -> None:
    """Without dvidtd the ice-ocean flux holds imported and local melt: neither line can
    say which, however clear the anomaly and the model."""
    melt = BudgetLine("sea_ice_melt", 3.0, (2.0, 4.0), includes=("sea_ice_import",))
    d = decide([melt, PRECIP], model(("sea_ice_melt", True)), missing=["sea_ice_import"])
    assert d.verdict == "ambiguous" and d.top_source is None
