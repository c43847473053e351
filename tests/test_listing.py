"""Directory records (ensembles/listing.py): what a warm rerun skips, and what it still sees.

The archives are small real POP history files.  Time is moved forward through the
module's clock, as it passes between nightly scans, so that files settle and directories
are old enough to be trusted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import ensembles.listing as listing
from ensembles.errors import InputFileError
from ensembles.features import build_features
from ensembles.filenames import FILE_PATTERNS, discover
from ensembles.listing import Listings
from tests.test_bad_input import CASE, SHAPE, pop_file

HOUR_NS = 3600 * 10**9
MEMBER = f"{CASE}.001"


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Two members, three months each, written an hour 'ago'."""
    root = tmp_path / "archive"
    for member in ("001", "002"):
        for month in (1, 2, 3):
            pop_file(root, member, month)
    return root


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch):
    """Move the records' clock forward by some hours (the files were written long ago)."""
    offset = [0]
    monkeypatch.setattr(listing, "_clock", lambda: time.time_ns() + offset[0])

    def advance(hours: float = 1.0) -> None:
        offset[0] += int(hours * HOUR_NS)

    return advance


def _scan(root: Path, tmp_path: Path, **kwargs):
    return build_features([root], cache_dir=tmp_path / "cache", scheduler="synchronous", **kwargs)


def _hist(root: Path, member: str = "001") -> Path:
    return root / f"{CASE}.{member}" / "ocn" / "hist"


def _salt(result, member: str = MEMBER) -> np.ndarray:
    return result.dataset["so_upper_labsea"].sel(member=member).values


