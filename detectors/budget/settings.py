"""The settings of the freshwater budget, echoed into the precursor settings and result."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ensembles.registry import registry


class BudgetSettings(BaseModel):
    """What decides the budget; echoed into it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reference_salinity: float = Field(
        default_factory=lambda: registry().reference_salinity,
        gt=0,
        description="g/kg; the registry's, which the gate transports are read with",
    )
    years_before_onset: int = Field(5, ge=1)
    area_m2: float | None = Field(
        None,
        gt=0,
        description="Lab Sea ocean area; None: the ocean grid's (feature-table attribute "
        "set by the readers), else the labsea boxes on the sphere",
    )
    n_boot: int = Field(1000, ge=50)
    seed: int = 0
