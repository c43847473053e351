"""The coverage report: a developer sees at a glance what was analysed and what was not."""

from __future__ import annotations

import numpy as np

from ensembles.coverage import missing_processes, render
from ensembles.features import build_features
from tests.cesm_files import write_cam_se

CASE = "b.e21.B1850.f09_g17.cov.001"


def test_a_lone_part_of_precipitation_is_named_in_the_coverage(tmp_path):
    tseries = tmp_path / CASE / "atm/proc/tseries/month_1"
    tseries.mkdir(parents=True)
    n = 200
    rng = np.random.default_rng(1)
    lat, lon = rng.uniform(50, 70, n), rng.uniform(290, 320, n)
    for name in ("PRECC", "PSL"):
        write_cam_se(
            tseries / f"{CASE}.cam.h0.{name}.000101-000101.nc",
            lat,
            lon,
            np.full(n, 4 * np.pi / n),
            np.zeros(n),
            {name: np.full((1, n), 1e-8)},
        )
    built = build_features([tmp_path], scheduler="synchronous")
    rows = {row.feature: row for row in built.coverage()}
    assert rows["psl_labsea"].status == "built"
    assert rows["psl_labsea"].detail == "from PSL"
    assert rows["prect_labsea"].status == "missing"
    assert "prect: PRECC present, PRECL missing" in rows["prect_labsea"].detail
    assert "no ocn output" in rows["so_upper_labsea"].detail
    assert "precipitation" in missing_processes(built.coverage())
    text = render(built.coverage(), built.streams())
    assert "- prect_labsea" in text and "+ psl_labsea" in text
    assert "ocn  every feature missing: no ocn output (pop or mom6) found" in text
    assert text.splitlines()[-1].startswith("NOT ANALYSED (no feature built): ")
    assert "precipitation" in text.splitlines()[-1]
