"""The budget contract, a block of the precursor result (``result.json`` ``budget``)."""

from __future__ import annotations

from pydantic import Field

from detectors.contracts import CI, Strict


class Anomaly(Strict):
    """A series before onset: frozen members, comparison members, their difference (mSv)."""

    frozen_msv: float | None
    other_msv: float | None
    anomaly_msv: float | None
    anomaly_ci: CI | None = Field(description="90% bootstrap interval over members")


class Explainer(Strict):
    """A land-side series carrying the same water upstream: shown, never added."""

    feature: str
    lag_months: int | None = Field(description="lag of its best correlation with the term")
    correlation: float | None
    anomaly: Anomaly


class BudgetTerm(Strict):
    source: str = Field(description="registry process: the same names as the model's ranking")
    description: str
    computable: bool
    features: list[str] = Field(default_factory=list)
    lacks: str | None = Field(None, description="variables that would measure it")
    includes: list[str] = Field(
        default_factory=list,
        description="other sources it also carries because they "
        "cannot be computed apart (ice-ocean flux without dvidtd holds imported ice)",
    )
    mean_msv: float | None = None
    anomaly: Anomaly | None = None
    explained_by: list[Explainer] = Field(default_factory=list)


class Budget(Strict):
    """Lab Sea upper-ocean freshwater budget: tendency = sum of terms + residual."""

    reference_salinity: float = Field(description="g/kg; content is relative to it")
    layer_m: tuple[float, float]
    area_m2: float
    area_source: str
    years_before_onset: int
    units: str = "mSv"
    n_frozen: int = Field(description="frozen members with a full window and a comparison")
    tendency: Anomaly | None = None
    sum_of_terms: Anomaly | None = None
    residual: Anomaly | None = None
    closure: float | None = Field(
        None, description="rms(residual) / rms(tendency) over member-months: 0 is closed"
    )
    complete: bool = Field(
        description="every pathway computable; what `unmeasured` lists (exchange with the "
        "water below, the open southern edge, eddies) is still in the residual, so closure "
        "measures those, and only a box with none of them closes (tests/test_gate_transport.py)"
    )
    terms: list[BudgetTerm]
    unmeasured: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def ranking(self) -> list[BudgetTerm]:
        """Computable terms by anomaly, most extra fresh water first."""
        rows = [t for t in self.terms if t.anomaly and t.anomaly.anomaly_msv is not None]
        return sorted(rows, key=lambda t: t.anomaly.anomaly_msv, reverse=True)
