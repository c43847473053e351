"""Monthly regional features of whole ensembles: discovery -> per-file extraction -> table.

Files are read in parallel with dask (one task per case and model, up to
:data:`BATCH_FILES` files, so each grid is read once per task) and each file's result is
cached; the assembled table is an xarray Dataset with dims ``(member, time)`` whose
variables carry DESIGN's attrs.  Problems with single files never stop the scan: they are
collected, each naming its file, and returned.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask
import netCDF4
import numpy as np
import xarray as xr
from dask.callbacks import Callback

from ensembles import __version__
from ensembles.cache import FeatureCache, file_signature, gc_paused
from ensembles.errors import InputFileError
from ensembles.extract import MODEL_COMPONENT, FileFeatures, GridPlan, extract_features, resolve
from ensembles.filenames import CesmFile, discover
from ensembles.grids import read_grid
from ensembles.registry import Feature, definitions_hash, features, registry
from ensembles.timeaxis import month_centre

log = logging.getLogger(__name__)

# files per dask task: each task reads its grid and builds its region plan and file layouts
# again (5-25 ms, more in a fresh worker), which a few hundred files of ~1 ms each would feel
BATCH_FILES = 1200


@dataclass
class FeatureSet:
    """The feature table and every problem met while building it."""

    dataset: xr.Dataset
    problems: list[InputFileError] = field(default_factory=list)
    files_read: int = 0
    files_cached: int = 0


@dataclass
class _Outcome:
    """What a worker sends back for one file: features or the reason it failed."""

    path: str
    signature: tuple[int, int] | None = None
    features: FileFeatures | None = None
    problem: str | None = None


def read_batch(paths: Sequence[str], model: str, aux: str | None) -> list[_Outcome]:
    """Read files of one case and model; runs in a dask worker process.

    Every failure becomes an outcome naming the file, so one bad file never loses the
    rest of the batch.
    """
    plans: dict[tuple, GridPlan] = {}
    aux_nc = _open_aux(aux)
    try:
        return [_read_one(path, model, aux_nc, plans) for path in paths]
    finally:
        if aux_nc is not None:
            aux_nc.close()


def _open_aux(path: str | None) -> netCDF4.Dataset | None:
    if path is None:
        return None
    try:
        return netCDF4.Dataset(path)
    except OSError as err:
        log.warning("%s: cannot open auxiliary grid file: %s", path, err)
        return None


def _read_one(
    path: str, model: str, aux: netCDF4.Dataset | None, plans: dict[tuple, GridPlan]
) -> _Outcome:
    try:
        signature = file_signature(path)
        with netCDF4.Dataset(path) as nc:
            key = tuple(sorted((d, len(nc.dimensions[d])) for d in nc.dimensions if d != "time"))
            new_grid = key not in plans
            if new_grid:
                plans[key] = GridPlan(read_grid(model, nc, path, aux))
            result = extract_features(nc, path, model, plans[key])
            if new_grid:
                result.notes.extend(plans[key].notes)
            return _Outcome(path, signature, result)
    except InputFileError as err:
        return _Outcome(path, problem=err.problem)
    except OSError as err:
        return _Outcome(path, problem=f"not a readable netCDF file (truncated or corrupt?): {err}")
    except (IndexError, ValueError, KeyError, RuntimeError) as err:
        return _Outcome(path, problem=f"unexpected content: {type(err).__name__}: {err}")


class _Progress(Callback):
    """A tqdm bar over dask tasks (one task = one batch of files)."""

    def __init__(self, total: int) -> None:
        from tqdm.auto import tqdm

        super().__init__()
        self._bar = tqdm(total=total, desc="reading files", unit="batch")

    def _posttask(self, key, result, dsk, state, worker_id) -> None:
        self._bar.update(1)

    def _finish(self, dsk, state, errored) -> None:
        self._bar.close()


def _batches(files: Iterable[CesmFile]) -> list[tuple[list[str], str, str]]:
    """Group files by (case, model), chunked, keeping the case for the static lookup."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in files:
        groups[(f.case, f.model)].append(str(f.path))
    return [
        (paths[i : i + BATCH_FILES], model, case)
        for (case, model), paths in sorted(groups.items())
        for i in range(0, len(paths), BATCH_FILES)
    ]


