"""Per-file feature cache in SQLite, JSON payloads only (never pickle).

A file's features are reused only while its path, size and modification time are
unchanged *and* the feature definitions (registry, regions, esmwatch version) hash to the
same value, so a nightly scan reads only new or changed files.  Failed reads are never
stored: a half-written file is read again next time.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from ensembles.extract import FileFeatures

_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_features (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    definitions TEXT NOT NULL,
    payload TEXT NOT NULL
)
"""


def file_signature(path: str | Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


class FeatureCache:
    """Cache of :class:`FileFeatures` keyed by (path, size, mtime) and a definitions hash."""

    def __init__(self, directory: str | Path, definitions: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(directory) / "features.sqlite"
        self.definitions = definitions
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def get_many(self, paths: Iterable[str]) -> dict[str, FileFeatures]:
        """Cached features of every path whose signature still matches."""
        hits: dict[str, FileFeatures] = {}
        for path in paths:
            row = self._db.execute(
                "SELECT size, mtime_ns, definitions, payload FROM file_features WHERE path = ?",
                (path,),
            ).fetchone()
            if row is None or row[2] != self.definitions:
                continue
            try:
                if (row[0], row[1]) != file_signature(path):
                    continue
            except OSError:
                continue
            hits[path] = FileFeatures(**json.loads(row[3]))
        return hits

    def put_many(self, results: Iterable[tuple[FileFeatures, tuple[int, int]]]) -> None:
        """Store results with the signature each file had *before* it was read."""
        rows = [
            (result.path, size, mtime_ns, self.definitions, json.dumps(asdict(result)))
            for result, (size, mtime_ns) in results
        ]
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO file_features VALUES (?, ?, ?, ?, ?)", rows
            )

    def close(self) -> None:
        self._db.close()
