"""Monthly regional features of whole ensembles: discovery -> per-file extraction -> table.

Files are read in parallel with dask (one task per case and model, so each grid is read
once per task) and each file's result is cached; the assembled table is an xarray Dataset
with dims ``(member, time)`` whose variables carry DESIGN's attrs.  Problems with single
files never stop the scan: they are collected, each naming its file, and returned.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask
import netCDF4
import numpy as np
import xarray as xr
from dask.callbacks import Callback

from ensembles import __version__
from ensembles.cache import FeatureCache, file_signature
from ensembles.errors import InputFileError
from ensembles.extract import MODEL_COMPONENT, FileFeatures, GridPlan, extract_features
from ensembles.filenames import CesmFile, discover
from ensembles.grids import read_grid
from ensembles.registry import Feature, definitions_hash, features, registry
from ensembles.timeaxis import month_centre

log = logging.getLogger(__name__)

BATCH_FILES = 240  # files per dask task: large enough to amortise the grid read


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


def read_batch(paths: Sequence[str], model: str, static: str | None) -> list[_Outcome]:
    """Read files of one case and model; runs in a dask worker process.

    Every failure becomes an outcome naming the file, so one bad file never loses the
    rest of the batch.
    """
    plans: dict[tuple, GridPlan] = {}
    static_nc = _open_static(static)
    try:
        return [_read_one(path, model, static_nc, plans) for path in paths]
    finally:
        if static_nc is not None:
            static_nc.close()


def _open_static(path: str | None) -> netCDF4.Dataset | None:
    if path is None:
        return None
    try:
        return netCDF4.Dataset(path)
    except OSError as err:
        log.warning("%s: cannot open static grid file: %s", path, err)
        return None


def _read_one(path: str, model: str, static: netCDF4.Dataset | None,
              plans: dict[tuple, GridPlan]) -> _Outcome:
    try:
        signature = file_signature(path)
        with netCDF4.Dataset(path) as nc:
            key = tuple(sorted((d, len(nc.dimensions[d])) for d in nc.dimensions if d != "time"))
            if key not in plans:
                plans[key] = GridPlan(read_grid(model, nc, path, static))
            return _Outcome(path, signature, extract_features(nc, path, model, plans[key]))
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


def build_features(
    roots: Iterable[str | Path],
    *,
    cache_dir: str | Path | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = False,
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
    """
    files, problems = discover(roots)
    usable, skipped = _monthly_feature_files(files)
    problems.extend(skipped)
    statics = {f.case: str(f.path) for f in files if f.layout == "static" and f.model == "mom6"}
    cache = FeatureCache(cache_dir, definitions_hash()) if cache_dir else None
    cached = cache.get_many(str(f.path) for f in usable) if cache else {}
    todo = [f for f in usable if str(f.path) not in cached]
    outcomes = _run(todo, statics, scheduler, n_workers, progress)
    fresh = [o for o in outcomes if o.features is not None]
    if cache:
        cache.put_many((o.features, o.signature) for o in fresh)
        cache.close()
    problems.extend(InputFileError(o.path, o.problem) for o in outcomes if o.problem)
    by_path = {**cached, **{o.path: o.features for o in fresh}}
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
            skipped.append(InputFileError(
                f.path.parent,
                f"{f.case} {f.model}.{f.stream}: {f.frequency} output skipped "
                "(monthly features are built from monthly streams)",
            ))
    return usable, skipped


def _run(todo: list[CesmFile], statics: dict[str, str], scheduler: str | None,
         n_workers: int | None, progress: bool) -> list[_Outcome]:
    if not todo:
        return []
    batches = _batches(todo)
    tasks = [dask.delayed(read_batch)(paths, model, statics.get(case), dask_key_name=f"read-{i}")
             for i, (paths, model, case) in enumerate(batches)]
    if scheduler is None:
        scheduler = "processes" if len(batches) > 1 and (n_workers or 2) > 1 else "synchronous"
    callbacks = [_Progress(len(tasks))] if progress else []
    with dask.config.set(scheduler=scheduler, num_workers=n_workers):
        results = dask.compute(*tasks, callbacks=callbacks)
    return [outcome for batch in results for outcome in batch]