def _names_a_case(path: str, cases: Collection[str]) -> bool:
    """Whether a problem file lies in a case's directory or carries its name."""
    where = Path(path)
    return any(c in where.parts or where.name.startswith(f"{c}.") for c in cases)


def build_features(
    roots: Iterable[str | Path],
    *,
    cache_dir: str | Path | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = False,
    cases: Collection[str] | None = None,
) -> FeatureSet:
    """Features of every member found under ``roots``.

    Parameters
    ----------
    roots
        Data roots following CESM_CONVENTIONS (short-term archive, time series or a run dir).
    cache_dir
        Where the per-file cache lives; None disables caching.
    scheduler
        dask scheduler: "processes" (default when several batches need reading),
        "threads" is not used because HDF5 is not thread-safe, "synchronous" for debugging,
        or the address of a ``dask.distributed`` scheduler already set as default.
    cases
        Only these members (case names): one ingestion task per member fills the cache.
    """
    files, problems = discover(roots)
    if cases is not None:
        files = [f for f in files if f.case in cases]
        problems = [p for p in problems if _names_a_case(p.path, cases)]
    usable, skipped = _monthly_feature_files(files)
    problems.extend(skipped)
    auxiliary = _auxiliary_grid_files(files)
    cache = FeatureCache(cache_dir, definitions_hash()) if cache_dir else None
    cached = cache.get_many(str(f.path) for f in usable) if cache else {}
    todo = [f for f in usable if str(f.path) not in cached]
    outcomes = _run(todo, auxiliary, scheduler, n_workers, progress)
    fresh = [o for o in outcomes if o.features is not None]
    if cache:
        cache.put_many((o.features, o.signature) for o in fresh)
        cache.close()
    problems.extend(InputFileError(o.path, o.problem) for o in outcomes if o.problem)
    by_path = {**cached, **{o.path: o.features for o in fresh}}
    with gc_paused():
        dataset, table_problems = assemble(usable, by_path)
    problems.extend(table_problems)
    for problem in problems:
        log.warning("%s", problem)
    dataset.attrs["problems"] = json.dumps([str(p) for p in problems])
    return FeatureSet(dataset, problems, files_read=len(todo), files_cached=len(cached))


def _monthly_feature_files(files: list[CesmFile]) -> tuple[list[CesmFile], list[InputFileError]]:
    """Monthly history/time-series files of models with features; others are reported once."""
    usable, skipped, seen = [], [], set()
    for f in files:
        if f.layout == "static" or f.model not in MODEL_COMPONENT:
            continue
        if f.is_monthly:
            usable.append(f)
        elif (f.case, f.model, f.stream) not in seen:
            seen.add((f.case, f.model, f.stream))
            skipped.append(
                InputFileError(
                    f.path.parent,
                    f"{f.case} {f.model}.{f.stream}: {f.frequency} output skipped "
                    "(monthly features are built from monthly streams)",
                )
            )
    return usable, skipped


def _auxiliary_grid_files(files: list[CesmFile]) -> dict[tuple[str, str], str]:
    """(case, model) -> file completing the grid: MOM6 static, CAM LANDFRAC time series."""
    aux = {}
    for f in files:
        mom6_static = f.model == "mom6" and f.layout == "static"
        cam_landfrac = f.model == "cam" and f.layout == "tseries" and f.variable == "LANDFRAC"
        if mom6_static or cam_landfrac:
            aux.setdefault((f.case, f.model), str(f.path))
    return aux


