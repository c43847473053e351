"""The data tables (registry, regions) and unit conversions behave on every convention."""

from __future__ import annotations

import numpy as np
import pytest

from ensembles.errors import ConfigurationError, UnitError
from ensembles.regions import region_mask, regions
from ensembles.registry import definitions_hash, features, processes, variables
from ensembles.units import conversion


@pytest.mark.parametrize(
    ("source", "target", "value", "expected"),
    [
        ("gram/kilogram", "g/kg", 34.8, 34.8),
        ("psu", "g/kg", 34.8, 34.8),  # practical salinity is numerically g/kg, not 1000x
        ("gram/gram", "g/kg", 0.0348, 34.8),
        ("centimeter", "m", 150000.0, 1500.0),
        ("cm", "m", 250.0, 2.5),
        ("%", "1", 85.0, 0.85),
        ("fraction", "1", 0.85, 0.85),
        ("degC", "K", 0.0, 273.15),
        ("K", "degC", 273.15, 0.0),
        ("cm/day", "m s-1", 8.64, 1e-6),
        ("mm/s", "kg m-2 s-1", 1e-5, 1e-5),  # 1 mm of water over 1 m2 is 1 kg
        ("m/s", "kg m-2 s-1", 1e-8, 1e-5),
        ("kg/m^2/s", "m s-1", 1e-5, 1e-8),
        ("watt/m^2", "W m-2", 100.0, 100.0),
        ("km^2", "m2", 1.0, 1e6),
        ("centimeter^2", "m2", 1e4, 1.0),
    ],
)
def test_conversions(source: str, target: str, value: float, expected: float) -> None:
    scale, offset = conversion(source, target)
    assert value * scale + offset == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("source", "target"), [("m", "W m-2"), ("bogus_units", "m")])
def test_bad_units_are_clear(source: str, target: str) -> None:
    with pytest.raises(UnitError, match=source):
        conversion(source, target)


@pytest.mark.parametrize("name", sorted(regions()))
def test_every_region_is_the_same_on_every_longitude_convention(name: str) -> None:
    lat, lon = np.meshgrid(np.arange(-89.5, 90, 1.0), np.arange(0.5, 360, 1.0), indexing="ij")
    depth = np.full(lat.shape, 3000.0)
    conventions = (
        lambda x: x,  # 0..360
        lambda x: (x + 180) % 360 - 180,  # -180..180
        lambda x: np.where(x > 60, x - 360.0, x),  # MOM6 tripolar geolon, -300..60
    )
    masks = [region_mask(name, lat, conv(lon), depth)[0] for conv in conventions]
    assert masks[0].any(), f"{name} selects nothing"
    assert all((m == masks[0]).all() for m in masks[1:])


def test_labsea_interior_uses_bathymetry_then_fallback() -> None:
    lat, lon = np.meshgrid(np.arange(53.5, 66, 1.0), np.arange(295.5, 316, 1.0), indexing="ij")
    depth = np.where(lon > 305, 3000.0, 500.0)
    deep, method = region_mask("labsea_interior", lat, lon, depth)
    assert method == "bathymetry" and deep.any() and not deep[lon <= 305].any()
    fallback, method = region_mask("labsea_interior", lat, lon, None)
    assert method == "fallback_boxes" and fallback.any() and not fallback.all()


def test_unknown_region_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown region 'atlantis'"):
        region_mask("atlantis", np.zeros(1), np.zeros(1))


@pytest.mark.parametrize("name", sorted(features()))
def test_every_feature_is_named_and_described(name: str) -> None:
    feature = features()[name]
    stem = feature.variable + ("_upper" if feature.var.vertical == "upper" else "")
    assert name == f"{stem}_{feature.region}"
    assert feature.process in processes()
    assert feature.role in ("state", "driver", "feedback")
    assert feature.units == ("mSv" if feature.var.reduction == "integral" else feature.var.units)
    conversion(
        feature.var.units, "m s-1" if feature.var.reduction == "integral" else feature.var.units
    )  # canonical units parse and integrals are water fluxes


def test_mixed_layer_diagnostics_keep_distinct_names() -> None:
    assert {"hmxl", "xmxl", "mld_003", "mlotst"} <= set(variables())
    assert variables()["hmxl"].sources == {"pop": ("HMXL",)}


def test_definitions_hash_is_stable() -> None:
    assert definitions_hash() == definitions_hash()
    assert len(definitions_hash()) == 16
