"""Result contract of the sensitivity job (docs/architecture.md "Contracts").

``result.json`` of ``esmwatch analyze sensitivity`` is a :class:`SensitivityResult`; its JSON
Schema is published by ``esmwatch schema sensitivity`` and every result is validated against
it in the tests. The minimum of docs/design.md::

    {"schema": 1, "job": "sensitivity", "target": {variable, component, region, season, period,
     units}, "design": "oaat"|"sampled", "parameters": [{"parameter", "offline": {"effect",
     "ci", "low", "high"}, "coupled": {...}, "class"}], "emulator": {...}}

plus the noise of OAAT designs, SHAP and Sobol rows of sampled designs, the members and their
responses, the pairing, the settings and notes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from detectors.contracts import CI, ResultContract, Strict
from detectors.sensitivity.verdict import Verdict

SetupName = Literal["coupled", "offline"]


class ResolvedFeature(Strict):
    feature: str
    component: str
    source_variable: str
    n_members: int


class TargetRow(Strict):
    variable: str
    component: str
    region: str
    season: str
    period: str = Field(description="season-years used, 'all years' or YYYY-YYYY")
    units: str
    feature: str
    months: list[int]
    years: list[int] = Field(description="season-years averaged (a season that wraps the "
                                         "year end belongs to the year it ends in)")
    resolved: dict[SetupName, ResolvedFeature]


class SetupEffectRow(Strict):
    effect: float = Field(description="response at the high end minus the low end, target "
                                      "units")
    ci: CI
    low: float = Field(description="response at the low end of the range")
    high: float = Field(description="response at the high end of the range")
    low_value: float = Field(description="parameter value of the low end")
    high_value: float = Field(description="parameter value of the high end")
    n_low: int | None = Field(None, description="OAAT: members averaged at the low end")
    n_high: int | None = None
    present: bool = Field(description="the CI excludes zero and |effect| >= the floor")
    absent: bool = Field(description="the whole CI lies within +- absent_margin")


class ParameterRow(Strict):
    parameter: str
    units: str = ""
    default: float | None = None
    min: float
    max: float
    offline: SetupEffectRow
    coupled: SetupEffectRow
    verdict: Verdict = Field(alias="class")
    reason: str
    ratio: float | None = Field(None, description="coupled / offline effect")
    ratio_ci: CI | None = Field(None, description="CI of the ratio (both effects present, "
                                "same sign): parametric bootstrap at ci_level_effects")


class NoiseRow(Strict):
    setup: SetupName
    source: str = Field(description="'replicates', or the fallback when replicates are missing")
    replicates_missing: bool
    sd: float = Field(description="standard deviation of one member's response")
    df: int
    n_replicates: int
    replicates: list[str] = Field(default_factory=list)


class CvPoint(Strict):
    member: str
    actual: float
    predicted: float


class EmulatorFit(Strict):
    setup: SetupName
    model: str
    description: str
    cv_r2: float | None
    cv_rmse: float
    candidates: dict[str, float | None] = Field(description="CV R^2 of every candidate")
    cv_folds: int
    n_members: int
    cv: list[CvPoint] = Field(description="out-of-fold predictions of the chosen emulator")
    shap_additivity_error: float | None = None


class EmulatorSection(Strict):
    fits: list[EmulatorFit]
    effect_definition: str
    choice: str
    bootstrap: int
    shap_explainer: str
    shap_background: int
    sobol: str


class SobolRow(Strict):
    parameter: str
    setup: SetupName
    s1: float | None
    s1_ci: CI | None
    st: float | None
    st_ci: CI | None


class ShapRow(Strict):
    parameter: str
    setup: SetupName
    mean_abs: float = Field(description="mean over members of |SHAP value| (target units)")
    direction: Literal["+", "-", "0"] = Field(description="sign of the correlation of the "
                                                          "parameter with its SHAP value")
    values: list[float] = Field(description="SHAP value per member, order of `members` of "
                                            "this setup")
    parameter_values: list[float]


class MemberRow(Strict):
    member: str
    setup: SetupName
    role: str = Field(description="default, replicate, the perturbed parameter (OAAT), or "
                                  "sample")
    response: float
    parameters: dict[str, float]


class SensitivityResult(ResultContract):
    """The sensitivity job's result (schema 2: ``inconclusive``, ratio CIs, absent margin,
    spin-up)."""

    schema_version: int = Field(2, alias="schema")
    job: Literal["sensitivity"] = "sensitivity"
    target: TargetRow
    design: Literal["oaat", "sampled"]
    ensembles: dict[SetupName, list[str]] = Field(description="roots of each setup")
    inputs: dict[str, str | None] = Field(description="parameter table, parameters.csv and "
                                                      "crosswalk files used")
    pairing: dict = Field(description="how coupled and offline runs were paired")
    settings: dict
    ci_level_effects: float = Field(description="level of each effect CI: settings.ci_level, "
                                    "Bonferroni-adjusted over parameters x both setups when "
                                    "settings.simultaneous")
    verdict_floor: float = Field(description="smallest |effect| that counts as present")
    absent_margin: float = Field(description="an effect whose CI lies within +- this is "
                                 "absent; neither present nor absent: unresolved")
    spinup_years: int = Field(description="first model years of every member dropped")
    parameters: list[ParameterRow]
    noise: list[NoiseRow] = Field(default_factory=list)
    emulator: EmulatorSection | None = None
    sobol: list[SobolRow] = Field(default_factory=list)
    shap: list[ShapRow] = Field(default_factory=list)
    members: list[MemberRow]
    notes: list[str] = Field(default_factory=list)

    def summary_lines(self) -> list[str]:
        """One line per parameter: verdict, then both effects with CIs."""
        units = self.target.units
        return [f"{p.parameter}: {p.verdict} (offline {p.offline.effect:+.3g} "
                f"[{p.offline.ci[0]:+.3g}, {p.offline.ci[1]:+.3g}], coupled "
                f"{p.coupled.effect:+.3g} [{p.coupled.ci[0]:+.3g}, {p.coupled.ci[1]:+.3g}] "
                f"{units})" for p in self.parameters]

    def summary(self) -> str:
        lines = self.summary_lines()
        return lines[0] if lines else "sensitivity finished"
