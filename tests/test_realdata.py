"""Real model-written files (``shared/realdata``, provenance in its README): every file gives
features or its true reason, names parse, grids fall back, and the catalog opens in intake-esm.

These files were written by CESM's models themselves (then cut down by their publishers),
so they hold what synthetic files cannot: real attribute spellings, real shortened names,
real missing variables.
"""

from __future__ import annotations

from pathlib import Path

import dask
import intake_esm
import netCDF4
import pytest

from ensembles.catalog import build_catalog, write_catalog
from ensembles.features import build_features
from ensembles.filenames import discover, parse_filename
from ensembles.grids import read_grid

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
pytestmark = pytest.mark.skipif(
    not REALDATA.is_dir(),
    reason=f"real CESM files not found at {REALDATA} (shared/realdata beside the checkout)",
)
FILES = sorted(p.relative_to(REALDATA).as_posix() for p in REALDATA.rglob("*.nc"))

# file -> (case, model, stream, frequency, start) as its name or header says
PLACED = {
    "cesm-mom6/GMOM_JRA_WD.mom6.h.z_1900_01.nc": (
        "GMOM_JRA_WD",
        "mom6",
        "h.z",
        "month_1",
        "1900-01",
    ),
    "cesm-mom6/GMOM_JRA_WD.mom6.h.native_1900_01.nc": (
        "GMOM_JRA_WD",
        "mom6",
        "h.native",
        "month_1",
        "1900-01",
    ),
    "cesm-mom6/GMOM_JRA_WD.mom6.h.sfc_1900_01_02.nc": (
        "GMOM_JRA_WD",
        "mom6",
        "h.sfc",
        "day_1",
        "1900-01-02",
    ),
    "cesm-mom6/GMOM_JRA_WD.mom6.h.static.nc": ("GMOM_JRA_WD", "mom6", "h.static", "fixed", None),
    "cesm-mom6/GMOM_JRA_WD.cice.h.1900-01-01.nc": (
        "GMOM_JRA_WD",
        "cice",
        "h",
        "day_1",
        "1900-01-01",
    ),
    # shortened names: placed from the case/case_id attribute, the source and the time axis
    "cam-fv/orig.PRECT.10days.nc": (
        "b.e11.B20TRC5CNBDRD.f09_g16.030",
        "cam",
        "h",
        "day_1",
        "1920-01-01",
    ),
    "clm/clm2.h0.subset.control.nc": (
        "SMS_Ly5.f10_f10.I_2000_CLM45_BGC_CROP.nldir_wjs_crop_f10_2000.yellowstone_intel.GC.203246",
        "clm2",
        "h0",
        "month_1",
        "0005-12",
    ),
}
# file -> what must be said about it (it gives no features: each for its own reason)
REASONS = {
    "cesm-mom6/GMOM_JRA_WD.mom6.h.z_1900_01.nc": "areacello is missing",
    "cesm-mom6/GMOM_JRA_WD.mom6.h.native_1900_01.nc": "areacello is missing",
    "cesm-mom6/GMOM_JRA_WD.mom6.h.sfc_1900_01_02.nc": "day_1 output skipped",
    "cesm-mom6/GMOM_JRA_WD.mom6.h.static.nc": "grid file",
    "cesm-mom6/GMOM_JRA_WD.cice.h.1900-01-01.nc": "day_1 output skipped",
    "cam-fv/orig.PRECT.10days.nc": "day_1 output skipped",
    "clm/clm2.h0.subset.control.nc": "no variable any feature uses (looked for EFLX_LH_TOT",
    "clm/cpl.hi.subset.control.nc": "coupler history",
}


def test_the_expectations_cover_every_real_file() -> None:
    assert set(REASONS) == set(FILES)
    assert set(PLACED) == set(FILES) - {"clm/cpl.hi.subset.control.nc"}


@pytest.mark.parametrize("name", sorted(PLACED))
def test_real_files_are_placed(name: str) -> None:
    files, _ = discover([REALDATA])
    (found,) = [f for f in files if f.path == REALDATA / name]
    assert (found.case, found.model, found.stream, found.frequency, found.start) == PLACED[name]


@pytest.mark.parametrize("name", [n for n in PLACED if n.startswith("cesm-mom6/")])
def test_real_cesm_mom6_names_parse_without_opening(name: str) -> None:
    parsed = parse_filename(REALDATA / name)
    assert (parsed.case, parsed.model, parsed.stream, parsed.frequency) == PLACED[name][:4]


@pytest.fixture(scope="module")
def built():
    return build_features([REALDATA], scheduler="synchronous")


def test_every_real_file_is_accounted_for_with_its_reason(built) -> None:
    said = {(row.case, row.stream): row.status for row in built.streams()}
    where = {f.path: (f.case, f"{f.model}.{f.stream}") for f in built.files}
    for name, reason in REASONS.items():
        path = REALDATA / name
        key = where.get(path, ("-", path.name))  # a file that could not be placed: by name
        assert reason in said[key], (name, said[key])


def test_real_clm_file_takes_landmask_for_landfrac() -> None:
    path = REALDATA / "clm/clm2.h0.subset.control.nc"
    with netCDF4.Dataset(path) as nc:
        grid = read_grid("clm2", nc, str(path))
        landmask = nc["landmask"][:]
    assert grid.choices == ("land fraction from landmask (0/1; no landfrac)",)
    assert grid.land_fraction.sum() == landmask.sum() == 278


def test_coverage_names_why_each_component_gave_nothing(built) -> None:
    rows = {row.feature: row for row in built.coverage()}
    assert rows["prect_labsea"].detail == "no monthly atm output (only day_1)"
    assert rows["aice_labsea"].detail == "no monthly ice output (only day_1)"
    assert "QRUNOFF" in rows["qrunoff_greenland"].detail
    assert "areacello" in rows["so_upper_labsea"].detail
    assert {row.status for row in rows.values()} == {"missing"}


def test_catalog_of_the_real_files_opens_in_intake_esm(tmp_path: Path) -> None:
    table, problems = build_catalog([REALDATA])
    assert len(table) == len(FILES) - 1  # the coupler file is reported, not catalogued
    assert [p.path for p in problems] == [str(REALDATA / "clm/cpl.hi.subset.control.nc")]
    cat = intake_esm.esm_datastore(write_catalog(table, tmp_path, "realdata"))
    assert set(cat.df["model"]) == {"mom6", "cice", "cam", "clm2"}
    mom6 = cat.search(model="mom6", stream="h.z")
    with dask.config.set(scheduler="synchronous"):  # HDF5 is not thread-safe
        datasets = mom6.to_dataset_dict(
            xarray_open_kwargs={"decode_times": False}, progressbar=False
        )
    (dataset,) = datasets.values()
    assert dataset["thetao"].dims == ("time", "z_l", "yh", "xh")