def _run(
    todo: list[CesmFile],
    auxiliary: dict[tuple[str, str], str],
    scheduler: str | None,
    n_workers: int | None,
    progress: bool,
) -> list[_Outcome]:
    if not todo:
        return []
    batches = _batches(todo)
    tasks = [
        dask.delayed(read_batch)(
            paths, model, auxiliary.get((case, model)), dask_key_name=f"read-{i}"
        )
        for i, (paths, model, case) in enumerate(batches)
    ]
    if scheduler is None:  # an active dask.distributed Client (e.g. dask-jobqueue) wins
        scheduler = dask.config.get("scheduler", None) or (
            "processes" if len(batches) > 1 and (n_workers or 2) > 1 else "synchronous"
        )
    bar = _Progress(len(tasks)) if progress else contextlib.nullcontext()
    # fork, not spawn: a spawned worker re-imports numpy, xarray and netCDF4 (seconds each)
    with (
        bar,
        dask.config.set(
            {"scheduler": scheduler, "num_workers": n_workers, "multiprocessing.context": "fork"}
        ),
    ):
        results = dask.compute(*tasks)
    return [outcome for batch in results for outcome in batch]


def assemble(
    files: Sequence[CesmFile], by_path: dict[str, FileFeatures]
) -> tuple[xr.Dataset, list[InputFileError]]:
    """Stack per-file features into ``(member, time)`` arrays with provenance attrs.

    Two files giving the same feature and month (two streams, a restart overlap) keep
    the first in path order and are reported; months missing inside a member's record
    are reported and left NaN.
    """
    problems: list[InputFileError] = []
    members = sorted({f.case for f in files})
    info = {f.case: f for f in files}
    where = {(f.case, f.component): f.path.parent for f in files}
    model_of = {(f.case, f.component): f.model for f in files}
    collected = _collect(files, by_path, problems)
    months_by_component = collected.months_by_component
    cells, sources, partial = _resolve_all(collected, model_of)
    problems.extend(
        InputFileError(
            where[(case, features()[name].var.component)],
            f"{case}: {name} has only part of a sum ({', '.join(sorted(parts))}); left as NaN",
        )
        for (case, name), parts in sorted(partial.items())
        if (case, name) not in cells
    )
    problems.extend(
        InputFileError(
            path,
            f"months {', '.join(sorted(months))} already read from {first} "
            "(two streams or a restart overlap); kept that file's values",
        )
        for (path, first), months in sorted(collected.duplicates.items())
    )
    problems.extend(_missing_months(months_by_component, where))
    problems.extend(_missing_variables(cells, months_by_component, where, sources))
    all_months = sorted(set().union(*months_by_component.values())) if months_by_component else []
    position = {m: i for i, m in enumerate(all_months)}
    data_vars = {}
    for name in sorted({n for (_, n) in cells}):
        array = np.full((len(members), len(all_months)), np.nan)
        for i, member in enumerate(members):
            row = cells.get((member, name), {})  # None (a missing value) becomes NaN
            array[i, [position[m] for m in row]] = np.array(list(row.values()), dtype=float)
        data_vars[name] = (("member", "time"), array, _attrs(name, sources[name]))
    coords = {
        "member": members,
        "time": [month_centre(m) for m in all_months],
        "ensemble": ("member", [info[m].ensemble for m in members]),
        "member_id": ("member", [info[m].member_id for m in members]),
    }
    dataset = xr.Dataset(data_vars, coords=coords)
    dataset.attrs.update(
        esmwatch_version=__version__, feature_definitions=definitions_hash(), Conventions="CF-1.8"
    )
    return dataset, problems


@dataclass
class _Collected:
    """Every file's values by member and feature, ready to resolve into table cells."""

    # (case, feature) -> expression -> month -> value, from the first file (in path order)
    contributions: dict[tuple[str, str], dict[str, dict[str, float | None]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    months_by_component: dict[tuple[str, str], set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )
    # (later file, first file) -> months the later file gave again
    duplicates: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))


