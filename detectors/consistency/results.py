"""Result contract of the consistency test (docs/architecture.md "Contracts")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from detectors.contracts import ResultContract, Strict


class PcRow(Strict):
    pc: int
    explained_variance: float
    failing_runs: list[str]
    fails: bool


class ConsistencyResult(ResultContract):
    """The consistency job's result."""

    job: Literal["consistency"] = "consistency"
    reference: list[str]
    candidate_runs: list[str]
    variables: list[str]
    years: list[int]
    n_pcs: int
    settings: dict
    pcs: list[PcRow]
    failing_pcs: int
    verdict: str = Field(description="pass or fail")
    false_positive_rate: float = Field(description="on held-out reference triples")
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        return f"{self.verdict}: {self.failing_pcs}/{self.n_pcs} PCs fail"
