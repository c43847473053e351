"""Liquid freshwater transport into a region across its gates, from one history file.

Per boundary face of the region (:mod:`ensembles.sections`) and per level of the registry's
upper layer, the volume transport into the region ``Q`` (m3 s-1) carries
``Q (S_ref - S_face) / S_ref`` of fresh water, ``S_face`` the mean salinity of the face's
two cells and ``S_ref`` the registry's ``reference_salinity`` (the budget's). Summed over a
gate's faces and converted to mSv, that is the gate's feature.

``Q`` comes from what the file holds, found by its units: a mass transport (MOM6 ``umo``,
kg s-1, divided by the water density) or a volume transport taken as is, or a velocity
(MOM6 ``uo``, POP ``UVEL``) times the face length and the level's thickness. Where each
face's value sits depends on the staggering: MOM6 is a C grid (one value per face, the
symmetric layout has one more column or row than the tracer grid); POP is a B grid, with
velocities at the cells' north-east corners, so a face's normal velocity is the mean of its
two corners. Only the part of each level inside the upper layer counts (a fixed fraction on
z levels, from the layer thicknesses on MOM6's native layers).

Monthly means of velocity and salinity give the transport of the mean flow only: the eddy
(covariance) part, the monthly mean of u'S', is not in them and ends in the budget residual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import netCDF4
import numpy as np

from ensembles.errors import InputFileError, UnitError
from ensembles.grids import Grid
from ensembles.ncread import Decoding, decoding, read_block
from ensembles.registry import Variable, registry
from ensembles.sections import Faces, Section
from ensembles.units import conversion

M3S_PER_MSV = 1.0e3
THICKNESS_NAMES = ("h", "thkcello")
"""MOM6 layer thickness on native layers: what cuts them at the upper layer's bottom."""
C_GRID_MODELS = frozenset({"mom6"})  # others (POP) keep velocities at the cells' NE corners


@dataclass(frozen=True)
class Stencil:
    """Where each face's value is read in a block: taps (cells or corners) times weights."""

    j: np.ndarray  # (taps, faces), relative to the block
    i: np.ndarray
    weight: np.ndarray

    def sample(self, block: np.ndarray) -> np.ndarray:
        """(..., j, i) -> (..., faces): the weighted sum over the taps."""
        return np.einsum("...tf,tf->...f", block[..., self.j, self.i], self.weight)


