"""Regions as data: boxes on any longitude convention, plus bathymetry-defined sub-regions.

Every grid (POP, MOM6, CICE, CAM-SE, CAM-FV, CLM) reduces to 2-D or 1-D arrays of
cell-centre latitude and longitude, so one mask function serves all of them.  Longitudes
are normalised with mod 360 because MOM6 tripolar ``geolon`` runs outside -180..360.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ensembles.errors import ConfigurationError

Domain = Literal["ocean", "land", "any"]


class Box(BaseModel):
    """A latitude band times an eastward longitude interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lat: tuple[float, float]
    lon: tuple[float, float]

    def contains(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        lon0 = self.lon[0] % 360.0
        width = (self.lon[1] - self.lon[0]) % 360.0
        if width == 0.0 and self.lon[1] != self.lon[0]:
            width = 360.0  # [0, 360] means all longitudes, not an empty interval
        in_lon = (np.mod(lon, 360.0) - lon0) % 360.0 <= width
        return (lat >= self.lat[0]) & (lat <= self.lat[1]) & in_lon


class Region(BaseModel):
    """A named region; see ``data/regions.yaml`` for the meaning of each field."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    domain: Domain
    description: str
    boxes: tuple[Box, ...] = ()
    within: str | None = None
    min_depth_m: float | None = None
    fallback_boxes: tuple[Box, ...] = ()

    @model_validator(mode="after")
    def _has_geometry(self) -> Region:
        if not self.boxes and self.within is None:
            raise ValueError(f"region {self.name!r} needs boxes or `within`")
        if self.min_depth_m is not None and not self.fallback_boxes:
            raise ValueError(f"region {self.name!r} selects by depth and needs fallback_boxes")
        return self


class RegionTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    regions: dict[str, Region] = Field(default_factory=dict)


@cache
def regions() -> dict[str, Region]:
    """All regions, loaded once from the package data file."""
    text = resources.files("ensembles").joinpath("data/regions.yaml").read_text()
    raw = yaml.safe_load(text)["regions"]
    table = RegionTable(regions={k: {"name": k, **v} for k, v in raw.items()})
    for region in table.regions.values():
        if region.within is not None and region.within not in table.regions:
            raise ConfigurationError(f"region {region.name!r} is within unknown {region.within!r}")
    return table.regions


def get_region(name: str) -> Region:
    try:
        return regions()[name]
    except KeyError:
        known = ", ".join(sorted(regions()))
        raise ConfigurationError(f"unknown region {name!r}; known regions: {known}") from None


def region_mask(
    name: str,
    lat: np.ndarray,
    lon: np.ndarray,
    depth_m: np.ndarray | None = None,
) -> tuple[np.ndarray, str]:
    """Boolean mask of the cells whose centres fall in a region, and how it was made.

    The domain (ocean or land) is *not* applied here: it is a weight the grid owns
    (ocean mask, land fraction), so a coastal CAM column can count partly.

    Returns
    -------
    mask, method
        ``method`` is ``"boxes"``, ``"bathymetry"`` or ``"fallback_boxes"`` and is written
        into feature attrs so a user can see when a grid lacked bathymetry.
    """
    region = get_region(name)
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if region.within is None:
        return _in_any(region.boxes, lat, lon), "boxes"
    parent, _ = region_mask(region.within, lat, lon, depth_m)
    if region.min_depth_m is None:
        return parent, "boxes"
    if depth_m is None:
        return parent & _in_any(region.fallback_boxes, lat, lon), "fallback_boxes"
    deep = np.nan_to_num(np.asarray(depth_m, dtype=float), nan=0.0) > region.min_depth_m
    return parent & deep, "bathymetry"


def _in_any(boxes: tuple[Box, ...], lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    mask = np.zeros(lat.shape, dtype=bool)
    for box in boxes:
        mask |= box.contains(lat, lon)
    return mask
