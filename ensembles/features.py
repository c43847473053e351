"""Monthly regional features of whole ensembles: discovery -> per-file extraction -> table.

Files are read in parallel with dask (one task per case and model, up to
:data:`BATCH_FILES` files, so each grid is read once per task) and each file's result is
cached; the assembled table is an xarray Dataset with dims ``(member, time)`` whose
variables carry the attrs of docs/design.md "Features".  Problems with single files never
stop the scan: they are collected, each naming its file, and returned.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask
import netCDF4
import numpy as np
import xarray as xr
from dask.callbacks import Callback

from ensembles.areas import BUDGET_REGION, OCEAN_AREA_ATTR, region_ocean_area
from ensembles.assemble import GRID_NOTE, assemble
from ensembles.blocks import BlockKey, FeatureBlock, GridSignature
from ensembles.cache import FeatureCache, file_signature, unchanged
from ensembles.coverage import CoverageRow, StreamRow, coverage, streams
from ensembles.errors import ConfigurationError, InputFileError
from ensembles.extract import (
    MODEL_COMPONENT,
    FileFeatures,
    GridPlan,
    extract_features,
)
from ensembles.filenames import CesmFile, discover
from ensembles.grids import CaseFiles, read_grid
from ensembles.listing import Listings
from ensembles.registry import definitions_hash, source_names
from ensembles.units import unit_registry

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
    files: list[CesmFile] = field(default_factory=list)  # every file discovered
    unread: list[InputFileError] = field(default_factory=list)  # not opened, by design
    with_features: set[str] = field(default_factory=set)  # paths that gave feature values

    def coverage(self) -> list[CoverageRow]:
        """Per component and process: which features were built from what, which not, why."""
        return coverage(self.dataset, self.files, self.problems, self.with_features)

    def streams(self) -> list[StreamRow]:
        """What became of every file, per case and stream."""
        return streams(self.files, self.with_features, [*self.problems, *self.unread])


@dataclass
class _Outcome:
    """What a worker sends back for one file: features or the reason it failed."""

    path: str
    signature: tuple[int, int] | None = None
    features: FileFeatures | None = None
    problem: str | None = None
    grid_files: tuple[str, ...] = ()  # other files of the case its grid was completed from


def read_batch(paths: Sequence[str], model: str, aux: Sequence[str]) -> list[_Outcome]:
    """Read files of one case and model; runs in a dask worker process.

    ``aux`` lists the case's other files that may complete the grid; each is opened at
    most once for the whole batch, and only if a fallback needs it. Every failure becomes
    an outcome naming the file, so one bad file never loses the rest of the batch.
    """
    plans: dict[tuple, GridPlan] = {}
    case = CaseFiles(aux)
    try:
        return [_read_one(path, model, case, plans) for path in paths]
    finally:
        case.close()


def _read_one(path: str, model: str, case: CaseFiles, plans: dict[tuple, GridPlan]) -> _Outcome:
    try:
        signature = file_signature(path)
        with netCDF4.Dataset(path) as nc:
            key = tuple(sorted((d, len(nc.dimensions[d])) for d in nc.dimensions if d != "time"))
            new_grid = key not in plans
            if new_grid:
                plans[key] = GridPlan(read_grid(model, nc, path, case))
            result = extract_features(nc, path, model, plans[key])
            if new_grid:
                result.notes.extend(f"{GRID_NOTE}{c}" for c in plans[key].grid.choices)
                result.notes.extend(plans[key].notes)
            return _Outcome(path, signature, result, grid_files=tuple(sorted(case.used)))
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
    verify: bool = False,
) -> FeatureSet:
    """Features of every member found under ``roots``.

    Parameters
    ----------
    roots
        Data roots following docs/cesm-conventions.md (short-term archive, time series or a
        run dir).
    cache_dir
        Where the feature cache lives; None disables caching.
    scheduler
        dask scheduler: "processes" (default when several batches need reading),
        "threads" is not used because HDF5 is not thread-safe, "synchronous" for debugging,
        or the address of a ``dask.distributed`` scheduler already set as default.
    cases
        Only these members (case names): one ingestion task per member fills the cache.
    verify
        ``stat`` every file, even in directories unchanged since the last scan (whose
        listings are otherwise reused: :mod:`ensembles.listing` says what that cannot see).
    """
    roots = list(roots)
    cache = FeatureCache(cache_dir, definitions_hash()) if cache_dir else None
    listings = Listings(cache.path, verify=verify) if cache else None
    try:
        files, problems = discover(roots, listings=listings)
    except InputFileError:  # no CESM output at all: nothing to cache
        if cache:
            cache.close()
            listings.close()
        raise
    if cases is not None:
        files = [f for f in files if f.case in cases]
        problems = [p for p in problems if _names_a_case(p.path, cases)]
    usable, skipped, unread = _monthly_feature_files(files)
    problems.extend(skipped)
    groups: dict[BlockKey, list[CesmFile]] = defaultdict(list)
    for f in usable:
        groups[BlockKey.of(f)].append(f)
    auxiliary = _auxiliary_grid_files(files)
    candidates = {  # the kinds of file a fallback could use: a new kind may change a grid
        key: tuple(kind for kind, _ in auxiliary.get((key.case, key.model), ())) for key in groups
    }
    kept, trimmed = _unchanged_blocks(cache, listings, groups, candidates) if cache else ({}, set())
    known = {path for block in kept.values() for path in block.paths}
    todo = [f for f in usable if str(f.path) not in known]
    with _frozen_heap():
        outcomes = _run(todo, auxiliary, scheduler, n_workers, progress)
    problems.extend(InputFileError(o.path, o.problem) for o in outcomes if o.problem)
    for outcome in outcomes if listings else ():
        if outcome.signature:
            listings.observed(outcome.path, outcome.signature)
    read = {str(f.path): f for f in todo}
    used: dict[BlockKey, set[str]] = defaultdict(set)
    for key, block in kept.items():
        used[key].update(_grid_files_used(block.grid))
    for o in outcomes:
        used[BlockKey.of(read[o.path])].update(o.grid_files)
    grids = {key: _grid_record(candidates[key], used[key]) for key in groups}
    fresh = blocks_of(
        ((read[o.path], o.features, o.signature) for o in outcomes if o.features), grids
    )
    blocks = dict(kept)
    for block in fresh:
        blocks[block.key] = kept[block.key].merged(block) if block.key in kept else block
    if cache:
        cache.store(blocks[key] for key in trimmed | {b.key for b in fresh} if key in blocks)
        cache.close()
        listings.close()
    dataset, table_problems = assemble(list(blocks.values()))
    dataset = dataset.assign_coords(root_index=("member", _root_index(dataset, files, roots)))
    problems.extend(table_problems)
    for problem in problems:
        log.warning("%s", problem)
    dataset.attrs["problems"] = json.dumps([str(p) for p in problems])
    with_features = {
        b.paths[i] for b in blocks.values() for c in b.columns.values() for i in np.unique(c.file)
    }
    area = region_ocean_area(usable, with_features, auxiliary, BUDGET_REGION)
    if area is not None:
        dataset.attrs[OCEAN_AREA_ATTR], dataset.attrs[f"{OCEAN_AREA_ATTR}_source"] = area
    return FeatureSet(
        dataset,
        problems,
        files_read=len(todo),
        files_cached=sum(len(b.paths) for b in kept.values()),
        files=files,
        unread=unread,
        with_features=with_features,
    )


def _root_index(dataset: xr.Dataset, files: list[CesmFile], roots: list[str | Path]
                ) -> list[int]:
    """Which of ``roots`` each member's files lie under (-1 when none is known).

    An index, not the path: the table may end up in results, which never show server paths.
    """
    # discovery walks each root as given, so a file's path starts with its root's: compare
    # absolute paths as strings (resolving would stat every file a warm rerun never touches)
    absolute = [Path(os.path.abspath(r)) for r in roots]
    where: dict[str, int] = {}
    for f in files:
        if f.case in where:
            continue
        path = Path(os.path.abspath(f.path))
        where[f.case] = next((i for i, r in enumerate(absolute) if path.is_relative_to(r)), -1)
    return [where.get(str(m), -1) for m in dataset.member.values]


def with_configurations(dataset: xr.Dataset, configurations: Sequence[str | None]
                        ) -> xr.Dataset:
    """Label each member with the configuration of the root it came from.

    ``configurations[i]`` belongs to root ``i`` (as given to :func:`build_features`); a None
    keeps the rule from case names (the ensemble part of the case, :func:`split_case`),
    which cannot tell numbered development runs of different configurations apart.

    Raises
    ------
    ConfigurationError
        When the number of configurations is not the number of roots.
    """
    if "root_index" not in dataset.coords:
        raise ConfigurationError("the feature table does not say which root each member came "
                                 "from; build it with build_features to set configurations")
    index = dataset["root_index"].values
    if len(index) and index.max() >= len(configurations):
        raise ConfigurationError(
            f"{len(configurations)} configuration(s) given for {int(index.max()) + 1} "
            "root(s): give one per root, in the order of the roots")
    fallback = dataset["ensemble"].values
    labels = [configurations[i] if i >= 0 and configurations[i] else str(fallback[k])
              for k, i in enumerate(index)]
    return dataset.assign_coords(configuration=("member", labels))


def _unchanged_blocks(
    cache: FeatureCache,
    listings: Listings,
    groups: dict[BlockKey, list[CesmFile]],
    candidates: dict[BlockKey, tuple[str, ...]],
) -> tuple[dict[BlockKey, FeatureBlock], set[BlockKey]]:
    """Cached blocks cut down to their unchanged files, and the keys of those that were cut.

    A block whose grid may now come out differently keeps nothing: every value in it was
    reduced over the old grid (see :func:`_grid_unchanged`).
    """
    kept, trimmed = {}, set()
    for key, block in cache.blocks(groups).items():
        if not _grid_unchanged(block.grid, candidates[key]):
            trimmed.add(key)
            continue
        keep = unchanged(block, {str(f.path) for f in groups[key]}, listings.signature)
        if len(keep) < len(block.paths):
            trimmed.add(key)
            block = block.subset(keep)
        if keep:
            kept[key] = block
    return kept, trimmed


def blocks_of(
    results: Iterable[tuple[CesmFile, FileFeatures, tuple[int, int]]],
    grids: Mapping[BlockKey, GridSignature | None] | None = None,
) -> list[FeatureBlock]:
    """Blocks of freshly read files, from each file, its features and the signature read at."""
    grouped: dict[BlockKey, list[tuple[FileFeatures, tuple[int, int]]]] = defaultdict(list)
    for f, result, signature in results:
        grouped[BlockKey.of(f)].append((result, signature))
    return [
        FeatureBlock.from_results(key, pairs, (grids or {}).get(key))
        for key, pairs in grouped.items()
    ]


def _grid_record(candidates: Sequence[str], used: Iterable[str]) -> GridSignature | None:
    """What a block's cached values depend on besides their own files, flattened for JSON:
    the kinds of file of the case a grid fallback could read (their number, then the
    kinds: ``cam:LANDFRAC``, ``mom6:static``...), then path, size and mtime of each file
    it did read."""
    if not candidates:
        return None
    record: list[str | int] = [len(candidates), *candidates]
    for path in sorted(used):
        try:
            record.extend((path, *file_signature(path)))
        except OSError:
            record.extend((path, -1, -1))  # gone: never equal to a file's signature
    return tuple(record)


def _grid_files_used(record: GridSignature | None) -> list[str]:
    if record is None:
        return []
    used = record[1 + int(record[0]) :]
    return [str(path) for path in used[::3]]


def _grid_unchanged(record: GridSignature | None, candidates: Sequence[str]) -> bool:
    """Whether a block's grid would come out the same: the same kinds of candidate file
    (a new ``LANDFRAC`` series or static file would change the chain) and every file it
    read unchanged. A changed file the block never read costs nothing."""
    if record is None:
        return not candidates
    n = int(record[0])
    if tuple(record[1 : 1 + n]) != tuple(candidates):
        return False
    used = record[1 + n :]
    for i in range(0, len(used), 3):
        try:
            if tuple(file_signature(str(used[i]))) != tuple(used[i + 1 : i + 3]):
                return False
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep the collector of forked dask workers off the parent's objects.

    A forked worker shares the parent's memory copy-on-write until a garbage collection
    walks (and so writes to) every object the parent holds: with a whole ensemble's file
    records in memory that doubled the cost of reading a few new files.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _monthly_feature_files(
    files: list[CesmFile],
) -> tuple[list[CesmFile], list[InputFileError], list[InputFileError]]:
    """Monthly files that can give features, the other kinds (problems, once per stream),
    and time series of variables no recipe uses (most of a post-processed archive: not
    opened at all, listed once per stream for the coverage report, not as problems).

    Grid files are read through the files they complete.
    """
    usable: list[CesmFile] = []
    unused: dict[tuple[str, str, str], list[CesmFile]] = defaultdict(list)
    skipped: dict[tuple[str, str, str], InputFileError] = {}
    for f in files:
        stream = (f.case, f.model, f.stream)
        if f.layout == "static":
            continue
        if f.model not in MODEL_COMPONENT:
            skipped.setdefault(
                stream,
                InputFileError(
                    f.path.parent,
                    f"{f.case} {f.model}.{f.stream}: no features are built from {f.model} output",
                ),
            )
        elif not f.is_monthly:
            skipped.setdefault(
                stream,
                InputFileError(
                    f.path.parent,
                    f"{f.case} {f.model}.{f.stream}: {f.frequency} output skipped "
                    "(monthly features are built from monthly streams)",
                ),
            )
        elif f.layout == "tseries" and f.variable not in source_names(f.model):
            if f.variable not in _GRID_TSERIES.get(f.model, ()):
                unused[stream].append(f)
        else:
            usable.append(f)
    unread = []
    for (case, model, stream), unread_files in unused.items():
        names = sorted({f.variable for f in unread_files if f.variable})
        shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        unread.append(
            InputFileError(
                unread_files[0].path.parent,
                f"{case} {model}.{stream}: {len(unread_files)} time-series file(s) "
                f"of variables no feature uses ({shown}) not read",
            )
        )
    return usable, list(skipped.values()), unread


_GRID_TSERIES = {
    "cam": ("LANDFRAC", "OCNFRAC", "ICEFRAC"),
    "pop": ("KMT", "REGION_MASK", "TAREA", "TLAT", "TLONG", "HT"),
}
"""Time-series variables that are grid information of a model, not features."""


def _auxiliary_grid_files(
    files: list[CesmFile],
) -> dict[tuple[str, str], tuple[tuple[str, str], ...]]:
    """(case, model) -> (kind, path) of the case's files a grid fallback may read, in order
    of preference.

    MOM6: its static file. CAM: its mask time series, then a land file (``landfrac`` on
    the same grid), then the ocean grid (nearest-neighbour wet mask). POP: ``h.once``,
    grid time series, then the first history and time-series files. Only the first file
    of each kind is listed, so a growing run does not invalidate the cache every night.
    """
    first: dict[tuple[str, str], str] = {}
    for f in files:  # sorted by path: the first of each kind is stable as a run grows
        if f.layout == "static":
            kind = "static"
        elif f.layout == "tseries" and f.variable in _GRID_TSERIES.get(f.model, ()):
            kind = f.variable
        else:
            kind = f.layout
        first.setdefault((f.case, f.model, kind), str(f.path))

    def of(case: str, model: str, *kinds: str) -> tuple[tuple[str, str], ...]:
        return tuple((f"{model}:{k}", p) for k in kinds if (p := first.get((case, model, k))))

    aux: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
    for case in {f.case for f in files}:
        ocean = of(case, "pop", "static", "history", "tseries") or of(case, "mom6", "static")
        aux[(case, "mom6")] = of(case, "mom6", "static")
        aux[(case, "pop")] = of(case, "pop", "static", *_GRID_TSERIES["pop"], "history", "tseries")
        aux[(case, "cam")] = (
            of(case, "cam", *_GRID_TSERIES["cam"]) + of(case, "clm2", "history", "tseries") + ocean
        )
    return {key: paths for key, paths in aux.items() if paths}


def _run(
    todo: list[CesmFile],
    auxiliary: dict[tuple[str, str], tuple[tuple[str, str], ...]],
    scheduler: str | None,
    n_workers: int | None,
    progress: bool,
) -> list[_Outcome]:
    if not todo:
        return []
    unit_registry()  # built once here, not once in every forked reader
    batches = _batches(todo)
    tasks = [
        dask.delayed(read_batch)(
            paths,
            model,
            [path for _, path in auxiliary.get((case, model), ())],
            dask_key_name=f"read-{i}",
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