def assemble(files: Sequence[CesmFile], by_path: dict[str, FileFeatures]
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
    cells: dict[tuple[str, str], dict[str, float | None]] = defaultdict(dict)
    owner: dict[tuple[str, str, str], str] = {}
    sources: dict[str, set[str]] = defaultdict(set)
    months_by_component: dict[tuple[str, str], set[str]] = defaultdict(set)
    duplicates: dict[tuple[str, str], set[str]] = defaultdict(set)
    for f in sorted(files, key=lambda f: str(f.path)):
        result = by_path.get(str(f.path))
        if result is None:
            continue
        for note in result.notes:
            problems.append(InputFileError(result.path, note))
        months_by_component[(f.case, f.component)].update(result.months)
        for name, values in result.values.items():
            sources[name].add(result.sources[name])
            for month, value in zip(result.months, values, strict=True):
                first = owner.setdefault((f.case, name, month), result.path)
                if first != result.path:
                    duplicates[(result.path, first)].add(month)
                    continue
                cells[(f.case, name)][month] = value
    problems.extend(
        InputFileError(path, f"months {', '.join(sorted(months))} already read from {first} "
                       "(two streams or a restart overlap); kept that file's values")
        for (path, first), months in sorted(duplicates.items())
    )
    problems.extend(_missing_months(months_by_component, where))
    problems.extend(_missing_variables(cells, months_by_component, where, sources))
    all_months = sorted(set().union(*months_by_component.values())) if months_by_component else []
    position = {m: i for i, m in enumerate(all_months)}
    data_vars = {}
    for name in sorted({n for (_, n) in cells}):
        array = np.full((len(members), len(all_months)), np.nan)
        for i, member in enumerate(members):
            for month, value in cells.get((member, name), {}).items():
                if value is not None:
                    array[i, position[month]] = value
        data_vars[name] = (("member", "time"), array, _attrs(name, sources[name]))
    coords = {
        "member": members,
        "time": [month_centre(m) for m in all_months],
        "ensemble": ("member", [info[m].ensemble for m in members]),
        "member_id": ("member", [info[m].member_id for m in members]),
    }
    dataset = xr.Dataset(data_vars, coords=coords)
    dataset.attrs.update(esmwatch_version=__version__, feature_definitions=definitions_hash(),
                         Conventions="CF-1.8")
    return dataset, problems


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


def _missing_months(months_by_component: dict[tuple[str, str], set[str]],
                    where: dict[tuple[str, str], Path]) -> list[InputFileError]:
    problems = []
    for (case, component), months in sorted(months_by_component.items()):
        expected = _month_range(min(months), max(months))
        missing = [m for m in expected if m not in months]
        if missing:
            shown = ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else "")
            problems.append(InputFileError(
                where[(case, component)],
                f"{case} {component}: {len(missing)} month(s) missing ({shown}); left as NaN"))
    return problems


def _missing_variables(cells: dict[tuple[str, str], dict], months_by_component: dict,
                       where: dict[tuple[str, str], Path], sources: dict[str, set[str]]
                       ) -> list[InputFileError]:
    """Features that other members have but a member with files of that component lacks."""
    lacking: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for name in sorted({n for (_, n) in cells}):
        component = features()[name].var.component
        for case, comp in sorted(months_by_component):
            if comp == component and (case, name) not in cells:
                lacking[(case, component, " or ".join(sorted(sources[name])))].append(name)
    return [
        InputFileError(where[(case, component)],
                       f"{case}: no {source} in its {component} files; features "
                       f"{', '.join(names)} left as NaN")
        for (case, component, source), names in sorted(lacking.items())
    ]


def _month_range(first: str, last: str) -> list[str]:
    year, month = (int(x) for x in first.split("-"))
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out