def _collect(
    files: Sequence[CesmFile], by_path: dict[str, FileFeatures], problems: list[InputFileError]
) -> _Collected:
    """Every file's values, in path order; file notes become problems.

    This runs over every file of the ensemble on each rescan, cached or not, so a value
    costs one dict test and one store; which file came first is only worked out for the
    (rare) values given twice.
    """
    out = _Collected()
    ordered = [
        (f, result)
        for f in sorted(files, key=lambda f: str(f.path))
        if (result := by_path.get(str(f.path))) is not None
    ]
    clashes: list[tuple[str, str, str, str, str]] = []  # (path, case, feature, expression, month)
    for f, result in ordered:
        path, case, months = result.path, f.case, result.months
        problems.extend(InputFileError(path, note) for note in result.notes)
        out.months_by_component[(case, f.component)].update(months)
        for name, by_expression in result.values.items():
            by_source = out.contributions[(case, name)]
            for expression, values in by_expression.items():
                series = by_source.get(expression)
                if series is None:
                    series = by_source[expression] = {}
                for month, value in zip(months, values, strict=True):
                    if month in series:
                        clashes.append((path, case, name, expression, month))
                    else:
                        series[month] = value
    if clashes:
        first = _first_files(ordered, {clash[1:] for clash in clashes})
        for path, *key in clashes:
            if first[tuple(key)] != path:
                out.duplicates[(path, first[tuple(key)])].add(key[-1])
    return out


def _first_files(
    ordered: list[tuple[CesmFile, FileFeatures]], keys: set[tuple[str, str, str, str]]
) -> dict[tuple[str, str, str, str], str]:
    """The first file (in path order) giving each (case, feature, expression, month)."""
    first: dict[tuple[str, str, str, str], str] = {}
    for f, result in ordered:
        for name, by_expression in result.values.items():
            for expression in by_expression:
                for month in result.months:
                    key = (f.case, name, expression, month)
                    if key in keys:
                        first.setdefault(key, result.path)
    return first


def _resolve_all(
    collected: _Collected, model_of: dict[tuple[str, str], str]
) -> tuple[
    dict[tuple[str, str], dict[str, float | None]],
    dict[str, set[str]],
    dict[tuple[str, str], set[str]],
]:
    """One value per member, feature and month: the preferred source expression's."""
    cells: dict[tuple[str, str], dict[str, float | None]] = {}
    sources: dict[str, set[str]] = defaultdict(set)
    partial: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key, by_source in collected.contributions.items():
        variable = features()[key[1]].var
        model = model_of[(key[0], variable.component)]
        if len(by_source) == 1:  # the usual series: resolve once, not once per month
            ((only, series),) = by_source.items()
            chosen = resolve(variable, model, {only: None})
            if chosen is not None and chosen[0] == only:
                sources[key[1]].add(only)
                cells[key] = dict(series)
                continue
        for month in dict.fromkeys(m for series in by_source.values() for m in series):
            parts = {e: series[month] for e, series in by_source.items() if month in series}
            chosen = resolve(variable, model, parts)
            if chosen is None:
                partial[key].update(parts)
                continue
            sources[key[1]].add(chosen[0])
            cells.setdefault(key, {})[month] = chosen[1]
    return cells, sources, partial


def _attrs(name: str, used_sources: set[str]) -> dict[str, str]:
    feature = features()[name]
    return {
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
    if feature.var.vertical == "upper":
        top, bottom = registry().upper_ocean_m
        return f"area-weighted mean, thickness-weighted over {top:g}-{bottom:g} m"
    return "area-weighted mean over the region's domain cells"


def _missing_months(
    months_by_component: dict[tuple[str, str], set[str]], where: dict[tuple[str, str], Path]
) -> list[InputFileError]:
    problems = []
    for (case, component), months in sorted(months_by_component.items()):
        expected = _month_range(min(months), max(months))
        missing = [m for m in expected if m not in months]
        if missing:
            shown = ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else "")
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


def _month_range(first: str, last: str) -> list[str]:
    year, month = (int(x) for x in first.split("-"))
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out
