"""The variable -> feature -> process registry, loaded once from ``data/registry.yaml``.

Readers, the synthetic generator and the detectors all look features up here, so a new
variable or region is one edit to a data file, not a hunt through code.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ensembles.errors import ConfigurationError
from ensembles.regions import get_region

Role = Literal["state", "driver", "feedback"]
Reduction = Literal["mean", "integral", "transport"]
INTEGRAL_UNITS = "mSv"
FLUX_REDUCTIONS = ("integral", "transport")  # freshwater fluxes, in mSv
STATE_VARIABLES = frozenset({"so", "thetao", "tos", "sos", "hmxl", "xmxl", "mld_003", "mlotst",
                             "aice", "hi"})
"""Salinity, temperature, mixed layer and ice state: ``state`` in every region (DESIGN
"Processes, roles, regions"); the registry refuses them as a driver."""


class Variable(BaseModel):
    """A canonical variable and where each ocean/ice/atm/land model keeps it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    units: str
    component: Literal["atm", "ocn", "ice", "lnd", "rof", "glc"]
    reduction: Reduction
    long_name: str
    vertical: Literal["upper"] | None = None
    sign: Literal[1, -1] = 1
    sources: dict[str, tuple[str, ...]]
    into: str | None = None  # transports: the region they are counted into
    salinity: dict[str, tuple[str, ...]] = {}  # transports: salinity recipes, per model

    @model_validator(mode="after")
    def _transport_complete(self) -> Variable:
        if self.reduction != "transport":
            return self
        if self.into is None:
            raise ValueError(f"variable {self.name}: a transport needs `into` (a region)")
        for model, recipes in self.sources.items():
            if not self.salinity.get(model):
                raise ValueError(f"variable {self.name}: no salinity recipe for {model}")
            if any(len(recipe.split("+")) != 2 for recipe in recipes):
                raise ValueError(f"variable {self.name}: a transport recipe is X+Y "
                                 "(normal to the x faces, normal to the y faces)")
        return self

    def source_options(self, model: str) -> tuple[tuple[str, ...], ...]:
        """Recipes for ``model``, each a tuple of terms to add up (parsed once).

        A term is a file variable, or ``VAR/constant`` (see :func:`split_term`).
        """
        return _source_options(self.name, model)


@cache
def _source_options(variable: str, model: str) -> tuple[tuple[str, ...], ...]:
    return tuple(
        tuple(part.strip() for part in alt.split("+"))
        for alt in variables()[variable].sources.get(model, ())
    )


def split_term(term: str) -> tuple[str, str | None]:
    """``"LHFLX/L_v"`` -> ``("LHFLX", "L_v")``; ``"PRECC"`` -> ``("PRECC", None)``.

    The first part is the variable a file must hold, the second a registry constant
    the values are divided by.
    """
    name, _, divisor = term.partition("/")
    return name.strip(), divisor.strip() or None


class Constant(BaseModel):
    """A physical constant a recipe divides by, with the units that make the result right."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float
    units: str
    long_name: str


class Feature(BaseModel):
    """One column of the feature table: a variable reduced over a region."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    variable: str
    region: str
    process: str
    role: Role

    @property
    def var(self) -> Variable:
        return variables()[self.variable]

    @property
    def units(self) -> str:
        return INTEGRAL_UNITS if self.var.reduction in FLUX_REDUCTIONS else self.var.units


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    upper_ocean_m: tuple[float, float]
    water_density: float
    reference_salinity: float
    constants: dict[str, Constant]
    processes: dict[str, str]
    variables: dict[str, Variable]
    features: dict[str, Feature]

    @field_validator("upper_ocean_m")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] < value[1]:
            raise ValueError("upper_ocean_m must be [top, bottom] with 0 <= top < bottom")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        for feature in self.features.values():
            if feature.process not in self.processes:
                raise ValueError(f"feature {feature.name}: unknown process {feature.process!r}")
            if feature.variable in STATE_VARIABLES and feature.role != "state":
                raise ValueError(f"feature {feature.name}: {feature.variable} is the state of "
                                 "the ocean or ice, never a source: its role must be state")
            get_region(feature.region)
        for variable in self.variables.values():
            if variable.into is not None:
                get_region(variable.into)
            for recipe in variable.sources.values():
                for term in (t for alt in recipe for t in alt.split("+")):
                    divisor = split_term(term)[1]
                    if divisor is not None and divisor not in self.constants:
                        raise ValueError(f"variable {variable.name}: unknown constant {divisor!r}")
        return self


def _parse(raw: dict) -> Registry:
    variables_ = {name: Variable(name=name, **spec) for name, spec in raw["variables"].items()}
    features_: dict[str, Feature] = {}
    for stem, by_region in raw["features"].items():
        variable = stem.removesuffix("_upper")
        if variable not in variables_:
            raise ConfigurationError(
                f"registry feature {stem!r} names unknown variable {variable!r}"
            )
        if stem.endswith("_upper") != (variables_[variable].vertical == "upper"):
            raise ConfigurationError(
                f"registry feature {stem!r}: `_upper` must match vertical: upper"
            )
        for region, (process, role) in by_region.items():
            name = f"{stem}_{region}"
            features_[name] = Feature(
                name=name, variable=variable, region=region, process=process, role=role
            )
    return Registry(
        upper_ocean_m=tuple(raw["upper_ocean_m"]),
        water_density=raw["water_density"],
        reference_salinity=raw["reference_salinity"],
        constants={name: Constant(**spec) for name, spec in raw.get("constants", {}).items()},
        processes=raw["processes"],
        variables=variables_,
        features=features_,
    )


@cache
def _registry_text() -> str:
    return resources.files("ensembles").joinpath("data/registry.yaml").read_text()


@cache
def registry() -> Registry:
    """The registry, validated once per process."""
    try:
        return _parse(yaml.safe_load(_registry_text()))
    except (ValueError, KeyError) as err:
        raise ConfigurationError(f"invalid ensembles/data/registry.yaml: {err}") from err


def variables() -> dict[str, Variable]:
    return registry().variables


def features() -> dict[str, Feature]:
    return registry().features


def processes() -> dict[str, str]:
    return registry().processes


@cache
def source_names(model: str) -> frozenset[str]:
    """Every file variable some recipe of ``model`` reads (time series of others are skipped)."""
    recipes = (
        option
        for variable in variables().values()
        for option in (
            *variable.source_options(model),
            *(tuple(r.split("+")) for r in variable.salinity.get(model, ())),
        )
    )
    return frozenset(split_term(term)[0] for option in recipes for term in option)


def features_for_component(component: str) -> list[Feature]:
    return [f for f in features().values() if f.var.component == component]


def definitions_hash() -> str:
    """Hash of everything that changes a feature value: registry, regions and the version.

    Cached features are only reused when this hash matches, so editing a region box or a
    unit invalidates exactly the cache it should.
    """
    from ensembles import __version__

    regions_text = resources.files("ensembles").joinpath("data/regions.yaml").read_text()
    blob = "\n".join([_registry_text(), regions_text, __version__])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
