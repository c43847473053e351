"""Ocean area of a region on the model's own grid, for budgets that need an area.

The Lab Sea freshwater content is area x layer depth x salinity deficit, so its tendency is
only as right as the area: the region's boxes on the sphere include Labrador, Greenland and
Baffin Island. The ocean grid knows which of its cells are wet and how large they are; the
area is the same weights the feature reader uses for the region's means (cell area times the
ocean fraction), read from one ocean file that gave features.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import netCDF4

from ensembles.errors import InputFileError
from ensembles.extract import MODEL_COMPONENT, GridPlan
from ensembles.filenames import CesmFile
from ensembles.grids import CaseFiles, read_grid

log = logging.getLogger(__name__)

BUDGET_REGION = "labsea"
OCEAN_AREA_ATTR = f"{BUDGET_REGION}_ocean_area_m2"
"""Feature-table attribute with the budget region's ocean area (and ``..._source``)."""


def region_ocean_area(
    files: Iterable[CesmFile],
    with_features: set[str],
    auxiliary: Mapping[tuple[str, str], tuple[tuple[str, str], ...]],
    region: str,
) -> tuple[float, str] | None:
    """(m2, where it came from) of ``region`` on the first ocean grid with features, or None.

    ``auxiliary`` is the case's grid files (:func:`ensembles.features.build_features`
    finds them), for a MOM6 history file whose areas live in its static file. The source
    names the model and case, never a path.
    """
    ocean = (
        f for f in files if MODEL_COMPONENT.get(f.model) == "ocn" and str(f.path) in with_features
    )
    f = min(ocean, key=lambda f: str(f.path), default=None)
    if f is None:
        return None
    case = CaseFiles([p for _, p in auxiliary.get((f.case, f.model), ())])
    try:
        with netCDF4.Dataset(f.path) as nc:
            selection = GridPlan(read_grid(f.model, nc, str(f.path), case)).selection(region)
    except (InputFileError, OSError) as err:
        log.warning("no %s ocean area from %s: %s", region, f.path, err)
        return None
    finally:
        case.close()
    if selection is None:
        return None
    area = float(selection.weights.sum())
    cells = int((selection.weights > 0).sum())
    return area, f"{region} ocean cells of the {f.model} grid of {f.case} ({cells} cells)"
