"""The nightly scan: what changed in the registered ensembles, and what a developer must know.

Per registered ensemble: features of new or changed files (everything else comes from the
per-file cache) → risk with the promoted model → freeze labels → the consistency test for
a ``candidate`` against its reference.  What is new since earlier scans becomes a finding;
all new findings of one scan go into one alert report, sent once.  A member whose files
cannot be read is listed with the reason and the scan goes on with the others.

What a scan has seen and alerted is kept per member in the store (``members.scan_state``);
verdicts about a whole ensemble (the consistency test) are kept under the pseudo-member
:data:`ENSEMBLE_STATE`.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

from detectors.compare import CompareSettings
from detectors.consistency.test import ConsistencySettings, consistency_test
from detectors.labels import LabelRule, label_freezes
from ensembles.errors import ConfigurationError, EsmwatchError, InputFileError
from ensembles.features import build_features
from ensembles.filenames import parse_filename
from ensembles.timeaxis import month_key
from service.model_registry import load_promoted_risk
from service.settings import Settings
from service.store import Ensemble, NotFound, Store, public_message

if TYPE_CHECKING:
    from detectors.risk import RiskModel

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]
ENSEMBLE_STATE = "@ensemble"  # pseudo-member holding an ensemble-wide scan state


class Finding(BaseModel):
    """Something new a developer should hear about; ``key`` makes it be heard once."""

    model_config = ConfigDict(extra="forbid")
    key: str
    kind: Literal["frozen", "risk", "inconsistent", "changed"]
    ensemble: str
    member: str | None = None
    month: str | None = Field(None, description="YYYY-MM the finding refers to")
    value: float | None = Field(None, description="risk, or failing PCs")
    message: str


class MemberScan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ensemble: str
    member: str
    months: int
    last_month: str | None
    risk: float | None = Field(None, description="latest calibrated risk before any onset")
    froze: bool
    first_freeze: str | None
    problems: list[str] = Field(default_factory=list)


class EnsembleFailure(BaseModel):
    """An ensemble the scan could not cover, and why (never a traceback or SQL)."""

    model_config = ConfigDict(extra="forbid")
    ensemble: str
    error: str


class ScanSummary(BaseModel):
    """What one scan saw; the body of the scan job's result."""

    model_config = ConfigDict(extra="forbid")
    ensembles: list[str]
    files_read: int = 0
    files_cached: int = 0
    risk_model: str | None = Field(None, description="name and version of the model used")
    alert_risk: float
    members: list[MemberScan] = Field(default_factory=list)
    failures: list[EnsembleFailure] = Field(
        default_factory=list, description="ensembles not scanned; the others were")
    findings: list[Finding] = Field(default_factory=list, description="new in this scan")
    known_findings: int = Field(0, description="still true, already alerted earlier")
    top_processes: list[dict[str, Any]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def scan(store: Store, settings: Settings, names: Sequence[str] = (),
         progress: Progress | None = None) -> tuple[ScanSummary, dict[str, xr.DataArray]]:
    """Scan the named (default: all) registered ensembles.

    Returns the summary and each ensemble's risk series (for the report's figures).  Member
    states are updated in the store; marking findings as alerted is the caller's job, once
    the alert is claimed (:func:`mark_alerted`).
    """
    ensembles = [store.get_ensemble(n) for n in names] if names else store.list_ensembles()
    if not ensembles:
        raise ConfigurationError("no ensemble is registered: add one with `esmwatch ensemble add`")
    promoted = load_promoted_risk(store, settings)
    summary = ScanSummary(ensembles=[e.name for e in ensembles], alert_risk=settings.alert_risk,
                          risk_model=f"risk v{promoted[0].version}" if promoted else None,
                          top_processes=list(promoted[0].metrics.get("top_processes", []))
                          if promoted else [])
    caveat = risk_caveat(promoted[1] if promoted else None)
    if "CAUTION" in caveat:
        summary.notes.append("promoted risk model" + caveat.replace("CAUTION: the risk model ", ""))
    if promoted is None:
        summary.notes.append("no promoted risk model: risk not scored (train one with a "
                             "precursors job, then `esmwatch model promote risk N`)")
    risks: dict[str, xr.DataArray] = {}
    for k, ensemble in enumerate(ensembles):
        if progress:
            progress(0.05 + 0.85 * k / len(ensembles), f"scanning {ensemble.name}")
        try:
            risk = _scan_ensemble(ensemble, store, settings,
                                  promoted[1] if promoted else None, summary)
        except Exception as err:  # one ensemble, even a bug in its handling, never stops the rest
            error = public_message(err)
            summary.failures.append(EnsembleFailure(ensemble=ensemble.name, error=error))
            summary.notes.append(f"{ensemble.name}: not scanned: {error}")
            log.warning("scan of %s failed: %s", ensemble.name, err,
                        exc_info=not isinstance(err, EsmwatchError))
            continue
        if risk is not None:
            risks[ensemble.name] = risk
    return summary, risks


def _scan_ensemble(ensemble: Ensemble, store: Store, settings: Settings,
                   model: RiskModel | None, summary: ScanSummary) -> xr.DataArray | None:
    built = build_features(ensemble.roots, cache_dir=settings.cache_dir,
                           scheduler=settings.file_scheduler)
    summary.files_read += built.files_read
    summary.files_cached += built.files_cached
    features = built.dataset
    states = store.member_states(ensemble.id)
    problems = _problems_by_member(built.problems)
    members = sorted({*(str(m) for m in features.member.values), *problems} - {""}
                     ) if features.sizes.get("member") else sorted(problems)
    onsets = _onsets(features, summary, ensemble.name)
    risk = _risk(features, model, onsets, summary, ensemble.name)
    # months with any data, per member: one pass over the table, not one per member
    observed = (features.to_array().notnull().any("variable")
                if features.sizes.get("member") else None)
    found: list[Finding] = []
    for member in members:
        row = _member_row(ensemble.name, member, observed, risk, onsets, problems.get(member, []))
        summary.members.append(row)
        found += _member_findings(row, settings.alert_risk, risk_caveat(model))
    if ensemble.kind == "candidate" and features.sizes.get("member"):
        found += _candidate_findings(ensemble, features, store, settings, summary,
                                     states.get(ENSEMBLE_STATE, {}))
    for finding in found:
        owner = finding.member or ENSEMBLE_STATE
        if finding.key in states.get(owner, {}).get("alerted", []):
            summary.known_findings += 1
        else:
            summary.findings.append(finding)
    for row in summary.members:
        if row.ensemble == ensemble.name:
            previous = states.get(row.member, {})
            store.save_member_state(ensemble.id, row.member, {
                **previous, "months": row.months, "last_month": row.last_month,
                "froze": row.froze, "first_freeze": row.first_freeze, "risk": row.risk,
                "errors": row.problems})
    return risk


def mark_alerted(store: Store, findings: Sequence[Finding]) -> None:
    """Remember that these findings were alerted, so later scans do not repeat them."""
    by_owner: dict[tuple[str, str], list[str]] = defaultdict(list)
    for finding in findings:
        by_owner[(finding.ensemble, finding.member or ENSEMBLE_STATE)].append(finding.key)
    for (name, member), keys in by_owner.items():
        ensemble = store.get_ensemble(name)
        state = store.member_states(ensemble.id).get(member, {})
        state["alerted"] = sorted({*state.get("alerted", []), *keys})
        store.save_member_state(ensemble.id, member, state)


def _problems_by_member(problems: Sequence[InputFileError]) -> dict[str, list[str]]:
    """Unreadable files grouped by the case (member) their name says they belong to."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for problem in problems:
        try:
            member = parse_filename(problem.path).case
        except InputFileError:
            member = ""  # not a CESM name: reported with the ensemble, not a member
        grouped[member].append(str(problem))
    return dict(grouped)


def _onsets(features: xr.Dataset, summary: ScanSummary, name: str) -> dict[str, str]:
    if not features.sizes.get("member"):
        return {}
    try:
        labels = label_freezes(features, LabelRule())
    except ConfigurationError as err:
        summary.notes.append(f"{name}: freezes not labelled: {err}")
        return {}
    return {str(m): str(o) for m, o in zip(labels.onset.member.values, labels.onset.values,
                                           strict=True) if o}


def _risk(features: xr.Dataset, model: RiskModel | None, onsets: dict[str, str],
          summary: ScanSummary, name: str) -> xr.DataArray | None:
    """Risk per member and month, blanked from the onset on."""
    if model is None or not features.sizes.get("member"):
        return None
    try:
        from detectors.risk import before_onset  # torch only when a model scores

        return before_onset(model.score(features), onsets)
    except ConfigurationError as err:
        summary.notes.append(f"{name}: risk not scored: {err}")
        return None


def _member_row(ensemble: str, member: str, observed: xr.DataArray | None,
                risk: xr.DataArray | None, onsets: dict[str, str], problems: list[str]
                ) -> MemberScan:
    months, last, latest = 0, None, None
    if observed is not None and member in observed.member.values.astype(str):
        valid = observed.sel(member=member).values
        months = int(valid.sum())
        if months:
            last = month_key(observed.time.values[np.flatnonzero(valid)[-1]])
        if risk is not None:
            series = risk.sel(member=member).values
            finite = np.flatnonzero(np.isfinite(series))
            latest = float(series[finite[-1]]) if finite.size else None
    return MemberScan(ensemble=ensemble, member=member, months=months, last_month=last,
                      risk=latest, froze=member in onsets, first_freeze=onsets.get(member),
                      problems=problems)


def risk_caveat(model: RiskModel | None) -> str:
    """What a risk alert must say about the model: no better than climatology, and the
    base rate its probabilities are calibrated to (a freeze-enriched database's, higher
    than a new run's)."""
    rel = model.reliability if model is not None else None
    if rel is None or rel.beats_climatology is None or rel.brier_skill_score is None:
        return ""
    rate = (f"; calibrated to a training base rate of {rel.training_base_rate:.1%}, a new run's "
            "is likely lower" if rel.training_base_rate is not None else "")
    if rel.beats_climatology:
        return f" (Brier skill vs climatology {rel.brier_skill_score:+.2f}{rate})"
    return (f" (CAUTION: the risk model does not beat climatology, Brier skill score "
            f"{rel.brier_skill_score:+.2f}{rate})")


def _member_findings(row: MemberScan, alert_risk: float, caveat: str = "") -> list[Finding]:
    found = []
    if row.froze:
        found.append(Finding(
            key=f"frozen:{row.ensemble}:{row.member}:{row.first_freeze}", kind="frozen",
            ensemble=row.ensemble, member=row.member, month=row.first_freeze,
            message=f"{row.member} froze: the Labrador Sea stopped convecting from "
                    f"{row.first_freeze}"))
    elif row.risk is not None and row.risk >= alert_risk:
        found.append(Finding(
            key=f"risk:{row.ensemble}:{row.member}", kind="risk", ensemble=row.ensemble,
            member=row.member, month=row.last_month, value=row.risk,
            message=f"{row.member}: freeze risk {row.risk:.0%} at {row.last_month} "
                    f"(alert threshold {alert_risk:.0%}){caveat}"))
    return found


def complete_years(features: xr.Dataset) -> int:
    """Model years in which every member has all twelve months of some variable."""
    months = features.to_array().notnull().any("variable").all("member")
    per_year = months.groupby(features.time.dt.year).sum()
    return int((per_year == 12).sum())


def _candidate_findings(ensemble: Ensemble, features: xr.Dataset, store: Store,
                        settings: Settings, summary: ScanSummary,
                        state: dict[str, Any]) -> list[Finding]:
    """A candidate against the reference its metadata names: the consistency test (once per
    milestone) and the comparison, both from one read of the reference's features."""
    reference_name = _reference_of(ensemble)
    if reference_name is None:
        summary.notes.append(f"{ensemble.name}: candidate names no reference ensemble "
                             "(metadata {\"reference\": NAME}); consistency not tested")
        return []

    @functools.cache
    def reference() -> xr.Dataset:
        """Read on first use (a test between milestones needs none); NotFound propagates."""
        built = build_features(store.get_ensemble(reference_name).roots,
                               cache_dir=settings.cache_dir, scheduler=settings.file_scheduler)
        summary.files_read += built.files_read
        summary.files_cached += built.files_cached
        return built.dataset

    return (_consistency_findings(ensemble, features, reference_name, reference, store,
                                  settings, summary, state)
            + _candidate_comparison(ensemble, features, reference_name, reference, summary))


def _consistency_findings(ensemble: Ensemble, features: xr.Dataset, reference_name: str,
                          reference: Callable[[], xr.Dataset], store: Store,
                          settings: Settings, summary: ScanSummary,
                          state: dict[str, Any]) -> list[Finding]:
    """The candidate tested against its reference, once per milestone.

    A milestone is ``settings.consistency_every_years`` more complete years than at the last
    test; between milestones the last verdict stands (its finding is repeated, so it is known,
    not alerted again).
    """
    last = state.get("consistency", {})
    years = complete_years(features)
    due = years >= last.get("years", 0) + settings.consistency_every_years
    if not due:
        summary.notes.append(
            f"{ensemble.name}: {years} complete years; consistency re-tested at "
            f"{last.get('years', 0) + settings.consistency_every_years} (one test per "
            f"{settings.consistency_every_years} new years); last verdict "
            f"{last.get('verdict', 'none')}")
        return (_inconsistent(ensemble.name, reference_name, last["failing_pcs"],
                              last["n_pcs"]) if last.get("verdict") == "fail" else [])
    try:
        ref = reference()
    except NotFound as err:
        summary.notes.append(f"{ensemble.name}: {err}; consistency not tested")
        return []
    try:
        result = consistency_test(ref, features, ConsistencySettings())
    except ConfigurationError as err:
        summary.notes.append(f"{ensemble.name} vs {reference_name}: consistency not tested: "
                             f"{err}")
        return []
    store.save_member_state(ensemble.id, ENSEMBLE_STATE, {**state, "consistency": {
        "years": years, "verdict": result.verdict, "failing_pcs": result.failing_pcs,
        "n_pcs": result.n_pcs}})
    summary.notes.append(f"{ensemble.name} vs {reference_name}: consistency {result.verdict} "
                         f"at {years} complete years ({result.failing_pcs}/{result.n_pcs} PCs "
                         f"fail, false-positive rate {result.false_positive_rate:.2%})")
    if result.verdict != "fail":
        return []
    return _inconsistent(ensemble.name, reference_name, result.failing_pcs, result.n_pcs)


def _inconsistent(name: str, reference_name: str, failing_pcs: int, n_pcs: int
                  ) -> list[Finding]:
    return [Finding(key=f"inconsistent:{name}:{reference_name}", kind="inconsistent",
                    ensemble=name, value=float(failing_pcs),
                    message=f"{name} is statistically distinguishable from "
                            f"{reference_name}: {failing_pcs} of {n_pcs} PCs fail")]


def _reference_of(ensemble: Ensemble) -> str | None:
    """The reference ensemble a candidate's metadata names; None unless it is a name (rows
    written before registration checked it may hold anything)."""
    name = ensemble.meta.get("reference")
    return name if isinstance(name, str) and name else None


def _candidate_comparison(ensemble: Ensemble, features: xr.Dataset, reference_name: str,
                          reference: Callable[[], xr.Dataset], summary: ScanSummary
                          ) -> list[Finding]:
    """The candidate compared with its reference (freeze outcome, shifted processes)."""
    try:
        ref = reference()
    except NotFound as err:
        summary.notes.append(f"{ensemble.name}: {err}; not compared")
        return []
    if not ref.sizes.get("member"):
        summary.notes.append(f"{ensemble.name}: reference {reference_name} has no members; "
                             "not compared")
        return []
    return _comparison_findings(ensemble.name, reference_name, ref, features, summary)


def _comparison_findings(name: str, reference_name: str, reference: xr.Dataset,
                         features: xr.Dataset, summary: ScanSummary) -> list[Finding]:
    """The candidate compared with its reference (freeze outcome, shifted processes): a note
    in every alert, a finding when they differ."""
    from service.analyses.compare import compare_features

    try:
        result = compare_features(reference, features, (reference_name, name),
                                  CompareSettings())
    except ConfigurationError as err:
        summary.notes.append(f"{name} vs {reference_name}: not compared: {err}")
        return []
    shifted = [p.process for p in result.processes if p.shifted]
    summary.notes.append(
        f"{name} vs {reference_name}: {result.verdict}; froze {result.b.n_frozen}/"
        f"{result.b.n_members} vs {result.a.n_frozen}/{result.a.n_members} (Fisher p "
        f"{result.fisher.p_value:.3g}); shifted processes: {', '.join(shifted) or 'none'}")
    if result.verdict != "different":
        return []
    return [Finding(key=f"changed:{name}:{reference_name}", kind="changed", ensemble=name,
                    message=f"{name} differs from {reference_name}: {result.reason}")]


def report_dir_files(directory: Path) -> list[Path]:
    """The files of a written scan report, as alert sinks attach them."""
    return sorted(p for p in directory.iterdir()
                  if p.suffix in (".html", ".md", ".png", ".json") and p.is_file())
