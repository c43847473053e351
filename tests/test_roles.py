"""Roles from physics, over the whole registry (issue 15).

A source of Lab Sea freshwater is a flux across the Lab Sea's surface or boundary; the
salinity, temperature, mixed layer or ice of any basin is the state of the ocean, and a
neighbour's state follows a Lab Sea freshening downstream. These tests hold every registry
entry to that, and check that the registry itself refuses a state variable as a driver.
"""

from __future__ import annotations

import pytest
import yaml

from ensembles.errors import ConfigurationError
from ensembles.registry import _parse, _registry_text, features

# where water enters the Lab Sea's upper ocean: its surface, its shelves and its gates
LAB_SEA_BOUNDARY = {
    "labsea",
    "labrador_shelf",
    "west_greenland_shelf",
    "davis_strait",
    "hudson_strait",
    "cape_farewell",
}
NEIGHBOURS = {"irminger", "spg", "baffin", "arctic", "nordic_seas", "denmark_strait", "hudson_bay"}


@pytest.mark.parametrize("name", sorted(features()))
def test_an_ocean_or_ice_driver_is_a_flux_into_the_lab_sea(name: str) -> None:
    feature = features()[name]
    if feature.role != "driver" or feature.var.component not in ("ocn", "ice"):
        return
    assert feature.units == "mSv", f"{name}: an ocean/ice driver must be a freshwater flux"
    assert feature.region in LAB_SEA_BOUNDARY, f"{name}: not where water enters the Lab Sea"


@pytest.mark.parametrize("name", sorted(features()))
def test_no_neighbouring_basin_state_is_a_driver(name: str) -> None:
    feature = features()[name]
    if feature.region in NEIGHBOURS:
        assert feature.role == "state", f"{name}: a neighbour's state follows the symptom"


@pytest.mark.parametrize(
    "stem", ["so_upper", "thetao_upper", "tos", "sos", "aice", "hi", "hmxl", "mld_003"]
)
def test_salinity_temperature_mixed_layer_and_ice_are_state_everywhere(stem: str) -> None:
    found = [
        f
        for f in features().values()
        if f.name.startswith(stem + "_") and f.variable == stem.removesuffix("_upper")
    ]
    assert found
    assert {f.role for f in found} == {"state"}, [f.name for f in found if f.role != "state"]


def test_the_registry_refuses_a_state_variable_as_a_driver() -> None:
    raw = yaml.safe_load(_registry_text())
    raw["features"]["so_upper"]["irminger"] = ["upstream_ocean_state", "driver"]
    with pytest.raises(ValueError, match="never a source"):
        _parse(raw)


def test_the_budget_gates_are_drivers_named_by_source() -> None:
    f = features()
    assert (f["fwt_davis_strait"].process, f["fwt_davis_strait"].role) == (
        "arctic_outflow",
        "driver",
    )
    assert f["fwt_hudson_strait"].process == "continental_runoff"
    assert f["dvidtd_labsea"].role == "driver"
    assert f["fsitherm_labsea"].role == f["fresh_labsea"].role == "driver"
    assert not any(p.startswith("large_scale") for p in {x.process for x in f.values()})


def test_an_unknown_role_is_a_configuration_error() -> None:
    raw = yaml.safe_load(_registry_text())
    raw["features"]["aice"]["labsea"] = ["sea_ice_local", "source"]
    with pytest.raises((ValueError, ConfigurationError)):
        _parse(raw)
