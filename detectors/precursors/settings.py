"""The settings of a precursor analysis: every number that decides it, echoed into the result.

Apart from the analysis so that job parameters and result schemas can be built without
importing the model stack (torch).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from detectors.budget.settings import BudgetSettings
from detectors.labels import LabelRule
from detectors.samples import SampleRule


class PrecursorSettings(BaseModel):
    """Everything that decides a precursor analysis; echoed into the result."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    models: tuple[str, ...] = ("mlp", "cnn", "logistic", "gbm")
    explain_model: str = Field(
        "auto", description="model whose SHAP values rank processes; 'auto' takes the "
        "summary model (mlp, logistic, gbm) with the best mean ROC AUC in the drivers view, "
        "so explanations come from the model that predicts best")
    views: tuple[str, ...] = ("full", "drivers")
    n_folds: int = Field(5, ge=2)
    n_boot: int = Field(500, ge=50)
    alpha: float = Field(
        0.1, gt=0, lt=1, description="family-wise error rate per view: a process is tested at "
        "alpha / (number of processes in the view), Bonferroni, against the permutation null")
    n_permutations: int | None = Field(
        None, ge=19, description="permutations of the null per view; None: the fewest that "
        "let a process reach the Bonferroni level (2 x processes / alpha)")
    permutation_ridge: float = Field(
        0.1, gt=0, description="ridge strength of the discriminant refitted on every "
        "permutation (inputs standardised; the class-weighted covariance has unit trace "
        "per feature)")
    drop_top: int = Field(
        8, ge=0, description="at most this many processes that beat the permutation null are "
        "tested by drop-process retraining (highest importance first); in a view with drop "
        "tests only a tested process can be significant")
    drop_refits: int = Field(
        3, ge=1, description="refits of the explained model with other seeds that a drop "
        "test is measured against: the AUC lost without a process must exceed the AUC the "
        "mean refit loses, draw by draw (one refit made the bar as noisy as the test)")
    explain_rows: int = Field(
        400, ge=20, description="test windows explained per fold (all positives kept)")
    kernel_samples: int = Field(
        20, ge=0, le=50, description="rows of the first fold of every (lead, view) that "
        "KernelExplainer also explains, as a cross-check of the fast explainer (0: off)")
    drop_views: tuple[str, ...] = Field(
        ("drivers",), description="views whose significant processes get drop-process tests "
        "(the full view's symptoms are redundant with each other, so removing one costs "
        "nothing and the test says nothing)")
    n_jobs: int | None = Field(None, ge=1, description="processes; None = all cores")
    seed: int = 0
    label: LabelRule = Field(default_factory=LabelRule)
    samples: SampleRule = Field(default_factory=SampleRule)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
