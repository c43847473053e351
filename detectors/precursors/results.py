"""Result contracts: pydantic models whose JSON Schema is published (``esmwatch schema``).

Every job's ``result.json`` is produced from these models and validated against them in the
tests, so downstream users (reports, alerts, notebooks) can rely on the field names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from detectors.contracts import CI, ResultContract, Strict


class SkillRow(Strict):
    view: Literal["full", "drivers"]
    lead_months: int
    model: str
    roc_auc: float | None
    roc_auc_ci: CI | None
    pr_auc: float | None
    pr_auc_ci: CI | None = None
    brier: float
    brier_ci: CI | None = None
    n_samples: int
    n_positive: int


class ProcessRow(Strict):
    view: Literal["full", "drivers"]
    process: str
    role: Literal["state", "driver", "feedback"]
    importance: float = Field(description="mean over samples of |sum of the process's SHAP|")
    ci: CI
    drop_auc: float | None = Field(description="loss of ROC AUC when the process is removed")
    drop_auc_ci: CI | None = None
    significant: bool
    null_importance: float = Field(description="importance a shadow (permuted) process reaches")
    direction: Literal["+", "-", "0"]
    peak_lag_months: int
    lag_profile: dict[str, float] = Field(
        default_factory=dict, description="importance by lag before onset (months, as text)")
    features: list[str]


class FeatureRow(Strict):
    view: Literal["full", "drivers"]
    feature: str
    process: str
    lag_months: int
    importance: float
    ci: CI


class MemberRow(Strict):
    member: str
    ensemble: str
    froze: bool
    first_freeze: str | None
    max_risk: float | None = None


class RiskModelSummary(Strict):
    """How trustworthy the calibrated risk model is, measured on members it never saw."""

    horizon_months: int = Field(description="target: onset within this many months")
    expected_calibration_error: float
    brier_raw: float
    brier_calibrated: float
    test_members: list[str] = Field(description="held-out members the numbers come from")


class ExplainerCheck(Strict):
    view: Literal["full", "drivers"]
    lead_months: int
    model: str
    explainer: str
    additivity_error: float
    kernel_rank_correlation: float | None = None
    kernel_n: int | None = None


class PrecursorResult(ResultContract):
    """The precursors job's result (docs/architecture.md "Contracts")."""

    job: Literal["precursors"] = "precursors"
    ensembles: list[str]
    configurations: list[str]
    n_members: int
    n_frozen: int
    label: dict
    samples: dict
    views: dict[str, str]
    explain_model: str
    skill: list[SkillRow]
    processes: list[ProcessRow]
    features: list[FeatureRow]
    explainer_checks: list[ExplainerCheck] = Field(default_factory=list)
    budget: dict = Field(default_factory=dict)
    members: list[MemberRow]
    risk_model: RiskModelSummary | None = Field(
        None, description="the calibrated risk model trained beside the analysis; null when "
        "none could be trained (the reason is in notes)")
    notes: list[str] = Field(default_factory=list)

    def top_drivers(self, n: int = 3) -> list[ProcessRow]:
        """The n highest-ranked processes of the drivers view: where to look first."""
        return [p for p in self.processes if p.view == "drivers"][:n]
