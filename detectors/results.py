"""Result contracts: pydantic models whose JSON Schema is published (``esmwatch schema``).

Every job's ``result.json`` is produced from these models and validated against them in the
tests, so downstream users (reports, alerts, notebooks) can rely on the field names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ensembles import __version__

CI = tuple[float, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SkillRow(_Strict):
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


class ProcessRow(_Strict):
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


class FeatureRow(_Strict):
    view: Literal["full", "drivers"]
    feature: str
    process: str
    lag_months: int
    importance: float
    ci: CI


class MemberRow(_Strict):
    member: str
    ensemble: str
    froze: bool
    first_freeze: str | None
    max_risk: float | None = None


class ExplainerCheck(_Strict):
    view: Literal["full", "drivers"]
    lead_months: int
    model: str
    explainer: str
    additivity_error: float
    kernel_rank_correlation: float | None = None
    kernel_n: int | None = None


class PrecursorResult(_Strict):
    """The precursors job's result (DESIGN "Results are contracts")."""

    schema_version: int = Field(1, alias="schema")
    job: Literal["precursors"] = "precursors"
    esmwatch_version: str = __version__
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
    notes: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
