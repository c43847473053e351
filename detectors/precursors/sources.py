"""The ``attribution`` block: the budget's and the model's rankings, one verdict, one sentence.

The rule is :func:`detectors.precursors.verdict.decide`; this module only feeds it from the
result's parts and words the answer for a developer.
"""

from __future__ import annotations

from detectors.budget.results import Budget
from detectors.precursors.results import Attribution, BudgetRank, ModelRank, ProcessRow
from detectors.precursors.verdict import BudgetLine, Decision, ModelLine, decide

NAMES = {
    "greenland_runoff": "Greenland runoff",
    "continental_runoff": "North American runoff",
    "sea_ice_import": "sea ice imported through Davis Strait",
    "sea_ice_melt": "local sea-ice melt",
    "arctic_outflow": "Arctic water through Davis Strait",
    "ocean_freshwater_transport": "fresh water across the Cape Farewell section",
    "precipitation": "precipitation",
    "evaporation": "(less) evaporation",
    "wind_stress": "weaker winds",
    "surface_heat_flux": "weaker heat loss",
}


def _name(source: str | None) -> str:
    return NAMES.get(source or "", (source or "").replace("_", " "))


def _line(budget: Budget, source: str) -> str:
    term = next((t for t in budget.terms if t.source == source and t.anomaly), None)
    if term is None or term.anomaly.anomaly_msv is None:
        return ""
    a = term.anomaly
    ci = f", 90% CI {a.anomaly_ci[0]:+.1f} to {a.anomaly_ci[1]:+.1f}" if a.anomaly_ci else ""
    return f" ({a.anomaly_msv:+.1f} mSv{ci})"


def _summary(d: Decision, budget: Budget, model: list[ModelRank]) -> str:
    if d.verdict == "confident":
        return (
            f"Excess freshwater before the freeze came mainly from {_name(d.top_source)}"
            f"{_line(budget, d.top_source)}; the predictive model agrees."
        )
    if d.verdict == "budget-only":
        return (
            f"Excess freshwater before the freeze came mainly from {_name(d.top_source)}"
            f"{_line(budget, d.top_source)} by the budget; the predictive model does not "
            f"confirm it ({d.reason.split('; ')[-1]})."
        )
    if d.verdict == "model-only":
        return (
            f"The predictive model points to {_name(d.top_source)} as the source; the "
            f"budget does not single it out{_line(budget, d.top_source)}."
        )
    sides = []
    if d.budget_top:
        sides.append(f"the budget points to {_name(d.budget_top)}{_line(budget, d.budget_top)}")
    if d.model_top:
        sides.append(f"the predictive model to {_name(d.model_top)}")
    said = "; ".join(sides) if sides else d.reason
    return f"Where the excess freshwater came from is ambiguous: {said}. Both rankings are shown."


def attribute(budget: Budget | None, processes: list[ProcessRow]) -> Attribution:
    """Compare the budget's anomalies with the drivers view's ranking."""
    drivers = [p for p in processes if p.view == "drivers"]
    model = [
        ModelRank(
            source=p.process,
            importance=p.importance,
            significant=p.significant,
            drop_auc=p.drop_auc,
            direction=p.direction,
        )
        for p in drivers
    ]
    ranked = budget.ranking() if budget else []
    lines = [
        BudgetLine(t.source, t.anomaly.anomaly_msv, t.anomaly.anomaly_ci, tuple(t.includes))
        for t in ranked
        if t.anomaly.anomaly_ci is not None
    ]
    residual = None
    if budget and budget.residual and budget.residual.anomaly_ci is not None:
        residual = BudgetLine("residual", budget.residual.anomaly_msv, budget.residual.anomaly_ci)
    missing = [t.source for t in budget.terms if not t.computable] if budget else []
    decision = decide(
        lines,
        [ModelLine(m.source, m.importance, m.significant, m.direction) for m in model],
        residual=residual,
        missing=missing,
    )
    table = [
        BudgetRank(
            source=t.source, anomaly_msv=t.anomaly.anomaly_msv, anomaly_ci=t.anomaly.anomaly_ci
        )
        for t in ranked
    ]
    if budget:
        table += [
            BudgetRank(source=t.source, anomaly_msv=None, anomaly_ci=None, lacks=t.lacks)
            for t in budget.terms
            if not t.computable
        ]
    return Attribution(
        verdict=decision.verdict,
        top_source=decision.top_source,
        summary=_summary(decision, budget, model) if budget else decision.reason,
        reason=decision.reason,
        budget_ranking=table,
        model_ranking=model,
    )
