"""The feature table a simulation would give after writing and reading its files.

Writing netCDF and reading it back is what the file tests check; detectors' tests and the
validation script only need the table, so this shortcut builds it directly from the physics
series, with the same names, units, attrs and time axis as :func:`ensembles.features.assemble`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ensembles.areas import OCEAN_AREA_ATTR
from ensembles.registry import features as registry_features
from ensembles.timeaxis import month_centre
from synth.physics import REGION_AREA_M2, Simulation


def feature_table(
    sim: Simulation, cases: Sequence[str], *, ensemble: str = "synthetic", start_year: int = 1
) -> xr.Dataset:
    """Dataset (member, time) of every registry feature the simulation produced."""
    catalogue = registry_features()
    n_months = next(iter(sim.features.values())).shape[1]
    months = [f"{start_year + i // 12:04d}-{i % 12 + 1:02d}" for i in range(n_months)]
    data = {}
    for name, values in sim.features.items():
        if name not in catalogue:
            continue
        feature = catalogue[name]
        data[name] = (
            ("member", "time"),
            np.asarray(values, dtype=float),
            {
                "units": feature.units,
                "process": feature.process,
                "role": feature.role,
                "component": feature.var.component,
                "region": feature.region,
                "source_variable": "synthetic",
                "reduction": feature.var.reduction,
            },
        )
    coords = {
        "member": list(cases),
        "time": [month_centre(m) for m in months],
        "ensemble": ("member", [ensemble] * len(cases)),
        "member_id": ("member", [c.rsplit(".", 1)[-1] for c in cases]),
    }
    # as the readers do from the ocean grid (ensembles.areas): the synthetic grid's Lab Sea
    attrs = {OCEAN_AREA_ATTR: REGION_AREA_M2,
             f"{OCEAN_AREA_ATTR}_source": "labsea ocean area of the synthetic grids"}
    return xr.Dataset(data, coords=coords, attrs=attrs)
