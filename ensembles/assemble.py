"""The feature table from cached blocks: one ``(member, time)`` Dataset, attrs per feature.

Apart from reading (:mod:`ensembles.features`): assembling is pure numpy over the blocks the
cache holds, so a warm rerun costs this and discovery only.  When two files give the same
month the first in path order wins and the clash is reported, as are missing months,
missing variables and partial sums.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ensembles import __version__
from ensembles.blocks import Column, FeatureBlock
from ensembles.errors import InputFileError
from ensembles.extract import (
    recipe_gaps,
    resolve,
)
from ensembles.filenames import split_case
from ensembles.registry import Feature, definitions_hash, features, registry
from ensembles.timeaxis import month_centre, month_label

log = logging.getLogger(__name__)
GRID_NOTE = "grid: "
"""Prefix of a file note that records a grid fallback (it goes to the features' attrs)."""


def assemble(blocks: Sequence[FeatureBlock]) -> tuple[xr.Dataset, list[InputFileError]]:
    """Stack the blocks' features into ``(member, time)`` arrays with provenance attrs.

    Two files giving the same feature and month (two streams, a restart overlap) keep
    the first in path order and are reported; months missing inside a member's record
    are reported and left NaN.  Work here follows the number of series, not of files:
    it runs over the whole ensemble on every rescan.
    """
    blocks = sorted(blocks, key=lambda b: b.key)
    problems = _notes(blocks)
    choices: dict[str, set[str]] = defaultdict(set)  # grid fallbacks, by component
    for b in blocks:
        choices[b.key.component].update(
            n.removeprefix(GRID_NOTE) for _, n in b.notes if n.startswith(GRID_NOTE)
        )
    members = sorted({b.key.case for b in blocks})
    where = {(b.key.case, b.key.component): b.directory for b in blocks}
    model_of = {(b.key.case, b.key.component): b.key.model for b in blocks}
    months_by_component = _months_by_component(blocks)
    series, duplicates = _first_values(blocks)
    cells, sources, partial = _resolve_all(series, model_of)
    for (case, name), parts in sorted(partial.items()):
        if (case, name) not in cells:
            variable = features()[name].var
            gaps = recipe_gaps(variable, model_of[(case, variable.component)], parts)
            problems.append(
                InputFileError(
                    where[(case, variable.component)], f"{case}: {gaps}; {name} left as NaN"
                )
            )
    problems.extend(
        InputFileError(
            path,
            f"months {', '.join(sorted(months))} already read from {first} "
            "(two streams or a restart overlap); kept that file's values",
        )
        for (path, first), months in sorted(duplicates.items())
    )
    problems.extend(_missing_months(months_by_component, where))
    problems.extend(_missing_variables(cells, months_by_component, where, sources))
    all_months = (
        np.unique(np.concatenate(list(months_by_component.values())))
        if months_by_component
        else np.array([], dtype=int)
    )
    data_vars = {}
    for name in sorted({n for (_, n) in cells}):
        array = np.full((len(members), len(all_months)), np.nan)
        for i, member in enumerate(members):
            if (member, name) in cells:
                months, values = cells[(member, name)]
                array[i, np.searchsorted(all_months, months)] = values
        data_vars[name] = (
            ("member", "time"),
            array,
            _attrs(name, sources[name], choices[features()[name].var.component]),
        )
    ensembles_and_ids = [split_case(m) for m in members]
    coords = {
        "member": members,
        "time": [month_centre(month_label(m)) for m in all_months],
        "ensemble": ("member", [e for e, _ in ensembles_and_ids]),
        "member_id": ("member", [i for _, i in ensembles_and_ids]),
    }
    dataset = xr.Dataset(data_vars, coords=coords)
    dataset.attrs.update(
        esmwatch_version=__version__, feature_definitions=definitions_hash(), Conventions="CF-1.8"
    )
    return dataset, problems


Series = tuple[np.ndarray, np.ndarray]
"""Month numbers (sorted, unique) and their values."""


def _notes(blocks: Sequence[FeatureBlock]) -> list[InputFileError]:
    """What the reader noted about each file, in path order."""
    notes = [(b.paths[i], note) for b in blocks for i, note in b.notes]
    return [InputFileError(path, note) for path, note in sorted(notes, key=lambda n: n[0])]


def _months_by_component(blocks: Sequence[FeatureBlock]) -> dict[tuple[str, str], np.ndarray]:
    """Every month each member's files of each component cover."""
    parts: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for b in blocks:
        parts[(b.key.case, b.key.component)].append(b.months.month)
    return {key: np.unique(np.concatenate(arrays)) for key, arrays in parts.items()}


def _first_values(
    blocks: Sequence[FeatureBlock],
) -> tuple[dict[tuple[str, str], dict[str, Series]], dict[tuple[str, str], set[str]]]:
    """One series per (case, feature, source expression), from the first file in path order.

    Returns the series by (case, feature) and expression, and, for values given again by
    a later file, the months by (later file, first file).
    """
    paths = sorted(p for b in blocks for p in b.paths)
    rank_of = {p: i for i, p in enumerate(paths)}
    ranks = {b.key: np.array([rank_of[p] for p in b.paths], dtype=np.int64) for b in blocks}
    pieces: dict[tuple[str, str, str], list[tuple[np.ndarray, Column]]] = defaultdict(list)
    for b in blocks:
        for (name, expression), column in b.columns.items():
            pieces[(b.key.case, name, expression)].append((ranks[b.key][column.file], column))
    series: dict[tuple[str, str], dict[str, Series]] = defaultdict(dict)
    duplicates: dict[tuple[str, str], set[str]] = defaultdict(set)
    for (case, name, expression), parts in pieces.items():
        rank = np.concatenate([r for r, _ in parts])
        month = np.concatenate([c.month for _, c in parts])
        value = np.concatenate([c.value for _, c in parts])
        order = np.lexsort((rank, month))  # by month, then path
        rank, month, value = rank[order], month[order], value[order]
        first = np.ones(len(month), dtype=bool)
        first[1:] = month[1:] != month[:-1]
        series[(case, name)][expression] = (month[first], value[first])
        if not first.all():
            winner = rank[first][np.cumsum(first) - 1]  # the first file of each row's month
            for later, earlier, m in zip(rank[~first], winner[~first], month[~first], strict=True):
                duplicates[(paths[later], paths[earlier])].add(month_label(m))
    return series, duplicates


def _resolve_all(
    series: dict[tuple[str, str], dict[str, Series]], model_of: dict[tuple[str, str], str]
) -> tuple[
    dict[tuple[str, str], Series],
    dict[str, set[str]],
    dict[tuple[str, str], set[str]],
]:
    """One value per member, feature and month: the preferred source expression's."""
    cells: dict[tuple[str, str], Series] = {}
    sources: dict[str, set[str]] = defaultdict(set)
    partial: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key, by_source in series.items():
        variable = features()[key[1]].var
        model = model_of[(key[0], variable.component)]
        if len(by_source) == 1:  # the usual series: resolve once, not once per month
            ((only, whole),) = by_source.items()
            chosen = resolve(variable, model, {only: None})
            if chosen is not None and chosen[0] == only:
                sources[key[1]].add(only)
                cells[key] = whole
                continue
        # month by month: parts of a sum from separate files, or sources that change
        by_month = {
            e: dict(zip(m.tolist(), v.tolist(), strict=True)) for e, (m, v) in by_source.items()
        }
        resolved: dict[int, float] = {}
        for month in sorted(set().union(*by_month.values())):
            parts = {e: values[month] for e, values in by_month.items() if month in values}
            chosen = resolve(variable, model, parts)
            if chosen is None:
                partial[key].update(parts)
                continue
            sources[key[1]].add(chosen[0])
            resolved[month] = chosen[1]
        if resolved:
            cells[key] = (np.array(list(resolved)), np.array(list(resolved.values()), dtype=float))
    return cells, sources, partial


def _attrs(name: str, used_sources: set[str], grid_choices: set[str]) -> dict[str, str | float]:
    feature = features()[name]
    extra = (  # the budget checks that it uses the same S_ref
        {"reference_salinity": registry().reference_salinity}
        if feature.var.reduction == "transport" else {}
    )
    return {
        **extra,
        "grid_choices": "; ".join(sorted(grid_choices)),
        "units": feature.units,
        "long_name": f"{feature.var.long_name}, {feature.region}",
        "process": feature.process,
        "role": feature.role,
        "source_variable": ",".join(sorted(used_sources)),
        "component": feature.var.component,
        "region": feature.region,
        "reduction": _reduction_text(feature),
    }


def _reduction_text(feature: Feature) -> str:
    if feature.var.reduction == "integral":
        return "area integral over the region's domain cells, converted to mSv of fresh water"
    if feature.var.reduction == "transport":
        top, bottom = registry().upper_ocean_m
        return (
            f"freshwater transport into {feature.var.into} across the gate's faces, "
            f"{top:g}-{bottom:g} m, relative to {registry().reference_salinity:g} g/kg, mSv "
            "(monthly-mean flow: the eddy part is not in it)"
        )
    if feature.var.vertical == "upper":
        top, bottom = registry().upper_ocean_m
        return f"area-weighted mean, thickness-weighted over {top:g}-{bottom:g} m"
    return "area-weighted mean over the region's domain cells"


def _missing_months(
    months_by_component: dict[tuple[str, str], np.ndarray], where: dict[tuple[str, str], Path]
) -> list[InputFileError]:
    problems = []
    for (case, component), months in sorted(months_by_component.items()):
        missing = np.setdiff1d(np.arange(months[0], months[-1] + 1), months)
        if len(missing):
            shown = ", ".join(month_label(m) for m in missing[:6]) + (
                " ..." if len(missing) > 6 else ""
            )
            problems.append(
                InputFileError(
                    where[(case, component)],
                    f"{case} {component}: {len(missing)} month(s) missing ({shown}); left as NaN",
                )
            )
    return problems


def _missing_variables(
    cells: dict[tuple[str, str], dict],
    months_by_component: dict,
    where: dict[tuple[str, str], Path],
    sources: dict[str, set[str]],
) -> list[InputFileError]:
    """Features that other members have but a member with files of that component lacks."""
    lacking: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for name in sorted({n for (_, n) in cells}):
        component = features()[name].var.component
        for case, comp in sorted(months_by_component):
            if comp == component and (case, name) not in cells:
                lacking[(case, component, " or ".join(sorted(sources[name])))].append(name)
    return [
        InputFileError(
            where[(case, component)],
            f"{case}: no {source} in its {component} files; features "
            f"{', '.join(names)} left as NaN",
        )
        for (case, component, source), names in sorted(lacking.items())
    ]
