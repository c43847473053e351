"""The feature cache: columnar blocks round-trip exactly, and only unchanged files are kept."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ensembles.cache as cache_module
from ensembles.blocks import BlockKey, FeatureBlock
from ensembles.cache import FeatureCache, file_signature, unchanged
from ensembles.extract import FileFeatures
from ensembles.features import build_features
from tests.cesm_files import write_mom6


def _features(path: str, value: float) -> FileFeatures:
    return FileFeatures(
        path=path,
        months=["0001-01", "0001-02"],
        values={
            "so_upper_labsea": {"SALT": [value, value + 1]},
            "prect_labsea": {"PRECC": [None, 2.0]},
        },
        notes=[f"a note on {os.path.basename(path)}"],
    )


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(7):
        path = tmp_path / f"f{i}.nc"
        path.write_bytes(b"x" * (i + 1))
        paths.append(str(path))
    return paths


KEY = BlockKey("/d", "case", "mom6", "h")


def _block(paths: list[str], key: BlockKey = KEY) -> FeatureBlock:
    return FeatureBlock.from_results(
        key, [(_features(p, float(i)), file_signature(p)) for i, p in enumerate(paths)]
    )


def _same(a: FeatureBlock, b: FeatureBlock) -> None:
    assert (a.key, a.paths, a.signatures, a.notes) == (b.key, b.paths, b.signatures, b.notes)
    assert sorted(a.columns) == sorted(b.columns)
    for name in a.columns:
        for field in ("file", "month", "value"):
            np.testing.assert_array_equal(
                getattr(a.columns[name], field), getattr(b.columns[name], field)
            )
    np.testing.assert_array_equal(a.months.month, b.months.month)
    np.testing.assert_array_equal(a.months.file, b.months.file)


def test_blocks_round_trip_across_lookup_chunks(tmp_path, files, monkeypatch):
    monkeypatch.setattr(cache_module, "_CHUNK", 2)  # three blocks: two queries
    blocks = [_block(files[i : i + 3], BlockKey("/d", f"case{i}", "cam", "h0a")) for i in (0, 2, 4)]
    cache = FeatureCache(tmp_path / "cache", "defs-1")
    cache.store(blocks)
    found = cache.blocks([b.key for b in blocks] + [BlockKey("/d", "never", "cam", "h0a")])
    assert sorted(found) == sorted(b.key for b in blocks)
    for block in blocks:
        _same(found[block.key], block)
    # None read from a file stays a missing value
    assert np.isnan(found[blocks[0].key].columns[("prect_labsea", "PRECC")].value[0])
    cache.close()


def test_changed_files_and_other_definitions_miss(tmp_path, files):
    cache = FeatureCache(tmp_path / "cache", "defs-1")
    block = _block(files)
    cache.store([block])
    cache.close()
    os.utime(files[0], ns=(1, 1))  # new mtime
    with open(files[1], "ab") as grown:  # new size
        grown.write(b"more")
    os.remove(files[2])
    same, other = FeatureCache(tmp_path / "cache", "defs-1"), FeatureCache(tmp_path / "cache", "v2")
    stored = same.blocks([block.key])[block.key]
    assert unchanged(stored, set(files)) == [3, 4, 5, 6]
    assert unchanged(stored, set(files[:5])) == [3, 4]  # a file no longer discovered drops out
    assert other.blocks([block.key]) == {}
    same.close()
    other.close()


def test_subset_then_merge_equals_reading_everything_at_once(files):
    whole = _block(files)
    old = whole.subset([0, 2, 3, 6])
    assert old.paths == [files[i] for i in (0, 2, 3, 6)]
    assert old.notes == [(i, f"a note on f{n}.nc") for i, n in enumerate((0, 2, 3, 6))]
    new = FeatureBlock.from_results(
        whole.key, [(_features(files[i], float(i)), file_signature(files[i])) for i in (5, 1, 4)]
    )
    _same(old.merged(new), whole)


def test_a_feature_only_dropped_files_gave_leaves_the_block(files):
    extra = _features(files[0], 0.0)
    extra.values["psl_labsea"] = {"PSL": [1.0, 2.0]}
    block = FeatureBlock.from_results(
        KEY,
        [(extra, file_signature(files[0])), (_features(files[1], 1.0), file_signature(files[1]))],
    )
    assert ("psl_labsea", "PSL") not in block.subset([1]).columns


def test_a_changed_grid_file_invalidates_what_was_reduced_over_it(tmp_path):
    case = "b.e30.B1850.t232.grid.001"
    hist = tmp_path / "data" / case / "ocn" / "hist"
    hist.mkdir(parents=True)
    static = hist / f"{case}.mom6.h.static.nc"
    lat_e, lon_e = np.arange(50.0, 71.0, 1.0), np.arange(-70.0, -39.0, 1.0)
    so = np.full((1, 5, lat_e.size - 1, lon_e.size - 1), 34.9)
    for month in (1, 2):
        path = hist / f"{case}.mom6.h.z.0001-{month:02d}.nc"
        write_mom6(path, static, lat_e, lon_e, {"so": so}, months=(month,))

    def scan():
        return build_features(
            [tmp_path / "data"], cache_dir=tmp_path / "cache", scheduler="synchronous"
        )

    assert (scan().files_read, scan().files_read) == (2, 0)
    os.utime(static, ns=(1, 1))  # regridded, say: every value reduced over it is stale
    again = scan()
    assert (again.files_read, again.files_cached) == (2, 0)
    assert again.dataset["so_upper_labsea"].values == pytest.approx(np.full((1, 2), 34.9), rel=1e-6)
