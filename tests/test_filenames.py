"""CESM file-name parsing over every naming shape we know, and discovery on a real tree."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ensembles.errors import InputFileError, UnrecognisedFileName
from ensembles.filenames import COMPONENT_OF_MODEL, CesmFile, discover, parse_filename, split_case

CESM2 = "b.e21.BHIST.f09_g17.CMIP6-historical.001"
CESM3 = "b.e30_alpha09b.B1850C_MTso.ne30_t232_wgx3.356"
MOM6_DEV = "b.e23_alpha17f.BLT1850.ne30_t232.104"

# case -> (ensemble, member_id)
CASES = {
    CESM3: ("b.e30_alpha09b.B1850C_MTso.ne30_t232_wgx3", "356"),
    CESM2: ("b.e21.BHIST.f09_g17.CMIP6-historical", "001"),
    "b.e21.B1850.f09_g17.CMIP6-piControl.001": ("b.e21.B1850.f09_g17.CMIP6-piControl", "001"),
    "i.e30.I2000Clm60Sp.ne30_t232.OAAT0004": ("i.e30.I2000Clm60Sp.ne30_t232", "OAAT0004"),
    "COUP0000": ("COUP0000", "COUP0000"),
    "ctsm51_ppe.OFFL0012": ("ctsm51_ppe", "OFFL0012"),
    MOM6_DEV: ("b.e23_alpha17f.BLT1850.ne30_t232", "104"),
    "f.e21.FHIST.f09_f09_mg17.cesm2.1-exp002.001": (
        "f.e21.FHIST.f09_f09_mg17.cesm2.1-exp002",
        "001",
    ),
    # no member suffix: the case is its own ensemble and member
    "b.e21.BHIST.f09_g17.CMIP6-historical": ("b.e21.BHIST.f09_g17.CMIP6-historical",) * 2,
    "b.e30.B1850C_MTso.ne30_t232.cesm2.1": ("b.e30.B1850C_MTso.ne30_t232.cesm2.1",) * 2,
}

# (case, rest of the name) -> (model, stream, frequency, start, end, variable, layout)
# fmt: off
NAMES = {
    # CESM2 history
    (CESM2, "pop.h.0001-01.nc"): ("pop", "h", "month_1", "0001-01", "0001-01", None, "history"),
    (CESM2, "cice.h.0001-01.nc"): ("cice", "h", "month_1", "0001-01", "0001-01", None, "history"),
    (CESM2, "cam.h0.0001-01.nc"): ("cam", "h0", "month_1", "0001-01", "0001-01", None, "history"),
    (CESM2, "cam.h1.0001-01-01-00000.nc"): (
        "cam", "h1", "subdaily", "0001-01-01-00000", "0001-01-01-00000", None, "history",
    ),
    (CESM2, "clm2.h0.0001-01.nc"): ("clm2", "h0", "month_1", "0001-01", "0001-01", None, "history"),
    (CESM2, "mosart.h0.0001-01.nc"): (
        "mosart", "h0", "month_1", "0001-01", "0001-01", None, "history",
    ),
    (CESM2, "cism.h.0001-01-01-00000.nc"): (
        "cism", "h", "subdaily", "0001-01-01-00000", "0001-01-01-00000", None, "history",
    ),
    (CESM2, "pop.h.nday1.0001-01-01.nc"): (
        "pop", "h.nday1", "day_1", "0001-01-01", "0001-01-01", None, "history",
    ),
    (CESM2, "cice.h1.0001-01-01.nc"): (
        "cice", "h1", "day_1", "0001-01-01", "0001-01-01", None, "history",
    ),
    (CESM2, "pop.h.once.nc"): ("pop", "h.once", "fixed", None, None, None, "static"),
    # CESM3 history
    (CESM3, "mom6.h.z.0001-01.nc"): (
        "mom6", "h.z", "month_1", "0001-01", "0001-01", None, "history",
    ),
    (CESM3, "mom6.h.native.0001-01.nc"): (
        "mom6", "h.native", "month_1", "0001-01", "0001-01", None, "history",
    ),
    (CESM3, "mom6.h.sfc.0001-01-01.nc"): (
        "mom6", "h.sfc", "day_1", "0001-01-01", "0001-01-01", None, "history",
    ),
    (CESM3, "mom6.h.static.nc"): ("mom6", "h.static", "fixed", None, None, None, "static"),
    (CESM3, "cam.h0a.0001-01.nc"): ("cam", "h0a", "month_1", "0001-01", "0001-01", None, "history"),
    (CESM3, "cam.h0i.0001-01-01-00000.nc"): (
        "cam", "h0i", "subdaily", "0001-01-01-00000", "0001-01-01-00000", None, "history",
    ),
    (CESM3, "clm2.h0a.0001-01.nc"): (
        "clm2", "h0a", "month_1", "0001-01", "0001-01", None, "history",
    ),
    (CESM3, "clm2.h0i.0001-01-01-00000.nc"): (
        "clm2", "h0i", "subdaily", "0001-01-01-00000", "0001-01-01-00000", None, "history",
    ),
    (CESM3, "cice.h.0001-01.nc"): ("cice", "h", "month_1", "0001-01", "0001-01", None, "history"),
    # early CESM-MOM6 development runs
    (MOM6_DEV, "mom6.hm_0001_01.nc"): (
        "mom6", "hm", "month_1", "0001-01", "0001-01", None, "history",
    ),
    (MOM6_DEV, "mom6.sfc_0001_01_01.nc"): (
        "mom6", "sfc", "day_1", "0001-01-01", "0001-01-01", None, "history",
    ),
    (MOM6_DEV, "mom6.static.nc"): ("mom6", "static", "fixed", None, None, None, "static"),
    # CESM-driven MOM6 (CMEPS): underscores, or dots, between the stream and the date
    (CESM3, "mom6.h.z_0001_01.nc"): (
        "mom6", "h.z", "month_1", "0001-01", "0001-01", None, "history",
    ),
    (CESM3, "mom6.h.native_0001_01.nc"): (
        "mom6", "h.native", "month_1", "0001-01", "0001-01", None, "history",
    ),
    (CESM3, "mom6.h.rho2_0001_01.nc"): (
        "mom6", "h.rho2", "month_1", "0001-01", "0001-01", None, "history",
    ),
    (CESM3, "mom6.h.sfc_0001_01_02.nc"): (
        "mom6", "h.sfc", "day_1", "0001-01-02", "0001-01-02", None, "history",
    ),
    (CESM3, "mom6.h.z.0001_01.nc"): (
        "mom6", "h.z", "month_1", "0001-01", "0001-01", None, "history",
    ),
    (CESM3, "mom6.h.rho2.0001-01.nc"): (
        "mom6", "h.rho2", "month_1", "0001-01", "0001-01", None, "history",
    ),
    (MOM6_DEV, "mom6.h.ocean_geometry.nc"): (
        "mom6", "h.ocean_geometry", "fixed", None, None, None, "static",
    ),
    # single-variable time series (no frequency directory: the date width decides)
    (CESM2, "pop.h.SALT.185001-201412.nc"): (
        "pop", "h", "month_1", "1850-01", "2014-12", "SALT", "tseries",
    ),
    (CESM2, "cam.h0.PRECT.000101-005012.nc"): (
        "cam", "h0", "month_1", "0001-01", "0050-12", "PRECT", "tseries",
    ),
    (CESM3, "mom6.h.z.so.000101-001012.nc"): (
        "mom6", "h.z", "month_1", "0001-01", "0010-12", "so", "tseries",
    ),
    (CESM3, "cice.h.aice.000101-001012.nc"): (
        "cice", "h", "month_1", "0001-01", "0010-12", "aice", "tseries",
    ),
    (CESM3, "cam.h0a.U10.000101-001012.nc"): (
        "cam", "h0a", "month_1", "0001-01", "0010-12", "U10", "tseries",
    ),
    (CESM2, "cam.h1.TS.00010101-00101231.nc"): (
        "cam", "h1", "day_1", "0001-01-01", "0010-12-31", "TS", "tseries",
    ),
    (CESM2, "pop.h.ecosys.nyear1.FG_CO2.1920-2005.nc"): (
        "pop", "h.ecosys.nyear1", "year_1", "1920", "2005", "FG_CO2", "tseries",
    ),
}
# fmt: on


@pytest.mark.parametrize(("case", "rest"), list(NAMES))
def test_parse_every_known_shape(case: str, rest: str) -> None:
    model, stream, frequency, start, end, variable, layout = NAMES[case, rest]
    path = Path("/archive") / case / f"{case}.{rest}"
    parsed = parse_filename(path)
    ensemble, member_id = CASES[case]
    assert parsed == CesmFile(
        path=path,
        case=case,
        member_id=member_id,
        ensemble=ensemble,
        component=COMPONENT_OF_MODEL[model],
        model=model,
        stream=stream,
        frequency=frequency,
        start=start,
        end=end,
        variable=variable,
        layout=layout,
    )
    assert parsed.is_monthly is (frequency == "month_1")


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(
    "rest", ["pop.h.0001-01.nc", "mom6.h.z.so.000101-001012.nc", "clm2.h0a.0001-01.nc"]
)
def test_every_case_shape_survives_parsing(case: str, rest: str) -> None:
    parsed = parse_filename(f"{case}.{rest}")
    assert parsed.case == case
    assert (parsed.ensemble, parsed.member_id) == CASES[case]


@pytest.mark.parametrize("case", list(CASES))
def test_split_case(case: str) -> None:
    assert split_case(case) == CASES[case]


def test_components_follow_models() -> None:
    expected = {
        "pop": "ocn", "mom6": "ocn", "cice": "ice", "cam": "atm",
        "clm2": "lnd", "mosart": "rof", "cism": "glc", "cpl": "cpl",
    }  # fmt: skip
    assert expected == COMPONENT_OF_MODEL


@pytest.mark.parametrize(
    ("directory", "name", "frequency"),
    [
        ("ocn/proc/tseries/month_1", f"{CESM2}.pop.h.SALT.000101-001012.nc", "month_1"),
        ("ocn/proc/tseries/day_1", f"{CESM2}.pop.h.nday1.SST.00010101-00101231.nc", "day_1"),
        ("atm/proc/tseries/hour_6", f"{CESM2}.cam.h2.PSL.00010101-00011231.nc", "hour_6"),
        ("atm/proc/tseries/other", f"{CESM2}.cam.h0.TS.000101-001012.nc", "month_1"),
    ],
)
def test_tseries_frequency_comes_from_directory(directory: str, name: str, frequency: str) -> None:
    parsed = parse_filename(Path("/archive") / CESM2 / directory / name)
    assert parsed.layout == "tseries"
    assert parsed.frequency == frequency


@pytest.mark.parametrize(
    "name",
    [
        f"{CESM2}.cam.r.0001-01-01-00000.nc",
        f"{CESM2}.cam.rs.0001-01-01-00000.nc",
        f"{CESM2}.clm2.rh0.0001-01-01-00000.nc",
        f"{CESM3}.mom6.r.0002-01-01-00000.nc",
        f"{CESM2}.cpl.hi.0001-01-01-00000.nc",
        f"{CESM2}.cam.i.0001-01-01-00000.nc",
        f"{CESM2}.foo.h.0001-01.nc",
        f"{CESM2}.pop.h.0001-01.nc.gz",
        "rpointer.atm",
        "rpointer.cpl.0001-01-01-00000",
        "cesm.log.4231098.251126-082100",
        "atm.log.4231098.251126-082100.gz",
        "notes.nc",
    ],
)
def test_unknown_names_raise_with_path_and_expectations(name: str) -> None:
    path = Path("/archive/run") / name
    with pytest.raises(UnrecognisedFileName, match="expected one of") as info:
        parse_filename(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert "<case>.<model>.<stream>.<YYYY-MM[-DD[-SSSSS]]>.nc" in str(info.value)


def test_restart_is_named_as_such() -> None:
    with pytest.raises(UnrecognisedFileName, match="restart file"):
        parse_filename(f"{CESM2}.pop.rh.0001-01-01-00000.nc")


@pytest.mark.parametrize("span", ["000101-0050", "001012-000101"])
def test_inconsistent_tseries_span_raises(span: str) -> None:
    name = f"{CESM2}.pop.h.SALT.{span}.nc"
    with pytest.raises(UnrecognisedFileName, match=span) as info:
        parse_filename(name)
    assert name in str(info.value)


def _touch(root: Path, relative: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_discover_walks_archive_tseries_and_run_directories(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archive, run = tmp_path / "archive", tmp_path / "run" / CESM3
    expected = [
        _touch(archive, f"{CESM2}/ocn/hist/{CESM2}.pop.h.0001-01.nc"),
        _touch(archive, f"{CESM2}/ocn/hist/{CESM2}.pop.h.0001-02.nc"),
        _touch(archive, f"{CESM2}/atm/hist/{CESM2}.cam.h0.0001-01.nc"),
        _touch(archive, f"{CESM2}/ocn/proc/tseries/month_1/{CESM2}.pop.h.SALT.000101-000112.nc"),
        _touch(run, f"{CESM3}.mom6.h.z.0001-01.nc"),
        _touch(run, f"{CESM3}.mom6.h.static.nc"),
    ]
    garbage = _touch(archive, f"{CESM2}/ocn/hist/garbage.nc")
    coupler = _touch(run, f"{CESM3}.cpl.hi.0001-01-01-00000.nc")
    restart = _touch(run, f"{CESM3}.cam.r.0001-01-01-00000.nc")
    for ignored in ("README.txt", "rpointer.atm", "cesm.log.4231098.251126-082100.gz"):
        _touch(run, ignored)

    with caplog.at_level(logging.DEBUG, logger="ensembles.filenames"):
        files, errors = discover([archive, str(run), archive / CESM2])

    assert [f.path for f in files] == sorted(expected)
    assert {f.layout for f in files} == {"history", "tseries", "static"}
    assert all(isinstance(e, UnrecognisedFileName) for e in errors)
    assert sorted(e.path for e in errors) == sorted([str(garbage), str(coupler)])
    assert str(restart) in caplog.text
    assert all(str(restart) != e.path for e in errors)


def test_discover_reports_missing_root_beside_a_good_one(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    good = _touch(tmp_path / "archive", f"{CESM2}.pop.h.0001-01.nc")
    files, errors = discover([missing, tmp_path / "archive"])
    assert [f.path for f in files] == [good]
    assert len(errors) == 1
    assert type(errors[0]) is InputFileError
    assert errors[0].path == str(missing)


def test_discover_raises_on_a_root_with_no_cesm_output(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such data directory"):
        discover([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match=r"no \.nc files at all"):
        discover([tmp_path / "empty"])
    for name in ("zz.nc", "b/aa.nc", "b/c/notes.txt"):
        _touch(tmp_path / "foreign", name)
    with pytest.raises(InputFileError) as caught:
        discover([tmp_path / "foreign"])
    assert "2 .nc files, none with a CESM name; first: b/aa.nc" in str(caught.value)


def test_discover_follows_symlinked_case_directories_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    real = _touch(store, f"{CESM2}/ocn/hist/{CESM2}.pop.h.0001-01.nc")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / CESM2).symlink_to(store / CESM2, target_is_directory=True)
    (workspace / "again").symlink_to(store / CESM2, target_is_directory=True)  # reached twice
    (store / CESM2 / "ocn" / "loop").symlink_to(store / CESM2, target_is_directory=True)
    files, errors = discover([workspace])
    assert len(files) == 1 and errors == []
    assert files[0].case == CESM2
    assert files[0].path.resolve() == real.resolve()
    # the same directory through another root is not listed twice either
    assert len(discover([workspace, store])[0]) == 1
