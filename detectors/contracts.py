"""The one base of every ``result.json``: a strict model with the shared header.

Every analysis result (precursors, consistency, sensitivity, ...) and every job result
derives from :class:`ResultContract`, so the header (``schema``, ``job``,
``esmwatch_version`` and, when a service job produced it, ``job_id`` and ``params``) is
declared once and every field a reader relies on is checked both ways: unknown fields are
refused on load, and the published JSON Schema is generated from the same model
(``esmwatch schema``, see docs/architecture.md "Contracts").
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ensembles import __version__

CI = tuple[float, float]


class Strict(BaseModel):
    """A row of a contract: unknown fields are an error, aliases and names both load."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ResultContract(Strict):
    """What every ``result.json`` starts with: what produced it, and from which request."""

    schema_version: int = Field(1, alias="schema")
    job: str
    esmwatch_version: str = __version__
    job_id: str | None = Field(
        None, description="the service job that produced this result; null from the CLI")
    params: dict[str, Any] | None = Field(
        None, description="the job's validated parameters; null from the CLI")

    def summary(self) -> str:
        """One line for a finished job's ``message``."""
        return f"{self.job} finished"