class _StatCounter:
    """Counts ``os.stat``/``os.lstat`` calls on ``*.nc`` files, wherever they come from."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        for name in ("stat", "lstat"):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, self._counting(real))

    def _counting(self, real):
        def counted(path, *args, **kwargs):
            if os.fspath(path).endswith(".nc"):
                self.paths.append(os.fspath(path))
            return real(path, *args, **kwargs)

        return counted


def test_a_warm_rerun_stats_no_file_and_gives_the_same_table(archive, tmp_path, later, monkeypatch):
    cold = _scan(archive, tmp_path)
    later()
    _scan(archive, tmp_path)  # records of settled files, in directories old enough
    counter = _StatCounter(monkeypatch)
    warm = _scan(archive, tmp_path)
    assert (warm.files_read, warm.files_cached) == (0, 6)
    assert counter.paths == []
    xr.testing.assert_identical(warm.dataset, cold.dataset)
    uncached = build_features([archive], scheduler="synchronous")
    xr.testing.assert_identical(warm.dataset, uncached.dataset)

    checked = _scan(archive, tmp_path, verify=True)  # the counter sees stats at all
    assert sorted(set(counter.paths)) == sorted(str(p) for p in archive.rglob("*.nc"))
    xr.testing.assert_identical(checked.dataset, cold.dataset)


def test_a_new_file_is_found_and_a_deleted_one_disappears(archive, tmp_path, later):
    _scan(archive, tmp_path)
    later()
    _scan(archive, tmp_path)
    pop_file(archive, "001", 4)
    (_hist(archive, "002") / f"{CASE}.002.pop.h.0001-02.nc").unlink()
    later()
    again = _scan(archive, tmp_path)
    assert (again.files_read, again.files_cached) == (1, 5)
    assert np.isfinite(_salt(again)).all() and len(_salt(again)) == 4
    assert np.isnan(_salt(again, f"{CASE}.002")[1])
    assert any("0001-02" in str(p) for p in again.problems)  # the gap is reported


def test_a_change_to_a_directory_rechecks_its_files_even_with_its_mtime_put_back(
    archive, tmp_path, later
):
    """``rsync -a`` and ``cp -p`` restore a directory's mtime; its ctime still moves."""
    _scan(archive, tmp_path)
    later()
    _scan(archive, tmp_path)
    hist = _hist(archive)
    before = os.stat(hist)
    rewritten = pop_file(archive, "001", 3, fields={"SALT": np.full((1, 5, *SHAPE), 30.0)})
    os.utime(rewritten, ns=(before.st_atime_ns, before.st_mtime_ns - HOUR_NS))  # looks old
    (hist / "scratch.txt").write_text("an archiver's temporary file")
    (hist / "scratch.txt").unlink()
    os.utime(hist, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(hist).st_mtime_ns == before.st_mtime_ns
    later()
    again = _scan(archive, tmp_path)
    assert again.files_read == 1
    assert _salt(again)[2] == pytest.approx(30.0)


def test_a_file_rewritten_in_place_is_trusted_until_verified(archive, tmp_path, later):
    """The trade-off the records make: an in-place rewrite does not touch the directory.

    The rewritten file keeps its name and inode, so only ``verify`` (or the weekly full
    check) sees it once its old record had settled.
    """
    first = _scan(archive, tmp_path)
    later()
    _scan(archive, tmp_path)
    hist = _hist(archive)
    before = os.stat(hist)
    path = hist / f"{MEMBER}.pop.h.0001-03.nc"
    inode = os.stat(path).st_ino
    pop_file(archive, "001", 3, fields={"SALT": np.full((1, 5, *SHAPE), 30.0)})
    assert os.stat(path).st_ino == inode  # rewritten in place, not replaced
    assert os.stat(hist).st_mtime_ns == before.st_mtime_ns  # the directory did not change
    later()
    trusted = _scan(archive, tmp_path)
    assert trusted.files_read == 0
    np.testing.assert_array_equal(_salt(trusted), _salt(first))  # the stale value, as documented
    verified = _scan(archive, tmp_path, verify=True)
    assert verified.files_read == 1
    assert _salt(verified)[2] == pytest.approx(30.0)
    later(24 * 8)  # a week on, every record has aged out
    assert _scan(archive, tmp_path).files_read == 0  # the verified values were cached


def test_a_file_still_being_written_when_recorded_is_checked_on_every_run(archive, tmp_path, later):
    """A file recorded within minutes of its last write is not trusted: a copy in progress
    grows in place, without touching its directory."""
    later(1 / 60)  # a minute after the files were written: the directories have settled
    _scan(archive, tmp_path)
    path = _hist(archive) / f"{MEMBER}.pop.h.0001-03.nc"
    before = os.stat(path.parent).st_mtime_ns
    pop_file(archive, "001", 3, fields={"SALT": np.full((1, 5, *SHAPE), 30.0)})
    assert os.stat(path.parent).st_mtime_ns == before
    later()
    again = _scan(archive, tmp_path)
    assert again.files_read == 1 and _salt(again)[2] == pytest.approx(30.0)


def test_a_directory_changed_just_before_a_scan_is_checked_again(
    archive, tmp_path, later, monkeypatch
):
    """Some file systems keep whole seconds: a change in the second of the scan would
    leave the directory's mtime equal, so its record is not trusted next time."""
    for path in archive.rglob("*.nc"):  # old, settled files in directories just changed
        os.utime(path, ns=(0, time.time_ns() - HOUR_NS))
    _scan(archive, tmp_path)
    later()
    counter = _StatCounter(monkeypatch)
    _scan(archive, tmp_path)
    assert sorted(set(counter.paths)) == sorted(str(p) for p in archive.rglob("*.nc"))
    counter.paths.clear()
    later()
    _scan(archive, tmp_path)
    assert counter.paths == []


def test_the_weekly_full_check_stats_every_file(archive, tmp_path, later, monkeypatch):
    _scan(archive, tmp_path)
    later()
    _scan(archive, tmp_path)
    later(24 * 8)
    counter = _StatCounter(monkeypatch)
    _scan(archive, tmp_path)
    assert sorted(set(counter.paths)) == sorted(str(p) for p in archive.rglob("*.nc"))


def test_parses_are_reused_only_under_the_same_patterns(archive, tmp_path):
    database = tmp_path / "records.sqlite"
    records = Listings(database)
    files, problems = discover([archive], listings=records)
    records.close()
    assert len(files) == 6 and not problems
    series_only = tuple(p for p in FILE_PATTERNS if p.layout == "tseries")
    records = Listings(database)
    with pytest.raises(InputFileError, match=r"6 \.nc files, none with a CESM name"):
        discover([archive], series_only, listings=records)  # history names no longer parse
    records.close()
    again = Listings(database)
    assert discover([archive], listings=again) == discover([archive])
    again.close()
