"""Reading netCDF variables as plain float arrays, fast.

Masked arrays double the cost of the small hyperslab reads a scan makes, so auto-masking is
switched off and fill values (``_FillValue``, ``missing_value`` and CESM's 1e36-class
fills) become NaN here instead.  Packing (``scale_factor``/``add_offset``) still applies.
"""

from __future__ import annotations

import netCDF4
import numpy as np

FILL_MAGNITUDE = 1.0e30  # CESM fills with 9.96921e36 (netCDF default) or 1e36


def read_values(var: netCDF4.Variable, index: tuple | slice = slice(None)) -> np.ndarray:
    """``var[index]`` as float64 with every missing value set to NaN."""
    var.set_auto_mask(False)
    raw = var[index]
    values = raw.astype(float)
    for attr in ("_FillValue", "missing_value"):
        fill = getattr(var, attr, None)
        if fill is not None and not abs(float(np.asarray(fill).flat[0])) > FILL_MAGNITUDE:
            values[raw == np.asarray(fill, dtype=raw.dtype)] = np.nan  # e.g. -999
    values[np.abs(values) > FILL_MAGNITUDE] = np.nan  # CESM's 1e36-class fills
    return values
