"""Result contract of the consistency test (docs/architecture.md "Contracts")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from detectors.contracts import CI, ResultContract, Strict


class PcRow(Strict):
    pc: int
    explained_variance: float
    failing_runs: list[str]
    fails: bool


class DroppedVariable(Strict):
    variable: str
    reason: str = Field(description="gaps, constant, near-constant or linearly dependent")


class Calibration(Strict):
    """How the rule's false-positive rate was measured (and its thresholds chosen)."""

    method: str = Field(description="exhaustive or sampled held-out triples")
    n_triples: int
    failing_triples: int
    false_positive_rate: float
    ci: CI = Field(description="exact binomial CI at settings.ci_level")
    target_fpr: float
    sigma_chosen: bool = Field(description="sigma calibrated (not fixed by the settings)")


class PowerRow(Strict):
    pattern: Literal["one variable", "every variable"] = Field(
        description="one variable shifted (each in turn, averaged), or all of them at once"
    )
    shift_sd: float = Field(description="shift of each shifted variable, in its reference sd")
    detection_rate: float = Field(description="share of shifted held-out triples that fail")
    ci: CI


class ConsistencyResult(ResultContract):
    """The consistency job's result (schema 2: calibrated thresholds, filters, power)."""

    schema_version: int = Field(2, alias="schema")
    job: Literal["consistency"] = "consistency"
    reference: list[str]
    candidate_runs: list[str]
    variables: list[str]
    dropped_variables: list[DroppedVariable] = Field(default_factory=list)
    years: list[int]
    n_pcs: int
    sigma: float = Field(description="PC threshold used, ensemble sd")
    min_failing_pcs: int = Field(description="failing PCs that fail the case")
    settings: dict
    pcs: list[PcRow]
    failing_pcs: int
    verdict: str = Field(description="pass or fail")
    false_positive_rate: float = Field(
        description="on held-out reference triples, for this "
        "rule, these variables and this number of PCs"
    )
    calibration: Calibration
    power: list[PowerRow]
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.verdict}: {self.failing_pcs}/{self.n_pcs} PCs fail at sigma "
            f"{self.sigma:g} (false-positive rate {self.false_positive_rate:.2%})"
        )
