"""The lazy xarray view agrees with the fast extractor: time centred, units canonical."""

from __future__ import annotations

import numpy as np
import pytest

from ensembles.readers import open_history
from tests.cesm_files import write_pop

LAT_E = np.arange(50.0, 71.0, 2.0)
LON_E = np.arange(-70.0, -39.0, 2.0)
SHAPE = (LAT_E.size - 1, LON_E.size - 1)


def test_open_history_is_lazy_centred_and_canonical(tmp_path):
    paths = [
        write_pop(
            tmp_path / f"c.001.pop.h.0001-{m:02d}.nc",
            LAT_E,
            LON_E,
            {"HMXL": np.full((1, *SHAPE), 1.0e5 * m)},
            months=(m,),
        )
        for m in (1, 2)
    ]
    ds = open_history(paths)
    assert ds["HMXL"].chunks is not None  # dask-backed
    assert [t.month for t in ds.time.values] == [1, 2]  # end stamps moved to mid-month
    assert ds.time.values[0].day in (15, 16)
    assert ds["HMXL"].attrs["units"] == "m"
    np.testing.assert_allclose(ds["HMXL"].isel(nlat=0, nlon=0).values, [1000.0, 2000.0])
    weights = ds.cell_area_m2
    mean = ds["HMXL"].weighted(weights).mean(("nlat", "nlon"))
    assert float(mean[0]) == pytest.approx(1000.0)
