"""Result contracts: pydantic models whose JSON Schema is published (``esmwatch schema``).

Every job's ``result.json`` is produced from these models and validated against them in the
tests, so downstream users (reports, alerts, notebooks) can rely on the field names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from detectors.budget.results import Budget
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
    chance_band: CI | None = Field(
        None, description="90% band of the ROC AUC that the permutation null reaches at this "
        "view and lead (the permutation model's refits): chance is this band, not 0.5")
    above_chance: bool | None = Field(
        None, description="roc_auc lies above the upper end of chance_band")


class ProcessRow(Strict):
    view: Literal["full", "drivers"]
    process: str
    role: Literal["state", "driver", "feedback"]
    importance: float = Field(description="mean over samples of |sum of the process's SHAP|")
    ci: CI
    drop_auc: float | None = Field(description="loss of ROC AUC when the process is removed")
    drop_auc_ci: CI | None = None
    significant: bool = Field(
        description="beats the persistence-preserving permutation null (member series "
        "permuted among members matched in model time) at alpha / (processes in the view); "
        "in views with drop tests (drivers) the drop test must also pass")
    p_value: float | None = Field(
        None, description="permutation p-value of test_importance against its null")
    test_auc: float | None = Field(
        None, description="the tested statistic: stratified out-of-fold ROC AUC of the "
        "process's part of the permutation model's score (ridge discriminant, linear SHAP "
        "summed over the process's features), mean over leads")
    null_auc: float | None = Field(
        None, description="what the permutation null reaches at the Bonferroni level "
        "(same units as test_auc)")
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


class PermutationSummary(Strict):
    """How the null of one view was built."""

    view: Literal["full", "drivers"]
    n_permutations: int
    model: str = Field(description="the model refitted on every permutation")
    alpha_per_process: float
    null_roc_auc: dict[str, list[float]] = Field(
        default_factory=dict, description="lead (months, as text) -> the whole model's "
        "stratified ROC AUC on every permutation: the distribution chance_band summarises")
    null_process_auc: dict[str, list[float]] = Field(
        default_factory=dict, description="process -> its statistic (test_auc) on every "
        "permutation: the distribution p_value ranks the data against")


class Censoring(Strict):
    """Windows that could not be labelled because a record ended too early."""

    members: list[str] = Field(
        description="unfrozen members whose outcome is unknown before their record ends "
        "(a freeze needs N winters; a record ending with fewer frozen winters is censored)")
    censored_from: dict[str, str] = Field(
        description="member -> month (YYYY-MM) from which an onset cannot be ruled out")
    windows_dropped: dict[str, int] = Field(
        description="lead (months, as text) -> negative windows dropped because their "
        "horizon reached the censoring month")


class MemberRow(Strict):
    member: str
    ensemble: str
    froze: bool
    first_freeze: str | None
    max_risk: float | None = None


class RiskCalibration(Strict):
    """How trustworthy a calibrated risk model is, measured on members it never saw.

    Judged against climatology (the constant training base rate), pooled over repeated
    member splits, with member-bootstrap CIs (:mod:`detectors.risk`).
    """

    expected_calibration_error: float
    expected_calibration_error_ci: CI | None = None
    brier_raw: float
    brier_calibrated: float
    brier_calibrated_ci: CI | None = None
    brier_climatology: float | None = Field(
        None, description="Brier score of the constant training base rate on the same months")
    brier_skill_score: float | None = Field(
        None, description="1 - brier_calibrated / brier_climatology")
    brier_skill_score_ci: CI | None = Field(
        None, description="90% member-bootstrap interval of the Brier skill score")
    beats_climatology: bool | None = Field(
        None, description="the Brier skill score's interval lies above 0; false: the calibrated "
        "risk is worth no more than quoting the base rate, and alerts say so")
    training_base_rate: float | None = Field(
        None, description="fraction of training months with an onset within the horizon; a "
        "freeze-enriched database's is higher than a new run's, so risks are relative to it")
    n_splits: int = Field(1, description="member splits the held-out numbers pool")
    n_censored_months: int = Field(
        0, description="months without a target: their horizon reached the end of an unfrozen "
        "member's labellable record")
    test_members: list[str] = Field(description="held-out members the numbers come from")


class RiskModelSummary(RiskCalibration):
    """The risk model trained beside a precursor analysis, as the result reports it."""

    horizon_months: int = Field(description="target: onset within this many months")


class ExplainerCheck(Strict):
    view: Literal["full", "drivers"]
    lead_months: int
    model: str
    explainer: str
    additivity_error: float
    kernel_rank_correlation: float | None = None
    kernel_n: int | None = None


class BudgetRank(Strict):
    """A budget term in the attribution's table: its anomaly before onset, or what it lacks."""

    source: str
    anomaly_msv: float | None
    anomaly_ci: CI | None
    lacks: str | None = None


class ModelRank(Strict):
    """A process of the drivers view in the attribution's table."""

    source: str
    importance: float
    significant: bool
    drop_auc: float | None
    direction: Literal["+", "-", "0"]


class Attribution(Strict):
    """Where the excess fresh water came from: the budget and the model, one verdict."""

    verdict: Literal["confident", "budget-only", "model-only", "ambiguous"]
    top_source: str | None
    summary: str = Field(description="the answer in a developer's words")
    reason: str
    budget_ranking: list[BudgetRank] = Field(
        description="budget terms, most extra fresh water first; terms it cannot compute last")
    model_ranking: list[ModelRank] = Field(description="drivers view, by importance")


class PrecursorResult(ResultContract):
    """The precursors job's result (docs/architecture.md "Contracts")."""

    schema_version: int = Field(2, alias="schema")  # 2: permutation null, chance bands
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
    budget: Budget | None = Field(
        None, description="Lab Sea upper-ocean freshwater budget (null: no labels to compare)")
    attribution: Attribution | None = Field(
        None, description="budget and drivers-view model compared: the verdict on the source")
    members: list[MemberRow]
    permutations: list[PermutationSummary] = Field(default_factory=list)
    censoring: Censoring | None = None
    risk_model: RiskModelSummary | None = Field(
        None, description="the calibrated risk model trained beside the analysis; null when "
        "none could be trained (the reason is in notes)")
    notes: list[str] = Field(default_factory=list)

    def top_drivers(self, n: int = 3) -> list[ProcessRow]:
        """The n highest-ranked processes of the drivers view: where to look first."""
        return [p for p in self.processes if p.view == "drivers"][:n]
