"""One verdict from two independent lines: the freshwater budget and the predictive model.

:func:`decide` is the whole rule, a pure function over plain numbers so it can be read in one
place and tested on hand-made cases. A wrong ``confident`` is the worst outcome, so each line
must be decisive on its own before the two can agree:

1. **Budget top**: the term with the largest anomaly (frozen minus comparison members, mSv)
   whose 90% CI lies above zero. It is *decisive* when its CI's lower bound is above every
   other term's anomaly (no other term could be as large). While a pathway cannot be computed
   and the residual's anomaly is positive (CI above zero) and at least the top term's, the
   budget is not decisive: the missing pathway may carry the excess. Nor is a term that
   also carries a pathway the output cannot compute apart (without ``dvidtd``, the ice-ocean
   flux holds the melt of imported ice as well as local melt).
2. **Model top**: the first process of the drivers view (by importance). It is *decisive*
   when it is ``significant`` (as the precursor analysis defines it) and, for a budget
   source, its direction is not ``-`` (more of a freshwater source must mean more risk) and
   its features do not also carry a pathway that cannot be computed apart (as in 1).
3. Both decisive and equal: ``confident``. Both decisive and different: ``ambiguous``. Only
   the budget decisive: ``budget-only``. Only the model decisive: ``model-only``, unless the
   budget contradicts it (the model's source got significantly *less* fresh water in frozen
   members), then ``ambiguous``. Neither: ``ambiguous``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["confident", "budget-only", "model-only", "ambiguous"]


@dataclass(frozen=True)
class BudgetLine:
    """One budget term before onset."""

    source: str
    anomaly: float
    ci: tuple[float, float]
    includes: tuple[str, ...] = ()  # sources it also carries, not computable apart


@dataclass(frozen=True)
class ModelLine:
    """One process of the drivers view."""

    source: str
    importance: float
    significant: bool
    direction: str = "+"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    top_source: str | None
    reason: str
    budget_top: str | None
    model_top: str | None


def _budget_top(
    terms: list[BudgetLine], residual: BudgetLine | None, missing: list[str]
) -> tuple[str | None, str]:
    """The decisive budget term, or None, with the reason."""
    fresher = sorted((t for t in terms if t.ci[0] > 0), key=lambda t: t.anomaly, reverse=True)
    if not fresher:
        return None, "no budget term brought significantly more fresh water before onset"
    top = fresher[0]
    if top.includes:
        return None, (
            f"{top.source} also carries {', '.join(top.includes)}, which cannot be computed apart"
        )
    rivals = [t for t in terms if t.source != top.source and t.anomaly >= top.ci[0]]
    if rivals:
        return None, (
            f"the budget does not separate {top.source} from {', '.join(t.source for t in rivals)}"
        )
    if (
        missing
        and residual is not None
        and residual.ci[0] > 0
        and (residual.anomaly >= top.anomaly)
    ):
        return None, (
            f"the residual ({residual.anomaly:+.1f} mSv) is at least {top.source}'s "
            f"and {', '.join(missing)} cannot be computed: a missing pathway may "
            "carry the excess"
        )
    return top.source, f"the budget singles out {top.source}"


def _model_top(ranking: list[ModelLine], terms: list[BudgetLine]) -> tuple[str | None, str]:
    if not ranking:
        return None, "no drivers-view ranking"
    first = ranking[0]
    if not first.significant:
        return None, f"the model's top driver, {first.source}, is not significant"
    merged = next((t.includes for t in terms if t.source == first.source and t.includes), ())
    if merged:
        return None, (
            f"the model's top driver, {first.source}, also carries "
            f"{', '.join(merged)}, which the output cannot separate"
        )
    budget_sources = {t.source for t in terms}
    if first.source in budget_sources and first.direction == "-":
        return None, (
            f"the model's top driver, {first.source}, raises risk when there is "
            "less of it: not a source of extra fresh water"
        )
    return first.source, f"the model singles out {first.source}"


def decide(
    terms: list[BudgetLine],
    model: list[ModelLine],
    *,
    residual: BudgetLine | None = None,
    missing: list[str] | tuple[str, ...] = (),
) -> Decision:
    """The attribution verdict (see the module docstring for the rule).

    Parameters
    ----------
    terms
        Computable budget terms with their anomaly before onset and its CI.
    model
        The drivers view's processes, highest importance first.
    residual
        The residual's anomaly, when the content's tendency could be computed.
    missing
        Pathways that cannot be computed.
    """
    budget, why_budget = _budget_top(terms, residual, list(missing))
    fitted, why_model = _model_top(model, terms)
    if budget and fitted:
        if budget == fitted:
            return Decision("confident", budget, f"{why_budget}; {why_model}", budget, fitted)
        return Decision(
            "ambiguous", None, f"the lines disagree: {why_budget}; {why_model}", budget, fitted
        )
    if budget:
        return Decision("budget-only", budget, f"{why_budget}; {why_model}", budget, None)
    if fitted:
        against = next((t for t in terms if t.source == fitted and t.ci[1] < 0), None)
        if against is not None:
            return Decision(
                "ambiguous",
                None,
                f"{why_model}, but the budget shows less of it "
                f"in frozen members ({against.anomaly:+.1f} mSv)",
                None,
                fitted,
            )
        return Decision("model-only", fitted, f"{why_model}; {why_budget}", None, fitted)
    return Decision("ambiguous", None, f"{why_budget}; {why_model}", None, None)
