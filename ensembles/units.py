"""Unit normalisation, done once in the reader so the science sees canonical units only.

CESM writes the same quantity in many spellings ("gram/kilogram", "psu", "centimeters",
"cm/day", "kg/m^2/s", "mm/s").  Parsing uses the CF-aware pint registry from cf-xarray;
this module adds the few conventions pint cannot know: practical salinity is numerically
g/kg, "fraction" is 1, and water fluxes convert between mass and volume with the density
of fresh water.
"""

from __future__ import annotations

import logging
from functools import cache

import pint

# cf-xarray redefines a few pint units on import; pint logs each as a warning
logging.getLogger("pint.util").setLevel(logging.ERROR)
from cf_xarray.units import units as ureg  # noqa: E402

from ensembles.errors import UnitError  # noqa: E402

# spellings whose meaning pint gets wrong or does not know
_ALIASES = {
    "psu": "g/kg",
    "PSU": "g/kg",
    "ppt": "g/kg",
    "practical_salinity_unit": "g/kg",
    "1e-3": "g/kg",
    "0.001": "g/kg",
    "fraction": "1",
    "unitless": "1",
    "none": "1",
    "msu": "kg/kg",
}
_MASS_FLUX = ureg.Quantity(1, "kg m-2 s-1").dimensionality
_VOLUME_FLUX = ureg.Quantity(1, "m s-1").dimensionality


def _quantity(units: str) -> pint.Quantity:
    text = _ALIASES.get(units.strip(), units.strip())
    return ureg.Quantity(1.0, text)


@cache
def conversion(source: str, target: str, water_density: float = 1000.0) -> tuple[float, float]:
    """``(scale, offset)`` such that ``value_in_target = value * scale + offset``.

    Cached, because a scan converts the same few unit pairs millions of times.

    Raises
    ------
    UnitError
        When either unit string is unknown or the dimensions do not match (other than
        the mass <-> volume water-flux conversion).
    """
    try:
        src = _quantity(source)
        dst = _quantity(target)
    except (
        pint.errors.UndefinedUnitError,
        pint.errors.DefinitionSyntaxError,
        TypeError,
        AttributeError,
        AssertionError,
        ValueError,
    ) as err:
        raise UnitError(f"cannot parse units {source!r} or {target!r}: {err}") from None
    density = ureg.Quantity(water_density, "kg m-3")
    if src.dimensionality == _VOLUME_FLUX and dst.dimensionality == _MASS_FLUX:
        src = src * density
    elif src.dimensionality == _MASS_FLUX and dst.dimensionality == _VOLUME_FLUX:
        src = src / density
    if src.dimensionality != dst.dimensionality:
        raise UnitError(f"units {source!r} cannot be converted to {target!r}")
    zero = ureg.Quantity(0.0, src.units).to(dst.units).magnitude
    one = ureg.Quantity(1.0, src.units).to(dst.units).magnitude
    return float(src.magnitude * (one - zero)), float(zero)
