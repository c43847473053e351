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
from typing import TYPE_CHECKING

from ensembles.errors import UnitError

if TYPE_CHECKING:
    import pint

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


@cache
def unit_registry() -> pint.UnitRegistry:
    """cf-xarray's CF-aware pint registry, built on first use.

    Building it takes ~0.3 s of CPU (and imports matplotlib through pint), which a rerun
    that reads no file, every value being cached, should not pay.  A scan that reads
    files calls this before its reader processes fork, so that they share one registry.
    """
    # cf-xarray redefines a few pint units on import; pint logs each as a warning
    logging.getLogger("pint.util").setLevel(logging.ERROR)
    from cf_xarray.units import units

    return units


def _quantity(units: str) -> pint.Quantity:
    text = _ALIASES.get(units.strip(), units.strip())
    return unit_registry().Quantity(1.0, text)


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
    import pint

    ureg = unit_registry()
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
    mass_flux = ureg.Quantity(1, "kg m-2 s-1").dimensionality
    volume_flux = ureg.Quantity(1, "m s-1").dimensionality
    if src.dimensionality == volume_flux and dst.dimensionality == mass_flux:
        src = src * density
    elif src.dimensionality == mass_flux and dst.dimensionality == volume_flux:
        src = src / density
    if src.dimensionality != dst.dimensionality:
        raise UnitError(f"units {source!r} cannot be converted to {target!r}")
    zero = ureg.Quantity(0.0, src.units).to(dst.units).magnitude
    one = ureg.Quantity(1.0, src.units).to(dst.units).magnitude
    return float(src.magnitude * (one - zero)), float(zero)
