"""Reading netCDF variables as plain float arrays, fast.

Masked arrays double the cost of the small hyperslab reads a scan makes, so masking is done
here instead: fill values (``_FillValue``, ``missing_value`` and CESM's 1e36-class fills)
become NaN.  Packing (``scale_factor``/``add_offset``, ``_Unsigned``) is undone here too,
after fills are matched in the stored type, as CF defines them.

Everything a variable's attributes say about decoding is collected once into a
:class:`Decoding`, so a scan that reads thousands of files of the same layout looks the
attributes up once per layout (each lookup is a C call costing microseconds) and reads with
:func:`read_block`, which skips netCDF4's ``__getitem__`` indexing layer (its Python costs
~0.1 ms per call, several times the read of a small hyperslab itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import netCDF4
import numpy as np

FILL_MAGNITUDE = 1.0e30  # CESM fills with 9.96921e36 (netCDF default) or 1e36
FILL_ATTRS = ("_FillValue", "missing_value")
PACKING_ATTRS = ("scale_factor", "add_offset", "_Unsigned")
# every attribute that changes how a scan reads a variable (time attributes included)
LAYOUT_ATTRS = ("units", "calendar", "bounds", *FILL_ATTRS, *PACKING_ATTRS)
_LAYOUT_SET = frozenset(LAYOUT_ATTRS)


@dataclass(frozen=True)
class Decoding:
    """How one variable's stored values become float64 with NaN for missing values."""

    fills: tuple[np.generic, ...]  # matched exactly, in the stored type; 1e36-class left out
    scale: float = 1.0
    offset: float = 0.0
    unsigned: np.dtype | None = None  # view signed storage as this (``_Unsigned = "true"``)

    @property
    def packed(self) -> bool:
        return self.scale != 1.0 or self.offset != 0.0


def decoding(var: netCDF4.Variable) -> Decoding:
    """Read the decoding attributes of ``var`` (fills, packing, ``_Unsigned``) once."""
    names = set(var.ncattrs())
    stored = np.dtype(var.dtype)  # variable-length strings have the `str` type as dtype
    unsigned = None
    if (
        stored.kind == "i"
        and "_Unsigned" in names
        and str(var.getncattr("_Unsigned")) in ("true", "True")
    ):
        unsigned = np.dtype(f"{stored.byteorder}u{stored.itemsize}")
        stored = unsigned
    fills = dict.fromkeys(  # CESM repeats _FillValue as missing_value: compare once
        stored.type(value)
        for attr in FILL_ATTRS
        if attr in names
        for value in np.atleast_1d(var.getncattr(attr))
        if not abs(float(value)) > FILL_MAGNITUDE
    )
    return Decoding(
        fills=tuple(fills),
        scale=float(var.getncattr("scale_factor")) if "scale_factor" in names else 1.0,
        offset=float(var.getncattr("add_offset")) if "add_offset" in names else 0.0,
        unsigned=unsigned,
    )


def fingerprint(var: netCDF4.Variable) -> tuple:
    """Dims, stored type and :data:`LAYOUT_ATTRS` of ``var``: equal fingerprints are read
    the same way, so whatever was decided for one file holds for the other."""
    return (
        var.dimensions,
        var.dtype,
        tuple((a, _comparable(var.getncattr(a))) for a in var.ncattrs() if a in _LAYOUT_SET),
    )


def _comparable(value: object) -> object:
    """Attribute values as exact, NaN-safe values (arrays and NaN do not compare with ==)."""
    if isinstance(value, np.ndarray | np.generic):
        return value.dtype, value.shape, value.tobytes()
    return value  # text, or a list of strings


def decode(raw: np.ndarray, how: Decoding) -> np.ndarray:
    """Stored values -> float64, fills and out-of-range 1e36-class values -> NaN."""
    if how.unsigned is not None:
        raw = raw.view(how.unsigned)
    values = raw.astype(np.float64)
    for fill in how.fills:
        values[raw == fill] = np.nan  # e.g. -999
    if how.packed:
        values *= how.scale
        values += how.offset
    values[np.abs(values) > FILL_MAGNITUDE] = np.nan  # CESM's 1e36-class fills
    return values


def read_values(var: netCDF4.Variable, index: tuple | slice = slice(None)) -> np.ndarray:
    """``var[index]`` as float64 with every missing value set to NaN (any index, any time)."""
    var.set_auto_maskandscale(False)
    return decode(np.asarray(var[index]), decoding(var))


def read_block(
    var: netCDF4.Variable, how: Decoding, start: Sequence[int], count: Sequence[int]
) -> np.ndarray:
    """The contiguous block ``start:start + count`` of ``var``, decoded.

    Uses ``Variable._get``, the reader under netCDF4's ``__getitem__``, with the block given
    directly; the caller guarantees the block lies inside the variable (a layout checked
    once), so none of ``__getitem__``'s index normalisation is needed.
    """
    return decode(var._get(list(start), list(count), [1] * len(count)), how)
