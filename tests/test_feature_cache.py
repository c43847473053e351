"""The per-file cache: batched lookups return exactly the rows whose key still holds."""

from __future__ import annotations

import os

import pytest

import ensembles.cache as cache_module
from ensembles.cache import FeatureCache, file_signature
from ensembles.extract import FileFeatures


def _features(path: str, value: float) -> FileFeatures:
    return FileFeatures(
        path=path,
        months=["0001-01"],
        values={"so_upper_labsea": {"SALT": [value]}, "prect_labsea": {"PRECC": [None]}},
        notes=["a note"],
    )


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(7):
        path = tmp_path / f"f{i}.nc"
        path.write_bytes(b"x" * (i + 1))
        paths.append(str(path))
    return paths


def test_lookups_span_chunks_and_round_trip_payloads(tmp_path, files, monkeypatch):
    monkeypatch.setattr(cache_module, "_CHUNK", 3)  # 7 paths: three queries
    cache = FeatureCache(tmp_path / "cache", "defs-1")
    cache.put_many((_features(p, float(i)), file_signature(p)) for i, p in enumerate(files))
    hits = cache.get_many([*files, str(tmp_path / "never-stored.nc")])
    assert sorted(hits) == sorted(files)
    assert hits[files[4]] == _features(files[4], 4.0)
    cache.close()


def test_changed_files_and_other_definitions_miss(tmp_path, files):
    cache = FeatureCache(tmp_path / "cache", "defs-1")
    cache.put_many((_features(p, 1.0), file_signature(p)) for p in files)
    cache.close()
    os.utime(files[0], ns=(1, 1))  # new mtime
    with open(files[1], "ab") as grown:  # new size
        grown.write(b"more")
    os.remove(files[2])
    same, other = FeatureCache(tmp_path / "cache", "defs-1"), FeatureCache(tmp_path / "cache", "v2")
    assert sorted(same.get_many(files)) == sorted(files[3:])
    assert other.get_many(files) == {}
    same.close()
    other.close()
