"""The boundary of a region on any ocean grid, cut into gates: where section transports are read.

Near the Lab Sea no ocean grid has lines of constant latitude (POP gx1v7 puts its pole in
Greenland, MOM6 tx2/3 is tripolar), so a section is not a row of cells. Instead the region is
a mask of tracer cells, and its boundary is every cell face between a cell of the mask and
an ocean cell outside it (logical i/j neighbours, so it is closed on any curvilinear grid).
Each face goes to the gate whose box holds the face's centre; the transport summed over a
gate's faces is then what crosses that gate whatever the grid's orientation.

Faces between ocean cells in no gate box (an open edge of the region the registry names
no gate for) are counted, not dropped, so the caller can say how much boundary is unassigned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensembles.regions import region_mask

AXES = ("x", "y")
"""x faces lie between cells (j, i) and (j, i+1); y faces between (j, i) and (j+1, i)."""


@dataclass(frozen=True)
class Faces:
    """The boundary faces of one orientation.

    Attributes
    ----------
    j, i
        The cell on the low side (west of an x face, south of a y face).
    j2, i2
        The cell on the high side (``i2`` wraps to 0 on a periodic grid).
    sign
        +1 where flow towards +i (+j) enters the region, -1 where it leaves it.
    gate
        Index into :attr:`Section.gates`.
    """

    axis: str
    j: np.ndarray
    i: np.ndarray
    j2: np.ndarray
    i2: np.ndarray
    sign: np.ndarray
    gate: np.ndarray


@dataclass(frozen=True)
class Section:
    """The gate faces of a region on one grid (faces in no gate are only counted)."""

    region: str
    gates: tuple[str, ...]
    faces: tuple[Faces, Faces]  # x faces, y faces
    periodic: bool
    unassigned: int  # boundary faces between ocean cells that lie in no gate box

    def empty_gates(self) -> list[str]:
        """Gates none of whose boxes holds a boundary face on this grid."""
        used = {int(g) for f in self.faces for g in f.gate}
        return [g for k, g in enumerate(self.gates) if k not in used]


def periodic_in_x(lat: np.ndarray, lon: np.ndarray) -> bool:
    """Whether the last column's cells neighbour the first's (a global ocean grid).

    True when, on every row, the step from the last column to the first is no longer than
    twice the largest step between neighbouring columns: a regional cut-out fails this.
    """
    if lat.shape[1] < 3:
        return False
    step = _angle(lat[:, 1:], lon[:, 1:], lat[:, :-1], lon[:, :-1])
    seam = _angle(lat[:, 0], lon[:, 0], lat[:, -1], lon[:, -1])
    ok = np.isfinite(seam) & np.isfinite(step).all(axis=1)
    return bool(ok.any() and np.all(seam[ok] <= 2.0 * np.nanmax(step[ok], axis=1)))


def _angle(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle angle (radians) between two sets of points."""
    return np.arccos(np.clip(np.sum(_unit(lat1, lon1) * _unit(lat2, lon2), axis=0), -1.0, 1.0))


def _unit(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _midpoint(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The point halfway between two cell centres on the sphere (safe across 0/360)."""
    x, y, z = _unit(lat1, lon1) + _unit(lat2, lon2)
    return np.rad2deg(np.arctan2(z, np.hypot(x, y))), np.rad2deg(np.arctan2(y, x))


def boundary_faces(
    region: str,
    gates: tuple[str, ...],
    lat: np.ndarray,
    lon: np.ndarray,
    ocean: np.ndarray,
    depth_m: np.ndarray | None = None,
) -> Section:
    """The faces of ``region``'s ocean cells with outside ocean cells, given to ``gates``.

    Parameters
    ----------
    lat, lon, ocean
        Cell centres and a boolean ocean mask, shape (ny, nx) of the tracer grid.
    """
    inside = region_mask(region, lat, lon, depth_m)[0] & ocean
    periodic = periodic_in_x(lat, lon)
    ny, nx = inside.shape
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    if periodic:
        high_x = (jj, (ii + 1) % nx)
        keep_x = np.ones_like(inside)
    else:
        high_x = (jj, np.minimum(ii + 1, nx - 1))
        keep_x = ii < nx - 1
    high_y = (np.minimum(jj + 1, ny - 1), ii)
    keep_y = jj < ny - 1
    faces, unassigned = [], 0
    for axis, high, keep in (("x", high_x, keep_x), ("y", high_y, keep_y)):
        crossing = keep & ocean & ocean[high] & (inside != inside[high])
        j, i = np.nonzero(crossing)
        j2, i2 = high[0][j, i], high[1][j, i]
        flat, flon = _midpoint(lat[j, i], lon[j, i], lat[j2, i2], lon[j2, i2])
        gate = np.full(j.size, -1)
        for k, name in reversed(list(enumerate(gates))):  # the first gate listed wins
            gate[region_mask(name, flat, flon)[0]] = k
        unassigned += int(np.sum(gate < 0))
        sign = np.where(inside[j2, i2], 1.0, -1.0)
        kept = gate >= 0
        faces.append(
            Faces(axis, j[kept], i[kept], j2[kept], i2[kept], sign[kept], gate[kept])
        )
    return Section(region, gates, (faces[0], faces[1]), periodic, unassigned)
