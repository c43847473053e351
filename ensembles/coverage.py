"""What a feature table covers: per component and process, built from what, or missing why.

A table that silently lacks precipitation looks exactly like one where precipitation did
not matter, so every run of ``esmwatch features`` (and the features job) ends with this
account. It is a pure function of what the build already knows: the table's attrs
(``source_variable``, ``grid_choices``), the files found and the problems and notes met,
so the CLI and the API only render it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass, field
from typing import Literal

import xarray as xr

from ensembles.errors import InputFileError, UnrecognisedFileName
from ensembles.filenames import CesmFile
from ensembles.registry import Feature, features

MODELS_OF_COMPONENT = {"ocn": ("pop", "mom6"), "ice": ("cice",), "atm": ("cam",), "lnd": ("clm2",)}
"""Models whose files give features, by component."""


@dataclass(frozen=True)
class CoverageRow:
    """One feature of the registry: built (from which recipe and fallbacks) or missing (why)."""

    component: str
    process: str
    feature: str
    status: Literal["built", "missing"]
    detail: str


@dataclass(frozen=True)
class StreamRow:
    """One stream of one case: how many files it has and what became of them."""

    case: str
    stream: str
    files: int
    status: str


def coverage(
    dataset: xr.Dataset,
    files: Sequence[CesmFile],
    problems: Iterable[InputFileError],
    with_features: Set[str] = frozenset(),
) -> list[CoverageRow]:
    """Every registry feature of the components found, sorted by component and process.

    Parameters
    ----------
    dataset
        The feature table (its variables' attrs say how each was built).
    files
        Every file discovered (which components and models the archive has).
    problems
        Problems and notes of the build; the first that names a missing feature, its
        recipe or its region on that component's grid is its reason.
    with_features
        Paths of the files that gave feature values: when none of a component's monthly
        files did, their failure is the reason.
    """
    seen = _by_component(files, list(problems))
    rows = []
    for feature in sorted(features().values(), key=_order):
        component = feature.var.component
        if component not in MODELS_OF_COMPONENT:
            continue
        if feature.name in dataset.data_vars:
            rows.append(_built(feature, dataset[feature.name].attrs))
        else:
            reason = _why_missing(feature, seen[component], with_features)
            rows.append(CoverageRow(component, feature.process, feature.name, "missing", reason))
    return rows


@dataclass
class _Component:
    """What the build saw of one component: its models, monthly files and problems."""

    models: set[str] = field(default_factory=set)
    frequencies: set[str] = field(default_factory=set)
    monthly: set[str] = field(default_factory=set)  # paths
    problems: list[InputFileError] = field(default_factory=list)


def _by_component(
    files: Sequence[CesmFile], problems: list[InputFileError]
) -> dict[str, _Component]:
    """One pass over the files and one over the problems (an archive has ~10^5 files)."""
    seen: dict[str, _Component] = defaultdict(_Component)
    where: dict[str, str] = {}  # file or stream directory -> component
    for f in files:
        entry = seen[f.component]
        entry.models.add(f.model)
        entry.frequencies.add(f.frequency)
        if f.is_monthly:
            entry.monthly.add(str(f.path))
        where[str(f.path)] = where[str(f.path.parent)] = f.component
    for problem in problems:
        if problem.path in where:
            seen[where[problem.path]].problems.append(problem)
    return seen


def _order(feature: Feature) -> tuple[str, str, str]:
    return feature.var.component, feature.process, feature.name


def _built(feature: Feature, attrs: dict) -> CoverageRow:
    detail = f"from {attrs.get('source_variable') or '?'}"
    if attrs.get("grid_choices"):
        detail += f"; {attrs['grid_choices']}"
    return CoverageRow(feature.var.component, feature.process, feature.name, "built", detail)


def _why_missing(feature: Feature, seen: _Component, with_features: Set[str]) -> str:
    """The most specific reason first: the feature or its recipe named, its region, no
    monthly output, every file failing, and last the recipes looked for."""
    component = feature.var.component
    usable = seen.models & set(MODELS_OF_COMPONENT[component])
    if not usable:
        return f"no {component} output ({' or '.join(MODELS_OF_COMPONENT[component])}) found"
    recipes = {m: feature.var.source_options(m) for m in sorted(usable)}
    if not any(recipes.values()):
        return f"no recipe for {', '.join(sorted(usable))} (the variable is not written there)"
    for problem in seen.problems:
        if feature.name in problem.problem or f"{feature.variable}:" in problem.problem:
            return problem.problem
    for problem in seen.problems:
        if f"region {feature.region} " in problem.problem:
            return problem.problem
    if not seen.monthly:
        return f"no monthly {component} output (only {', '.join(sorted(seen.frequencies))})"
    failed = [
        p.problem
        for p in seen.problems
        if p.path in seen.monthly and not p.problem.startswith("grid: ")
    ]
    if failed and not seen.monthly & with_features:
        return f"no monthly {component} file gave values: {failed[0]}"
    shown = " or ".join("+".join(o) for options in recipes.values() for o in options)
    return f"none of {shown} in the monthly {'/'.join(sorted(usable))} files"


def streams(
    files: Sequence[CesmFile], with_features: set[str], problems: Iterable[InputFileError]
) -> list[StreamRow]:
    """What became of every file, summed per case and stream (so every file is accounted for).

    Parameters
    ----------
    files
        Every file discovered.
    with_features
        Paths of the files that gave at least one feature value.
    problems
        Problems of the build: a stream's first one that names one of its files or its
        directory is its reason.
    """
    problems = list(problems)
    grouped: dict[tuple[str, str], list[CesmFile]] = defaultdict(list)
    for f in files:
        grouped[(f.case, f"{f.model}.{f.stream}")].append(f)
    rows = []
    for (case, stream), members in sorted(grouped.items()):
        paths = {str(f.path) for f in members}
        directories = {str(f.path.parent) for f in members}
        given = len(paths & with_features)
        if members[0].layout == "static":
            status = "grid file (completes the grid of the case's other files)"
        elif given == len(members):
            status = "features from every file"
        else:
            reason = next(
                (
                    p.problem
                    for p in problems
                    if (p.path in paths or (p.path in directories and stream in p.problem))
                    and not p.problem.startswith("grid: ")
                ),
                "gave no feature values",
            )
            reason = reason.removeprefix(f"{case} {stream}: ")
            status = (f"features from {given} file(s); " if given else "") + reason
        rows.append(StreamRow(case, stream, len(members), status))
    rows.extend(  # files that could not be placed at all, each by name
        StreamRow("-", p.path.rsplit("/", 1)[-1], 1, p.problem)
        for p in problems
        if isinstance(p, UnrecognisedFileName)
    )
    return rows


def render(rows: Sequence[CoverageRow], stream_rows: Sequence[StreamRow] = ()) -> str:
    """The coverage as plain-text tables, one line per feature (and per stream); a
    component whose features all miss for one reason takes one line."""
    lines = ["coverage (component / process / feature: built from what, or missing why):"]
    for component in dict.fromkeys(r.component for r in rows):
        mine = [r for r in rows if r.component == component]
        if {r.status for r in mine} == {"missing"} and len({r.detail for r in mine}) == 1:
            lines.append(f"  {component:<4} every feature missing: {mine[0].detail}")
            continue
        for process in dict.fromkeys(r.process for r in mine):
            lines.append(f"  {component:<4} {process}")
            lines.extend(
                f"       {'+' if r.status == 'built' else '-'} {r.feature:<28} {r.detail}"
                for r in mine
                if r.process == process
            )
    if stream_rows:
        lines.append("files (case / stream: files, what became of them):")
        lines.extend(_stream_lines(stream_rows))
    if missing := missing_processes(rows):
        lines.append(f"NOT ANALYSED (no feature built): {', '.join(missing)}")
    return "\n".join(lines)


def _stream_lines(rows: Sequence[StreamRow]) -> list[str]:
    """One line per stream and outcome; cases that fared alike share it (an ensemble of 50
    members gives a few lines, not 250)."""
    alike: dict[tuple[str, str], list[StreamRow]] = defaultdict(list)
    for row in rows:
        alike[(row.stream, row.status)].append(row)
    lines = []
    for (stream, status), group in alike.items():
        files = sum(r.files for r in group)
        who = group[0].case if len(group) == 1 else f"{len(group)} cases"
        lines.append(f"  {who} {stream}: {files} file(s), {status}")
    return lines


def missing_processes(rows: Sequence[CoverageRow]) -> list[str]:
    """Processes of which no feature was built, for a one-line warning."""
    built = {r.process for r in rows if r.status == "built"}
    return sorted({r.process for r in rows} - built)
