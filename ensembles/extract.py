"""Read one history or time-series file into monthly regional features.

This is the hot path of every scan: the file is opened once with netCDF4, and for each
registry variable only the bounding box of the regions that need it (and, for 3-D ocean
fields, only the levels of the upper layer) is read.  Selections are computed once per
grid and reused for every file on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

import netCDF4
import numpy as np

from ensembles.errors import EsmwatchError, InputFileError
from ensembles.grids import Grid
from ensembles.ncread import read_values
from ensembles.regions import get_region, region_mask
from ensembles.registry import Feature, Variable, features_for_component, registry
from ensembles.timeaxis import decode_months
from ensembles.units import conversion

log = logging.getLogger(__name__)

MODEL_COMPONENT = {"pop": "ocn", "mom6": "ocn", "cice": "ice", "cam": "atm", "clm2": "lnd"}
M3S_PER_MSV = 1.0e3


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


@dataclass
class FileFeatures:
    """Features of one file, JSON-ready (this is what the per-file cache stores).

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
        self.notes: list[str] = []  # regions this grid cannot serve, reported once per batch

    def selection(self, region: str) -> Selection | None:
        if region not in self._selections:
            self._selections[region] = self._select(region)
        return self._selections[region]

    def _select(self, region: str) -> Selection | None:
        grid = self.grid
        domain = get_region(region).domain
        weights = grid.domain_weights(domain)
        if weights is None:
            if grid.model == "cam":  # CAM without LANDFRAC: say so, the features are skipped
                self.notes.append(
                    f"no LANDFRAC for this CAM grid: {domain} region {region} "
                    "skipped (time series need the case's LANDFRAC file)"
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
            if self.grid.model not in feature.var.sources:
                continue
            sel = self.selection(feature.region)
            if sel is None:
                log.debug("region %s has no cells on this %s grid", feature.region, self.grid.model)
                continue
            by_variable.setdefault(feature.variable, []).append((feature, sel))
        return {name: self._plan(pairs) for name, pairs in by_variable.items()}

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
        return VariablePlan(
            variable=variable,
            features=tuple(f for f, _ in pairs),
            selections=tuple(s for _, s in pairs),
            box=box,
            weights=weights.reshape(len(pairs), -1).T.copy(),
        )


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
    time = decode_months(nc, path)
    result = FileFeatures(path=path, months=time.months, notes=list(time.notes))
    # restart overlaps are rare: only reorder the months when the file needs it
    order = None if np.array_equal(time.indices, np.arange(nc.variables["time"].shape[0])) else (
        time.indices)
    for vplan in plan.variables.values():
        for expression in _expressions(nc, vplan.variable, model):
            try:
                data = _read_converted(nc, path, expression, vplan, plan.grid, order)
            except EsmwatchError as err:
                raise InputFileError(path, f"variable {'+'.join(expression)}: {err}") from None
            reduced = _reduce(data, vplan)
            missing = np.isnan(reduced)
            key = "+".join(expression)
            for feature, values, gaps in zip(vplan.features, reduced.tolist(), missing,
                                             strict=True):
                if gaps.all():
                    result.notes.append(f"{feature.name}: all values missing (fill values or NaN)")
                result.values.setdefault(feature.name, {})[key] = (
                    [None if g else v for v, g in zip(values, gaps, strict=True)]
                    if gaps.any() else values)
    return result


def _expressions(nc: netCDF4.Dataset, variable: Variable, model: str) -> list[tuple[str, ...]]:
    """The first alternative the file holds completely, else every part it holds alone."""
    options = variable.source_options(model)
    for option in options:
        if all(name in nc.variables for name in option):
            return [option]
    parts = dict.fromkeys(name for option in options for name in option if name in nc.variables)
    return [(name,) for name in parts]


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


def _target_units(variable: Variable) -> str:
    """Integral features are summed as volume fluxes (m s-1) whatever the canonical units."""
    return "m s-1" if variable.reduction == "integral" else variable.units


def _read_converted(
    nc: netCDF4.Dataset,
    path: str,
    source: tuple[str, ...],
    vplan: VariablePlan,
    grid: Grid,
    order: np.ndarray | None,
) -> np.ndarray:
    """Read the plan's hyperslab of each source variable, convert, add them up."""
    total = None
    for name in source:
        var = nc.variables[name]
        values = read_values(var, _hyperslab(var, path, vplan, grid))
        if order is not None:
            values = values[order]
        units = getattr(var, "units", None)
        if units is None:
            raise InputFileError(path, f"variable {name} has no units attribute")
        scale, offset = conversion(units, _target_units(vplan.variable), registry().water_density)
        scale *= vplan.variable.sign
        if scale != 1.0 or offset != 0.0:
            values *= scale
            values += offset * vplan.variable.sign
        total = values if total is None else total + values
    return total


def _hyperslab(var: netCDF4.Variable, path: str, vplan: VariablePlan, grid: Grid) -> tuple:
    dims = var.dimensions
    ndim_h = len(grid.dims)
    if dims[-ndim_h:] != grid.dims or dims[0] != "time":
        raise InputFileError(
            path,
            f"variable {var.name} has dims {dims}, expected (time, ..., {', '.join(grid.dims)})",
        )
    middle = dims[1:-ndim_h]
    if vplan.variable.vertical == "upper":
        if grid.levels is None or middle != (grid.levels.dim,):
            raise InputFileError(
                path, f"3-D variable {var.name} has no usable vertical levels (dims {dims})"
            )
        return (slice(None), slice(0, _upper_levels(grid).size), *vplan.box)
    if middle:
        raise InputFileError(path, f"variable {var.name} has unexpected extra dims {middle}")
    return (slice(None), *vplan.box)


def _upper_levels(grid: Grid) -> np.ndarray:
    top, bottom = registry().upper_ocean_m
    thickness = grid.levels.overlap(top, bottom)
    return thickness[: int(np.nonzero(thickness > 0)[0].max()) + 1]


def _reduce(data: np.ndarray, vplan: VariablePlan) -> np.ndarray:
    """Every feature of a variable at once, shape (features, months).

    Area-weighted means (thickness-weighted too for layers) skip missing cells and
    renormalise; integrals sum the valid cells and are converted to mSv.  Both are one
    matrix product over the flattened box, which is what keeps a scan near raw I/O speed.
    """
    flat = data.reshape(data.shape[0], -1)
    invalid = np.isnan(flat)
    if not invalid.any():  # the common case: no land or fill cells in the box
        weighted = flat @ vplan.weights
        scale = M3S_PER_MSV if vplan.variable.reduction == "integral" else vplan.weights.sum(0)
        return (weighted / scale).T
    valid = ~invalid
    weighted = np.where(valid, flat, 0.0) @ vplan.weights  # (months, features)
    if vplan.variable.reduction == "integral":
        covered = valid @ (vplan.weights > 0) > 0
        return np.where(covered, weighted / M3S_PER_MSV, np.nan).T
    norm = valid @ vplan.weights
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, weighted / norm, np.nan).T
