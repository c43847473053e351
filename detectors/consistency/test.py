"""Ensemble consistency test (pyCECT-style) of a candidate against a reference ensemble.

After Baker et al. (2015) and Milroy et al. (2018): annual means of the reference members
are standardised with the ensemble's own mean and spread, reduced to principal components,
and a candidate run fails a PC when its score lies outside ``sigma`` ensemble standard
deviations.  A PC fails the case when it fails in at least ``runs_failing`` of the
``runs`` candidate runs, and the case fails when at least ``min_failing_pcs`` PCs fail.
The false-positive rate is measured on the reference itself: triples of members are held
out, the test is rebuilt from the others, and the held-out triple is tested.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from detectors.consistency.results import ConsistencyResult, PcRow
from ensembles.errors import ConfigurationError


class ConsistencySettings(BaseModel):
    """The test's rule, every number explicit and echoed into the result."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sigma: float = Field(2.0, gt=0, description="a PC score fails outside sigma x ensemble sd")
    min_failing_pcs: int = Field(
        2, ge=1, description="the case fails with this many failing PCs (pyCECT uses 3 of 50 "
        "PCs; a small ensemble tests ~members/3 PCs, so 2)")
    runs: int = Field(3, ge=1, description="candidate runs tested")
    runs_failing: int = Field(2, ge=1, description="a PC fails when it fails in this many runs")
    last_years: int = Field(
        20, ge=1, description="mean of the annual means over the last N common years: longer "
        "means average out weather and give the test its power")
    members_per_pc: float = Field(
        3.0, ge=1, description="test at most members / this many leading PCs: trailing PCs "
        "of a small ensemble fit its own noise, and a new run's scores on them look extreme")
    false_positive_trials: int = Field(200, ge=10)
    seed: int = 0


def annual_means(features: xr.Dataset, years: list[int]) -> xr.DataArray:
    """(member, variable) means over the given model years, variables with no gaps only."""
    data = features.to_dataarray("variable").transpose("member", "variable", "time")
    selected = data.sel(time=data.time.dt.year.isin(years))
    return selected.mean("time")


class _Pca:
    """Standardisation and principal components of a reference ensemble."""

    def __init__(self, reference: np.ndarray, members_per_pc: float) -> None:
        self.mean = reference.mean(axis=0)
        self.scale = reference.std(axis=0, ddof=1)
        z = (reference - self.mean) / self.scale
        _, singular, vt = np.linalg.svd(z, full_matrices=False)
        self.n_pcs = max(1, min(z.shape[1], int(z.shape[0] / members_per_pc)))
        self.loadings = vt[: self.n_pcs]
        variance = singular**2
        self.explained = variance[: self.n_pcs] / variance.sum()
        self.score_sd = (z @ self.loadings.T).std(axis=0, ddof=1)

    def failing(self, runs: np.ndarray, sigma: float) -> np.ndarray:
        """(runs, pcs) True where a run's PC score lies outside sigma sd."""
        scores = ((runs - self.mean) / self.scale) @ self.loadings.T
        return np.abs(scores) > sigma * self.score_sd


def _case_fails(failing: np.ndarray, settings: ConsistencySettings) -> tuple[np.ndarray, bool]:
    pc_fails = failing.sum(axis=0) >= settings.runs_failing
    return pc_fails, bool(pc_fails.sum() >= settings.min_failing_pcs)


def _usable_variables(reference: xr.DataArray) -> list[str]:
    values = reference.values
    ok = np.isfinite(values).all(axis=0) & (values.std(axis=0) > 0)
    return [str(v) for v, keep in zip(reference["variable"].values, ok, strict=True) if keep]


def consistency_test(reference: xr.Dataset, candidate: xr.Dataset,
                     settings: ConsistencySettings | None = None) -> ConsistencyResult:
    """Test ``settings.runs`` candidate members against the reference ensemble.

    Raises
    ------
    ConfigurationError
        Too few reference members, too few candidate runs, or no common years.
    """
    settings = settings or ConsistencySettings()
    common = sorted(set(reference.time.dt.year.values) & set(candidate.time.dt.year.values))
    if not common:
        raise ConfigurationError("reference and candidate share no model year")
    years = [int(y) for y in common[-settings.last_years:]]
    ref = annual_means(reference, years)
    runs_all = annual_means(candidate, years)
    if candidate.sizes["member"] < settings.runs:
        raise ConfigurationError(f"the candidate has {candidate.sizes['member']} member(s); "
                                 f"the test needs {settings.runs} runs")
    if reference.sizes["member"] < 8:
        raise ConfigurationError(f"the reference has {reference.sizes['member']} members; a "
                                 "consistency test needs at least 8 (pyCECT uses hundreds)")
    variables = [v for v in _usable_variables(ref) if v in runs_all["variable"].values
                 and np.isfinite(runs_all.sel(variable=v).values[: settings.runs]).all()]
    ref_values = ref.sel(variable=variables).values
    run_values = runs_all.sel(variable=variables).values[: settings.runs]
    pca = _Pca(ref_values, settings.members_per_pc)
    failing = pca.failing(run_values, settings.sigma)
    pc_fails, fails = _case_fails(failing, settings)
    run_names = [str(m) for m in candidate.member.values[: settings.runs]]
    notes = []
    notes.append(f"{len(variables)} variables, {ref_values.shape[0]} reference members: the "
                 f"leading {pca.n_pcs} PCs ({100 * pca.explained.sum():.0f}% of the variance) "
                 "are tested")
    return ConsistencyResult(
        reference=[str(m) for m in reference.member.values],
        candidate_runs=run_names, variables=variables, years=years, n_pcs=pca.n_pcs,
        settings=settings.model_dump(),
        pcs=[PcRow(pc=i + 1, explained_variance=float(pca.explained[i]),
                   failing_runs=[r for r, f in zip(run_names, failing[:, i], strict=True) if f],
                   fails=bool(pc_fails[i])) for i in range(pca.n_pcs)],
        failing_pcs=int(pc_fails.sum()), verdict="fail" if fails else "pass",
        false_positive_rate=false_positive_rate(ref_values, settings), notes=notes,
    )


def false_positive_rate(values: np.ndarray, settings: ConsistencySettings) -> float:
    """Share of held-out reference triples that the rebuilt test fails."""
    rng = np.random.default_rng(settings.seed)
    n = values.shape[0]
    fails = 0
    for _ in range(settings.false_positive_trials):
        held = rng.choice(n, settings.runs, replace=False)
        rest = np.setdiff1d(np.arange(n), held)
        usable = values[rest].std(axis=0, ddof=1) > 0
        pca = _Pca(values[rest][:, usable], settings.members_per_pc)
        fails += _case_fails(pca.failing(values[held][:, usable], settings.sigma), settings)[1]
    return fails / settings.false_positive_trials
