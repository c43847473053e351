"""Bad files met by a real worker: the run finishes, each bad file is named with its reason.

One archive holds a clean member and one member per kind of damage: a truncated file, a
text file named ``.nc``, a variable on the wrong grid, fields that are all fill values, a
file another process is still writing through netCDF (HDF5 header incomplete, file held
open), and a file still being copied in (its size still growing).  A ``features`` job run by
a Celery worker must succeed, list every damaged file with the reason, and keep every
usable month; once the copy has finished, the next job reads only what failed before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from service.jobs import submit_job
from service.settings import Settings
from service.store import get_store
from tests import faultkit
from tests.faultkit import (
    RedisServer,
    WorkerProcess,
    reconcile_until_done,
    stop_process_group,
)
from tests.test_bad_input import CASE, SHAPE, pop_file
from tests.test_jobs import local_settings

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

MEMBERS = {"001": "clean", "002": "truncated", "003": "not netCDF", "004": "wrong grid",
           "005": "fill only", "006": "being written", "007": "being copied"}

_WRITER = textwrap.dedent("""
    import sys, netCDF4
    nc = netCDF4.Dataset(sys.argv[1], "w")  # a model or archiver that has not finished
    nc.createDimension("time", None)
    nc.createDimension("nlat", int(sys.argv[2]))
    nc.createDimension("nlon", int(sys.argv[3]))
    nc.createVariable("SALT", "f4", ("time", "nlat", "nlon"))
    nc.sync()
    print("open", flush=True)
    sys.stdin.readline()
""")


redis_server = faultkit.redis_server_fixture
worker = faultkit.worker_fixture


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Settings:
    base = tmp_path_factory.mktemp("bad-files")
    return local_settings(base, base / "archive", broker_url=redis_server.url(),
                          dask_scheduler=None, queue_prefix="faults-")


def _path(root: Path, member: str, month: int) -> Path:
    return root / f"{CASE}.{member}/ocn/hist/{CASE}.{member}.pop.h.0001-{month:02d}.nc"


@pytest.fixture
def damaged(settings: Settings) -> Iterator[tuple[Path, dict[str, Path], bytes]]:
    """The archive, the damaged file of each member, and the bytes the copy will finish."""
    root = settings.data_roots[0]
    for member in MEMBERS:
        for month in (1, 2):
            pop_file(root, member, month)
    bad = {member: _path(root, member, 2) for member in MEMBERS if member != "001"}
    data = bad["002"].read_bytes()
    bad["002"].write_bytes(data[: len(data) // 2])
    bad["003"].write_text("cesm.log: 2025-01-01 model date 0001-02-01\n")
    pop_file(root, "004", 2, fields={"HMXL": np.full((1, *SHAPE), 1.0e5)})
    with netCDF4.Dataset(bad["004"], "a") as nc:
        nc.createDimension("nlat_u", 3)
        nc.createDimension("nlon_u", 4)
        nc.createVariable("SALT", "f4", ("time", "z_t", "nlat_u", "nlon_u"))[:] = 34.0
    pop_file(root, "005", 2, fields={"SALT": np.full((1, 5, *SHAPE), 9.96921e36),
                                     "HMXL": np.full((1, *SHAPE), np.nan)})
    bad["006"].unlink()
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(bad["006"]), *map(str, SHAPE)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    complete = bad["007"].read_bytes()
    bad["007"].write_bytes(complete[:2048])  # the first blocks of a copy still in progress
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "open\n"
        yield root, bad, complete
    finally:
        stop_process_group(writer, grace_s=0)


def _run(settings: Settings, root: Path) -> tuple[dict, xr.Dataset]:
    job_id = submit_job("features", {"roots": [str(root)]}, settings=settings)
    jobs, _ = reconcile_until_done(settings, [job_id], timeout=60)
    assert jobs[job_id].state == "succeeded", jobs[job_id].error
    result_dir = settings.job_results_dir(job_id)
    result = json.loads((result_dir / "result.json").read_text())
    with xr.open_dataset(result_dir / "features.nc") as features:
        return result, features.load()


def test_bad_files_are_reported_and_the_rest_is_processed(
        settings: Settings, worker: WorkerProcess,
        damaged: tuple[Path, dict[str, Path], bytes]) -> None:
    root, bad, complete = damaged
    result, features = _run(settings, root)
    assert f"{get_store(settings).list_jobs()[0][0].id} (features) attempt 1" in worker.text()
    problems = result["problems"]
    reasons = {"002": "not a readable netCDF file", "003": "not a readable netCDF file",
               "004": "variable SALT has dims ('time', 'z_t', 'nlat_u', 'nlon_u')",
               "005": "so_upper_labsea: all values missing",
               "006": "not a readable netCDF file", "007": "not a readable netCDF file"}
    for member, reason in reasons.items():
        hits = [p for p in problems if str(bad[member]) in p]
        assert hits and any(reason in p for p in hits), (MEMBERS[member], problems)
    assert not any(f"{CASE}.001" in p for p in problems)  # the clean member has none

    assert result["n_members"] == len(MEMBERS) and result["n_months"] == 2
    salt = features["so_upper_labsea"]
    assert np.isfinite(salt.sel(member=f"{CASE}.001")).all()
    for member in bad:  # every member keeps its good month and loses only the bad one
        values = salt.sel(member=f"{CASE}.{member}").values
        assert np.isfinite(values[0]) and np.isnan(values[1]), member
    assert result["files_read"] == 2 * len(MEMBERS)

    bad["007"].write_bytes(complete)  # the copy finished
    again, features = _run(settings, root)
    failed_reads = {"002", "003", "004", "006", "007"}  # 005 reads fine: its values are fill
    assert again["files_read"] == len(failed_reads)  # what failed is read again (never cached)
    assert again["files_cached"] == 2 * len(MEMBERS) - len(failed_reads)
    assert not any(str(bad["007"]) in p for p in again["problems"])
    assert np.isfinite(features["so_upper_labsea"].sel(member=f"{CASE}.007")).all()
