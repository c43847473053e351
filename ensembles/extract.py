"""Read one history or time-series file into monthly regional features.

This is the hot path of every scan: the file is opened once with netCDF4, and for each
registry variable only the bounding box of the regions that need it (and, for 3-D ocean
fields, only the levels of the upper layer) is read.  Selections are computed once per
grid and reused for every file on it.

Everything decided from a file's metadata (which variables to read, where, how to decode
and convert them, how to decode time) is a :class:`FileLayout`, worked out for the first
file of a stream and reused for the next ones while their variable names and
:func:`~ensembles.ncread.fingerprint` (dims, types, units, fills, packing) are the same: a
scan's files differ only in their data, and the metadata lookups cost as much as the reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

import netCDF4
import numpy as np

from ensembles.errors import EsmwatchError, InputFileError
from ensembles.grids import Grid
from ensembles.ncread import Decoding, decoding, fingerprint, read_block
from ensembles.regions import get_region, region_mask
from ensembles.registry import (
    Feature,
    Variable,
    features_for_component,
    registry,
    source_names,
    split_term,
)
from ensembles.sections import Section, boundary_faces
from ensembles.timeaxis import TimeLayout, decode_months, time_layout
from ensembles.transport import TransportRead, transport_reads
from ensembles.units import conversion

log = logging.getLogger(__name__)

MODEL_COMPONENT = {"pop": "ocn", "mom6": "ocn", "cice": "ice", "cam": "atm", "clm2": "lnd"}
M3S_PER_MSV = 1.0e3
NATIVE_LAYERS = "zl"  # MOM6 layer dimension without fixed depths


@dataclass(frozen=True)
class Selection:
    """Cells of one region on one grid: a bounding box and weights inside it."""

    region: str
    box: tuple[slice, ...]
    weights: np.ndarray  # area x domain fraction, 0 outside the region
    method: str


@dataclass(frozen=True)
class VariablePlan:
    """Everything needed to turn one registry variable of a file into its features."""

    variable: Variable
    features: tuple[Feature, ...]
    selections: tuple[Selection, ...]
    box: tuple[slice, ...]  # union of the selections' boxes: the only hyperslab read
    weights: np.ndarray  # (cells in the box [x levels], features): reductions as one matmul
    norm: np.ndarray  # weights.sum(0): the denominators of means without missing cells
    support: np.ndarray  # (weights > 0) as floats: which cells count for an integral


@dataclass(frozen=True)
class SourceRead:
    """One source variable of an expression: the block to read and how to convert it."""

    name: str
    start: tuple[int, ...]  # per dimension after time
    count: tuple[int, ...]
    decoding: Decoding
    scale: float  # unit conversion, times the variable's sign
    offset: float


@dataclass(frozen=True)
class ExpressionRead:
    """A source expression (``"SALT"``, ``"PRECC+PRECL"``): sources added up."""

    key: str
    sources: tuple[SourceRead, ...]


@dataclass(frozen=True)
class SectionPlan:
    """A transport variable's gate features on one grid and the faces they sum over."""

    variable: Variable
    features: tuple[Feature, ...]  # one per gate of ``section``, in its order
    section: Section
    notes: tuple[str, ...]  # empty gates, unassigned faces: said when a file has the flow
    filled: tuple[int, ...]  # gates with faces on this grid: the features a file gives


@dataclass(frozen=True)
class FileLayout:
    """What a file's metadata decides, valid for every file with the same fingerprints."""

    time: TimeLayout
    reads: tuple[tuple[VariablePlan, tuple[ExpressionRead, ...]], ...]
    fingerprints: tuple[tuple[str, tuple], ...]  # (variable, fingerprint) of all it used
    transports: tuple[tuple[SectionPlan, TransportRead], ...] = ()
    notes: tuple[str, ...] = ()  # recipes the file holds part of: reported once per plan

    def matches(self, nc: netCDF4.Dataset) -> bool:
        """Whether this layout holds for ``nc`` (whose variable names are already known
        to be the same)."""
        variables = nc.variables
        return all(fingerprint(variables[name]) == fp for name, fp in self.fingerprints)