@dataclass(frozen=True)
class FieldRead:
    """One file variable: the block to read (after time) and a stencil per face axis."""

    name: str
    decoding: Decoding
    start: tuple[int, ...]
    count: tuple[int, ...]
    scale: float  # to m3 s-1, m s-1, g/kg or m
    stencils: tuple[Stencil, Stencil]  # x faces, y faces

    def read(
        self, nc: netCDF4.Dataset, order: np.ndarray | None, missing_is_zero: bool = False
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Per axis (months, levels, faces) in target units, and which months have any value.

        Missing values stay NaN, or count as 0 with ``missing_is_zero`` (velocities at land
        corners and faces: no flow).
        """
        n_records = len(nc.dimensions["time"])
        block = read_block(
            nc.variables[self.name], self.decoding, (0, *self.start), (n_records, *self.count)
        )
        if order is not None:
            block = block[order]
        valid = np.isfinite(block).reshape(block.shape[0], -1).any(axis=1)
        if missing_is_zero:
            np.nan_to_num(block, copy=False, nan=0.0)
        block *= self.scale
        return [s.sample(block) for s in self.stencils], valid


@dataclass(frozen=True)
class TransportRead:
    """How to turn one file into gate transports with one recipe (``"umo+vmo"``).

    Attributes
    ----------
    velocity
        True when ``flow`` is a velocity (times ``length`` and thickness), False for a
        transport through the whole level face.
    levels
        Thickness (m) of each fixed level inside the upper layer, and its full thickness;
        None on native layers, cut with ``thickness``.
    """

    key: str
    flow: tuple[FieldRead, FieldRead]  # normal to the x faces, normal to the y faces
    salinity: FieldRead
    thickness: FieldRead | None
    velocity: bool
    length: tuple[np.ndarray, np.ndarray] | None  # m, per face
    levels: tuple[np.ndarray, np.ndarray] | None
    signs: tuple[np.ndarray, np.ndarray]
    gates: tuple[np.ndarray, np.ndarray]  # (faces, gates) one-hot
    names: tuple[str, ...]  # every file variable read

    def gate_msv(self, nc: netCDF4.Dataset, order: np.ndarray | None) -> np.ndarray:
        """(gates, months) freshwater transport into the region, mSv; NaN in months where
        a velocity field has no value at all."""
        s_ref = registry().reference_salinity
        salinity, _ = self.salinity.read(nc, order)
        thickness = self.thickness.read(nc, order)[0] if self.thickness else [None, None]
        total = 0.0
        valid = True
        for axis in (0, 1):
            flows, any_value = self.flow[axis].read(nc, order, missing_is_zero=True)
            upper = self._upper_flow(flows[axis], axis, thickness[axis])
            fresh = np.nan_to_num(upper * (s_ref - salinity[axis]) / s_ref).sum(axis=1)
            total = total + (fresh * self.signs[axis]) @ self.gates[axis]
            valid = valid & any_value
        return np.where(valid[:, None], total / M3S_PER_MSV, np.nan).T

    def _upper_flow(self, flow: np.ndarray, axis: int, h: np.ndarray | None) -> np.ndarray:
        """Volume transport (m3 s-1) of each face and level inside the upper layer."""
        if self.levels is not None:
            inside, full = self.levels[0][:, None], self.levels[1][:, None]
            thick = inside if self.velocity else inside / full
        else:
            top, bottom = registry().upper_ocean_m
            lower = np.cumsum(np.nan_to_num(h), axis=1)
            inside = np.clip(np.minimum(lower, bottom) - np.maximum(lower - h, top), 0.0, None)
            thick = inside if self.velocity else np.divide(
                inside, h, out=np.zeros_like(inside), where=h > 0
            )
        upper = flow * thick
        return upper * self.length[axis] if self.velocity else upper


class Lacking(Exception):
    """A recipe the file holds only part of: the message says what it lacks."""


def transport_reads(
    nc: netCDF4.Dataset, path: str, model: str, variable: Variable, section: Section, grid: Grid
) -> tuple[TransportRead | None, str | None]:
    """The first recipe of ``variable`` the file holds, or None and what it lacks.

    A file with none of the recipes' velocities gives (None, None): not every stream
    writes them. Raises :class:`InputFileError` for variables on unexpected dims.
    """
    lacks = []
    for recipe in variable.source_options(model):
        if not any(name in nc.variables for name in recipe):
            continue
        try:
            return _recipe(nc, path, model, variable, section, grid, recipe), None
        except Lacking as why:
            lacks.append(f"{'+'.join(recipe)} {why}")
    if not lacks:
        return None, None
    return None, (
        f"{variable.name} (freshwater transport across the {section.region} gates) not "
        f"computable: {'; '.join(lacks)}"
    )


def _recipe(
    nc: netCDF4.Dataset,
    path: str,
    model: str,
    variable: Variable,
    section: Section,
    grid: Grid,
    recipe: tuple[str, ...],
) -> TransportRead:
    missing = [name for name in recipe if name not in nc.variables]
    salt = next((s for s in variable.salinity[model] if s in nc.variables), None)
    if salt is None:
        missing.append(" or ".join(variable.salinity[model]))
    if missing:
        raise Lacking(f"lacks {', '.join(missing)}")
    x_var, y_var = (nc.variables[name] for name in recipe)
    kind = _flow_kind(x_var, path)
    level_dim = _level_dim(x_var, path)
    levels, thickness_name = _vertical(nc, grid, level_dim)
    n_levels = levels[0].size if levels is not None else len(nc.dimensions[level_dim])
    c_grid = model in C_GRID_MODELS
    flow = (
        _field(x_var, path, section, grid, n_levels, kind[1], "x", c_grid),
        _field(y_var, path, section, grid, n_levels, kind[1], "y", c_grid),
    )
    length = None
    if kind[0]:
        if grid.face_length_m is None:
            need = "dyCu and dxCv (in the file or its static file)" if c_grid else "HTE and HTN"
            raise Lacking(f"gives velocities: the face lengths {need} are missing")
        length = tuple(
            _lengths(grid.face_length_m[k], section.faces[k], grid, c_grid) for k in (0, 1)
        )
    tracer = _tracer_field(nc.variables[salt], path, section, grid, n_levels, level_dim, "g/kg")
    thick = None
    if thickness_name is not None:
        thick = _tracer_field(
            nc.variables[thickness_name], path, section, grid, n_levels, level_dim, "m"
        )
    n_gates = len(section.gates)
    return TransportRead(
        key="+".join(recipe),
        flow=flow,
        salinity=tracer,
        thickness=thick,
        velocity=kind[0],
        length=length,
        levels=levels,
        signs=(section.faces[0].sign[None, :], section.faces[1].sign[None, :]),
        gates=tuple(np.eye(n_gates)[f.gate] for f in section.faces),
        names=(*recipe, salt, *(() if thickness_name is None else (thickness_name,))),
    )


def _flow_kind(var: netCDF4.Variable, path: str) -> tuple[bool, float]:
    """(is a velocity, scale to m s-1 or m3 s-1), from the variable's units."""
    units = getattr(var, "units", None)
    if units is None:
        raise InputFileError(path, f"variable {var.name} has no units attribute")
    for target, velocity in (("m s-1", True), ("m3 s-1", False), ("kg s-1", False)):
        try:
            scale = conversion(units, target)[0]
        except UnitError:
            continue
        return velocity, scale / (registry().water_density if target == "kg s-1" else 1.0)
    raise InputFileError(
        path, f"variable {var.name} has units {units!r}: not a velocity, mass or volume transport"
    )


def _level_dim(var: netCDF4.Variable, path: str) -> str:
    if len(var.dimensions) != 4 or var.dimensions[0] != "time":
        raise InputFileError(
            path, f"variable {var.name} has dims {var.dimensions}, expected (time, level, y, x)"
        )
    return var.dimensions[1]


def _vertical(
    nc: netCDF4.Dataset, grid: Grid, level_dim: str
) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    """Fixed levels (thickness inside the layer, full thickness), or the native layers'
    thickness variable."""
    if grid.levels is not None and grid.levels.dim == level_dim:
        top, bottom = registry().upper_ocean_m
        inside = grid.levels.overlap(top, bottom)
        n = int(np.nonzero(inside > 0)[0].max()) + 1
        return (inside[:n], (grid.levels.bottom_m - grid.levels.top_m)[:n]), None
    name = next(
        (n for n in THICKNESS_NAMES if n in nc.variables
         and nc.variables[n].dimensions[1:2] == (level_dim,)),
        None,
    )
    if name is None:
        raise Lacking(
            f"is on layers {level_dim} without fixed depths: the layer thickness "
            f"({' or '.join(THICKNESS_NAMES)}) on {level_dim} is needed to cut at "
            f"{registry().upper_ocean_m[1]:g} m"
        )
    return None, name


def _box(stencils: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[slice, slice]:
    j = np.concatenate([s[0].ravel() for s in stencils])
    i = np.concatenate([s[1].ravel() for s in stencils])
    if j.size == 0:
        return slice(0, 1), slice(0, 1)
    return slice(int(j.min()), int(j.max()) + 1), slice(int(i.min()), int(i.max()) + 1)


def _make_field(
    var: netCDF4.Variable,
    n_levels: int,
    scale: float,
    taps: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...],
) -> FieldRead:
    """A field read over the bounding box of its taps (absolute indices) on both axes."""
    jbox, ibox = _box([(j, i) for j, i, _ in taps])
    stencils = tuple(
        Stencil(j - jbox.start, i - ibox.start, w) for j, i, w in taps
    )
    return FieldRead(
        name=var.name,
        decoding=decoding(var),
        start=(0, jbox.start, ibox.start),
        count=(n_levels, jbox.stop - jbox.start, ibox.stop - ibox.start),
        scale=scale,
        stencils=(stencils[0], stencils[1]),
    )


def _tracer_field(
    var: netCDF4.Variable,
    path: str,
    section: Section,
    grid: Grid,
    n_levels: int,
    level_dim: str,
    units: str,
) -> FieldRead:
    """A cell-centred field averaged over each face's two cells."""
    if var.dimensions[1:] != (level_dim, *grid.dims) or var.dimensions[0] != "time":
        raise InputFileError(
            path,
            f"variable {var.name} has dims {var.dimensions}, expected (time, {level_dim}, "
            f"{', '.join(grid.dims)})",
        )
    scale = conversion(getattr(var, "units", units), units)[0]
    taps = tuple(
        (np.stack([f.j, f.j2]), np.stack([f.i, f.i2]), np.full((2, f.j.size), 0.5))
        for f in section.faces
    )
    return _make_field(var, n_levels, scale, taps)


def _field(
    var: netCDF4.Variable,
    path: str,
    section: Section,
    grid: Grid,
    n_levels: int,
    scale: float,
    axis: str,
    c_grid: bool,
) -> FieldRead:
    """The flow normal to the ``axis`` faces, sampled at them (the other axis: no taps)."""
    shape = tuple(len(d) for d in (var.get_dims()[2], var.get_dims()[3]))
    if c_grid:
        offset = _c_offset(shape, grid.shape, axis, var.name, path)
        sample = _c_taps(section.faces[0 if axis == "x" else 1], axis, offset)
    else:
        if shape != grid.shape:
            raise InputFileError(path, f"variable {var.name} has shape {shape}, grid {grid.shape}")
        sample = _b_taps(section.faces[0 if axis == "x" else 1], axis, grid.shape, section.periodic)
    empty = (np.zeros((1, 0), int), np.zeros((1, 0), int), np.zeros((1, 0)))
    taps = (sample, empty) if axis == "x" else (empty, sample)
    return _make_field(var, n_levels, scale, taps)


def _c_offset(
    shape: tuple[int, int], tracer: tuple[int, ...], axis: str, name: str, path: str
) -> int:
    """1 in MOM6's symmetric layout (one more face than cells: face k+1 is cell k's east or
    north face), 0 in the non-symmetric one (face k is cell k's)."""
    along, other = (1, 0) if axis == "x" else (0, 1)
    if shape[other] == tracer[other] and shape[along] in (tracer[along], tracer[along] + 1):
        return shape[along] - tracer[along]
    raise InputFileError(
        path, f"variable {name} has shape {shape}: not on the faces of the {tracer} tracer grid"
    )


def _c_taps(faces: Faces, axis: str, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if axis == "x":
        return faces.j[None], faces.i[None] + offset, np.ones((1, faces.j.size))
    return faces.j[None] + offset, faces.i[None], np.ones((1, faces.j.size))


def _b_taps(
    faces: Faces, axis: str, shape: tuple[int, ...], periodic: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """POP: the east face of T(j, i) runs between the corners U(j, i) and U(j-1, i), the
    north face between U(j, i) and U(j, i-1); a corner off the grid counts as a wall (0)."""
    if axis == "x":
        j2, i2 = faces.j - 1, faces.i
        outside = j2 < 0
        j2 = np.maximum(j2, 0)
    else:
        j2, i2 = faces.j, faces.i - 1
        outside = (i2 < 0) & (not periodic)
        i2 = np.where(i2 < 0, i2 + shape[1] if periodic else 0, i2)
    weight = np.stack([np.full(faces.j.size, 0.5), np.where(outside, 0.0, 0.5)])
    return np.stack([faces.j, j2]), np.stack([faces.i, i2]), weight


def _lengths(lengths: np.ndarray, faces: Faces, grid: Grid, c_grid: bool) -> np.ndarray:
    """Length (m) of each face: on its own position (C grid) or the T cell's side (POP)."""
    if not c_grid:
        return lengths[faces.j, faces.i]
    axis = faces.axis
    offset = lengths.shape[1 if axis == "x" else 0] - grid.shape[1 if axis == "x" else 0]
    j, i, _ = _c_taps(faces, axis, offset)
    return lengths[j[0], i[0]]
