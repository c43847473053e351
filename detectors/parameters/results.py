"""Result contract of the parameters job (docs/design.md "Science" -> "Parameters").

``result.json`` of ``esmwatch analyze parameters`` is a :class:`ParametersResult`; its JSON
Schema is published by ``esmwatch schema parameters`` and every result is validated against
it in the tests. Probabilities are P(freeze within the run length); parameter values are in
the parameter's own units unless a field says ``scaled`` (0 at min, 1 at max).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from detectors.contracts import CI, ResultContract, Strict

Direction = Literal["+", "-", "0"]


class CandidateScore(Strict):
    name: str
    log_loss: float = Field(description="out-of-fold log loss, mean over repeats")
    brier: float
    roc_auc: float | None


class CvPoint(Strict):
    member: str
    froze: bool
    predicted: float = Field(description="out-of-fold P(freeze), first repeat")


class EmulatorSection(Strict):
    model: str
    description: str
    choice: str
    candidates: list[CandidateScore]
    base_rate_log_loss: float = Field(
        description="log loss of predicting the freeze fraction "
        "for everyone: a candidate must beat this to have skill"
    )
    cv_folds: int
    cv_repeats: int
    groups: str = Field(description="what the CV folds are grouped by")
    n_bootstrap: int = Field(description="bootstrap refits used for bands")
    shap_explainer: str
    shap_additivity_error: float
    cv: list[CvPoint]


class ParameterRow(Strict):
    parameter: str
    units: str = ""
    default: float | None
    min: float
    max: float
    rank: int = Field(description="1 = most important (mean |SHAP|)")
    importance: float = Field(description="mean |SHAP| over members, P(freeze) units")
    importance_logit: float = Field(description="mean |SHAP| of the log-odds (tested)")
    direction: Direction = Field(description="'+': a higher value, more freezing")
    s1: float | None = Field(description="Sobol first-order index of P(freeze)")
    st: float | None = Field(description="Sobol total index of P(freeze)")
    interaction_share: float | None = Field(description="ST - S1")
    partners: list[str] = Field(description="parameters it interacts with significantly")
    p_value: float = Field(description="maxT permutation p-value over members")
    significant: bool


class PairRow(Strict):
    parameters: tuple[str, str]
    strength: float = Field(description="mean |Shapley interaction index| of the log-odds")
    p_value: float
    significant: bool


class SafeRegionSection(Strict):
    threshold: float
    ci_level: float
    n_points: int
    fractions: dict[Literal["ruled_out", "not_ruled_out", "uncertain"], float]
    safe_fraction: float = Field(
        description="share of the box not ruled out (upper band below the threshold)"
    )
    central_safe_fraction: float = Field(description="share with central P below threshold")
    definition: str


class DependenceRow(Strict):
    parameter: str
    values: list[float]
    p_freeze: list[float]
    low: list[float]
    high: list[float]


class MapMember(Strict):
    member: str
    x: float
    y: float
    froze: bool


class PairMap(Strict):
    x: str
    y: str
    x_values: list[float]
    y_values: list[float]
    p_freeze: list[list[float]] = Field(description="[x index][y index]")
    region: list[list[int]] = Field(description="0 ruled out, 1 not ruled out, 2 uncertain")
    members: list[MapMember]


class ParameterMove(Strict):
    default: float
    value: float
    change: float


class ChangeRow(Strict):
    parameters: dict[str, ParameterMove]
    distance: float = Field(description="move in the scaled box (Euclidean)")
    distance_ci: CI | None = Field(
        None,
        description="single-parameter moves: spread of the move over the bootstrap refits (scaled)",
    )
    p_freeze: float
    p_freeze_ci: CI
    confident: bool = Field(description="upper band below the threshold at the new setting")


class WhatIfSection(Strict):
    threshold: float
    default: dict[str, float] | None
    default_p: float | None
    default_p_ci: CI | None
    already_safe: bool
    best: ChangeRow | None
    alternative: ChangeRow | None = Field(description="best change using other parameters")
    note: str


class DriverLink(Strict):
    parameter: str
    term: str
    process: str | None
    slope_msv: float = Field(description="change of the pre-onset mean over the full range")
    p_value: float
    p_holm: float
    significant: bool
    frozen_minus_other_msv: float | None
    chain: str
    consistent: bool | None


class MemberRow(Strict):
    member: str
    froze: bool
    first_freeze: str | None
    time_years: float = Field(description="to onset, or to the end of the run (censored)")
    censored: bool
    p_freeze: float
    parameters: dict[str, float]


class ParametersResult(ResultContract):
    job: Literal["parameters"] = "parameters"
    ensembles: list[str]
    n_members: int
    n_frozen: int
    label: dict
    files: dict[str, str | None]
    settings: dict
    emulator: EmulatorSection
    parameters: list[ParameterRow] = Field(description="sorted by rank")
    interactions: list[PairRow] = Field(description="sorted by strength")
    safe_region: SafeRegionSection
    partial_dependence: list[DependenceRow]
    pair_map: PairMap | None
    what_if: WhatIfSection
    drivers: list[DriverLink]
    survival: str = Field(description="survival model of time to onset, or why there is none")
    members: list[MemberRow]
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        top = self.parameters[0]
        flagged = [p.parameter for p in self.parameters if p.significant]
        return (
            f"parameters: {self.n_frozen}/{self.n_members} froze; emulator "
            f"{self.emulator.model}; significant: {', '.join(flagged) or 'none'} (top "
            f"{top.parameter}); safe fraction {self.safe_region.safe_fraction:.2f}"
        )