@dataclass
class FileFeatures:
    """Features of one file, as a worker returns them (the cache keeps them as columnar
    blocks of many files, :mod:`ensembles.blocks`).

    ``values[feature][expression]`` holds the reduction of one source expression: a
    complete alternative of the registry (``"SALT"``, ``"PRECC+PRECL"``) or, when a file
    holds only part of a sum (single-variable time series), that part alone.  Parts from
    different files are added up when the table is assembled.
    """

    path: str
    months: list[str]
    values: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class GridPlan:
    """Region selections and variable plans for one grid, built lazily and kept."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self._selections: dict[str, Selection | None] = {}
        self._layouts: dict[tuple[str, ...], FileLayout] = {}  # by the file's variable names
        self.notes: list[str] = []  # regions this grid cannot serve, reported once per batch
        self._reported: set[str] = set()

    def layout(self, nc: netCDF4.Dataset, path: str, model: str) -> FileLayout:
        """The layout of an open file: the last one built for files with the same variable
        names when every fingerprint still matches, else a new one.

        Raises
        ------
        InputFileError
            See :func:`extract_features`; a failed layout is never kept.
        """
        names = tuple(nc.variables)
        layout = self._layouts.get(names)
        if layout is None or not layout.matches(nc):
            log.debug("%s: new file layout for %s", path, self.grid.model)
            layout = self._layouts[names] = _build_layout(nc, path, model, self)
            if not layout.transports and not any(expressions for _, expressions in layout.reads):
                self.notes.append(_nothing_to_read(self))
        return layout

    def once(self, notes: tuple[str, ...]) -> list[str]:
        """The notes not yet reported for this grid (a layout's notes hold for every file)."""
        fresh = [n for n in notes if n not in self._reported]
        self._reported.update(fresh)
        return fresh

    def selection(self, region: str) -> Selection | None:
        if region not in self._selections:
            self._selections[region] = self._select(region)
        return self._selections[region]

    def _select(self, region: str) -> Selection | None:
        grid = self.grid
        domain = get_region(region).domain
        weights = grid.domain_weights(domain)
        if weights is None:
            self.notes.append(
                f"no {domain} mask on this {grid.model} grid: region {region} skipped"
            )
            return None
        mask, method = region_mask(region, grid.lat, grid.lon, grid.depth_m)
        weights = np.where(mask, np.nan_to_num(weights), 0.0)
        if not np.any(weights > 0):
            self.notes.append(f"region {region} has no {domain} cells on this {grid.model} grid")
            return None
        box = tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in np.nonzero(weights > 0))
        return Selection(region, box, weights[box], method)

    @cached_property
    def variables(self) -> dict[str, VariablePlan]:
        component = MODEL_COMPONENT[self.grid.model]
        by_variable: dict[str, list[tuple[Feature, Selection]]] = {}
        for feature in features_for_component(component):
            if self.grid.model not in feature.var.sources or feature.var.reduction == "transport":
                continue
            sel = self.selection(feature.region)
            if sel is None:
                log.debug("region %s has no cells on this %s grid", feature.region, self.grid.model)
                continue
            by_variable.setdefault(feature.variable, []).append((feature, sel))
        return {name: self._plan(pairs) for name, pairs in by_variable.items()}

    @cached_property
    def sections(self) -> list[SectionPlan]:
        """Per transport variable, its gates' boundary faces (gates with none are noted)."""
        grid, plans = self.grid, []
        component = MODEL_COMPONENT[grid.model]
        by_variable: dict[str, list[Feature]] = {}
        for feature in features_for_component(component):
            if grid.model in feature.var.sources and feature.var.reduction == "transport":
                by_variable.setdefault(feature.variable, []).append(feature)
        ocean = (
            np.isfinite(grid.lat) if grid.ocean_fraction is None
            else np.nan_to_num(grid.ocean_fraction) > 0
        )
        for gate_features in by_variable.values():
            variable = gate_features[0].var
            section = boundary_faces(
                variable.into, tuple(f.region for f in gate_features), grid.lat, grid.lon,
                ocean, grid.depth_m,
            )
            empty = section.empty_gates()
            notes = [f"region {gate} has no face of the {section.region} boundary on this "
                     f"{grid.model} grid" for gate in empty]
            if section.unassigned:
                notes.append(f"{section.unassigned} face(s) of the {section.region} boundary "
                             f"lie in no gate box of {variable.name}: their transport is in no "
                             "feature")
                log.info("%s grid: %s", grid.model, notes[-1])
            filled = tuple(k for k, gate in enumerate(section.gates) if gate not in empty)
            plans.append(
                SectionPlan(variable, tuple(gate_features), section, tuple(notes), filled)
            )
        return plans

    def _plan(self, pairs: list[tuple[Feature, Selection]]) -> VariablePlan:
        """Stack each feature's weights inside the union box (and over the upper levels)."""
        box = _union_box([s.box for _, s in pairs])
        shape = tuple(b.stop - b.start for b in box)
        weights = np.zeros((len(pairs), *shape))
        for k, (_, sel) in enumerate(pairs):
            weights[(k, *_shift(sel.box, box))] = sel.weights
        variable = pairs[0][0].var
        if variable.vertical == "upper":
            thickness = _upper_levels(self.grid)
            weights = weights[:, None] * thickness[None, :, *([None] * len(shape))]
        weights = weights.reshape(len(pairs), -1).T.copy()
        return VariablePlan(
            variable=variable,
            features=tuple(f for f, _ in pairs),
            selections=tuple(s for _, s in pairs),
            box=box,
            weights=weights,
            norm=weights.sum(0),
            support=(weights > 0).astype(float),
        )


def _nothing_to_read(plan: GridPlan) -> str:
    """Why a file gives no features: the variables looked for (or that no region fits)."""
    model = plan.grid.model
    wanted = sorted(source_names(model))
    if not plan.variables:
        return f"no feature region has cells on this {model} grid; nothing read"
    shown = ", ".join(wanted[:12]) + (" ..." if len(wanted) > 12 else "")
    return f"no variable any feature uses (looked for {shown})"


def _union_box(boxes: list[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(
        slice(min(b[d].start for b in boxes), max(b[d].stop for b in boxes))
        for d in range(len(boxes[0]))
    )


def _shift(box: tuple[slice, ...], outer: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer, strict=True)
    )


def extract_features(nc: netCDF4.Dataset, path: str, model: str, plan: GridPlan) -> FileFeatures:
    """Monthly regional features of one open file.

    Raises
    ------
    InputFileError
        Undecodable time, variables on an unexpected grid, unknown units.
    """
    layout = plan.layout(nc, path, model)
    time = decode_months(nc, path, layout.time)
    result = FileFeatures(path=path, months=time.months, notes=list(time.notes))
    # restart overlaps are rare: only reorder the months when the file needs it
    n_times = len(nc.dimensions[layout.time.dims[0]])
    order = None if np.array_equal(time.indices, np.arange(n_times)) else time.indices
    for vplan, expressions in layout.reads:
        for expression in expressions:
            data = _read_expression(nc, expression, order)
            _store(result, vplan.features, expression.key, _reduce(data, vplan))
    for splan, transport in layout.transports:
        gates = transport.gate_msv(nc, order)[list(splan.filled)]
        _store(result, tuple(splan.features[k] for k in splan.filled), transport.key, gates)
    result.notes.extend(plan.once(layout.notes))
    return result


def _store(
    result: FileFeatures, features: tuple[Feature, ...], key: str, reduced: np.ndarray
) -> None:
    """Add one expression's reductions (features, months) to the result, NaN as None."""
    missing = np.isnan(reduced)
    if not missing.any():
        for feature, values in zip(features, reduced.tolist(), strict=True):
            result.values.setdefault(feature.name, {})[key] = values
        return
    for feature, values, gaps in zip(features, reduced.tolist(), missing, strict=True):
        if gaps.all():
            result.notes.append(f"{feature.name}: all values missing (fill values or NaN)")
        result.values.setdefault(feature.name, {})[key] = (
            [None if g else v for v, g in zip(values, gaps, strict=True)] if gaps.any() else values
        )


def _build_layout(nc: netCDF4.Dataset, path: str, model: str, plan: GridPlan) -> FileLayout:
    """Check a file's metadata against the plan and decide how to read each variable."""
    time = time_layout(nc, path)
    transports, notes = [], []
    try:
        reads = tuple(
            (vplan, _variable_reads(nc, path, model, vplan, plan.grid, notes))
            for vplan in plan.variables.values()
        )
        for splan in plan.sections:
            transport, lacks = transport_reads(
                nc, path, model, splan.variable, splan.section, plan.grid
            )
            if transport is not None:
                transports.append((splan, transport))
            if lacks is not None:
                notes.append(lacks)
            if transport is not None or lacks is not None:
                notes.extend(splan.notes)
    except InputFileError:
        decode_months(nc, path, time)  # time is read first: its problems are reported first
        raise
    used = time.variables + tuple(
        source.name for _, expressions in reads for e in expressions for source in e.sources
    ) + tuple(name for _, transport in transports for name in transport.names)
    return FileLayout(
        time=time,
        reads=reads,
        fingerprints=tuple((name, fingerprint(nc.variables[name])) for name in dict.fromkeys(used)),
        transports=tuple(transports),
        notes=tuple(notes),
    )


class _NativeLayers(Exception):
    """A layer variable on layers without fixed depths (MOM6 native ``zl``)."""


def _variable_reads(
    nc: netCDF4.Dataset, path: str, model: str, vplan: VariablePlan, grid: Grid, notes: list[str]
) -> tuple[ExpressionRead, ...]:
    """How to read each source expression of one registry variable that the file holds.

    A layer mean on native layers is skipped with a note (the file's other variables, gate
    transports among them, are still read): its weights would change with every month.
    """
    reads = []
    for expression in _expressions(nc, vplan.variable, model):
        try:
            sources = tuple(_source_read(nc, path, name, vplan, grid) for name in expression)
        except _NativeLayers as why:
            notes.append(f"{vplan.variable.name}: {why}")
            continue
        except EsmwatchError as err:
            raise InputFileError(path, f"variable {'+'.join(expression)}: {err}") from None
        reads.append(ExpressionRead("+".join(expression), sources))
    return tuple(reads)


def _expressions(nc: netCDF4.Dataset, variable: Variable, model: str) -> list[tuple[str, ...]]:
    """The first alternative the file holds completely, else every part it holds alone."""
    options = variable.source_options(model)
    for option in options:
        if all(split_term(term)[0] in nc.variables for term in option):
            return [option]
    parts = dict.fromkeys(
        term for option in options for term in option if split_term(term)[0] in nc.variables
    )
    return [(term,) for term in parts]


def resolve(
    variable: Variable, model: str, contributions: dict[str, float | None]
) -> tuple[str, float | None] | None:
    """Pick the preferred alternative from one month's contributions (summing parts)."""
    for option in variable.source_options(model):
        key = "+".join(option)
        if key in contributions:
            return key, contributions[key]
        if len(option) > 1 and all(part in contributions for part in option):
            parts = [contributions[part] for part in option]
            return key, None if any(v is None for v in parts) else float(sum(parts))
    return None


def recipe_gaps(variable: Variable, model: str, present: set[str]) -> str:
    """Which parts of a recipe were found and which were not, for the report.

    ``"prect: PRECC present, PRECL missing"``: the recipe shown is the first one the
    present parts belong to, so the user sees exactly which variable to add to the output.
    """
    for option in variable.source_options(model):
        if present & set(option):
            found = [t for t in option if t in present]
            lacking = [t for t in option if t not in present]
            return f"{variable.name}: {', '.join(found)} present, {', '.join(lacking)} missing"
    return f"{variable.name}: only {', '.join(sorted(present))}"


def _target_units(variable: Variable) -> str:
    """Integral features are summed as volume fluxes (m s-1) whatever the canonical units."""
    return "m s-1" if variable.reduction == "integral" else variable.units


def _source_read(
    nc: netCDF4.Dataset, path: str, term: str, vplan: VariablePlan, grid: Grid
) -> SourceRead:
    """Where to read one recipe term and how to bring it to the target units."""
    name, divisor = split_term(term)
    var = nc.variables[name]
    box = _hyperslab(var, path, vplan, grid)
    units = getattr(var, "units", None)
    if units is None:
        raise InputFileError(path, f"variable {name} has no units attribute")
    by = 1.0
    if divisor is not None:  # e.g. LHFLX / L_v: W m-2 / (J kg-1) -> kg m-2 s-1
        constant = registry().constants[divisor]
        units, by = f"({units}) / ({constant.units})", constant.value
    scale, offset = conversion(units, _target_units(vplan.variable), registry().water_density)
    scale, offset = scale / by, offset / by
    sign = vplan.variable.sign
    return SourceRead(
        name=name,
        start=tuple(b.start for b in box),
        count=tuple(b.stop - b.start for b in box),
        decoding=decoding(var),
        scale=scale * sign,
        offset=offset * sign,
    )


def _read_expression(
    nc: netCDF4.Dataset, expression: ExpressionRead, order: np.ndarray | None
) -> np.ndarray:
    """Read, convert and add up the sources of one expression, months in order."""
    n_records = len(nc.dimensions["time"])  # every source is checked to be on `time`
    total = None
    for source in expression.sources:
        values = read_block(
            nc.variables[source.name],
            source.decoding,
            (0, *source.start),
            (n_records, *source.count),
        )
        if order is not None:
            values = values[order]
        if source.scale != 1.0 or source.offset != 0.0:
            values *= source.scale
            values += source.offset
        if total is None:
            total = values
        else:
            total += values
    return total


def _hyperslab(
    var: netCDF4.Variable, path: str, vplan: VariablePlan, grid: Grid
) -> tuple[slice, ...]:
    """The block of ``var`` after its time dimension that the plan reduces."""
    dims = var.dimensions
    ndim_h = len(grid.dims)
    if dims[-ndim_h:] != grid.dims or dims[0] != "time":
        raise InputFileError(
            path,
            f"variable {var.name} has dims {dims}, expected (time, ..., {', '.join(grid.dims)})",
        )
    middle = dims[1:-ndim_h]
    if vplan.variable.vertical == "upper":
        if middle == (NATIVE_LAYERS,) and grid.model == "mom6":
            raise _NativeLayers(
                f"{var.name} is on MOM6 native layers {NATIVE_LAYERS}: its "
                f"{registry().upper_ocean_m[1]:g} m mean needs z-space output (z_l, z_i); not read"
            )
        if grid.levels is None or middle != (grid.levels.dim,):
            raise InputFileError(
                path, f"3-D variable {var.name} has no usable vertical levels (dims {dims})"
            )
        return (slice(0, _upper_levels(grid).size), *vplan.box)
    if middle:
        raise InputFileError(path, f"variable {var.name} has unexpected extra dims {middle}")
    return vplan.box


def _upper_levels(grid: Grid) -> np.ndarray:
    top, bottom = registry().upper_ocean_m
    thickness = grid.levels.overlap(top, bottom)
    return thickness[: int(np.nonzero(thickness > 0)[0].max()) + 1]


def _reduce(data: np.ndarray, vplan: VariablePlan) -> np.ndarray:
    """Every feature of a variable at once, shape (features, months).

    Area-weighted means (thickness-weighted too for layers) skip missing cells and
    renormalise; integrals sum the valid cells and are converted to mSv.  Both are one
    matrix product over the flattened box, which is what keeps a scan near raw I/O speed.
    ``data`` is the reader's own array: missing cells are zeroed in place.
    """
    flat = data.reshape(data.shape[0], -1)
    invalid = np.isnan(flat)
    if not invalid.any():  # the common case: no land or fill cells in the box
        weighted = flat @ vplan.weights
        scale = M3S_PER_MSV if vplan.variable.reduction == "integral" else vplan.norm
        return (weighted / scale).T
    flat[invalid] = 0.0
    weighted = flat @ vplan.weights  # (months, features)
    valid = ~invalid
    if vplan.variable.reduction == "integral":
        covered = valid @ vplan.support > 0
        return np.where(covered, weighted / M3S_PER_MSV, np.nan).T
    norm = valid @ vplan.weights
    means = np.full_like(weighted, np.nan)
    return np.divide(weighted, norm, out=means, where=norm > 0).T
