"""Per-file feature cache in SQLite, JSON payloads only (never pickle).

A file's features are reused only while its path, size and modification time are
unchanged *and* the feature definitions (registry, regions, esmwatch version) hash to the
same value, so a nightly scan reads only new or changed files.  Failed reads are never
stored: a half-written file is read again next time.
"""

from __future__ import annotations

import gc
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


_CHUNK = 500  # paths per lookup query, well under SQLite's limit on bound parameters


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause cyclic garbage collection while many small, acyclic containers are built.

    Decoding the cached features of a whole ensemble makes millions of dicts and lists;
    each of the collections they trigger walks every live object, which doubled the time
    of a rescan.  Nothing made meanwhile holds a reference cycle, so nothing leaks.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
        """Cached features of every path whose signature still matches.

        Rows are fetched a chunk of paths per query: a rescan looks up every file of an
        ensemble, and one query per file would cost more than decoding the payloads.
        """
        hits: dict[str, FileFeatures] = {}
        wanted = list(paths)
        with gc_paused():
            for i in range(0, len(wanted), _CHUNK):
                hits.update(self._fetch(wanted[i : i + _CHUNK]))
        return hits

    def _fetch(self, chunk: list[str]) -> dict[str, FileFeatures]:
        """The cached features of one chunk of paths whose signature still matches."""
        hits = {}
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, payload FROM file_features "
            f"WHERE definitions = ? AND path IN ({','.join('?' * len(chunk))})",
            (self.definitions, *chunk),
        )
        for path, size, mtime_ns, payload in rows:
            try:
                if (size, mtime_ns) != file_signature(path):
                    continue
            except OSError:
                continue
            hits[path] = FileFeatures(**json.loads(payload))
        return hits

    def put_many(self, results: Iterable[tuple[FileFeatures, tuple[int, int]]]) -> None:
        """Store results with the signature each file had *before* it was read."""
        rows = [  # vars(), not asdict(): the payload is plain JSON data, no deep copy needed
            (result.path, size, mtime_ns, self.definitions, json.dumps(vars(result)))
            for result, (size, mtime_ns) in results
        ]
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO file_features VALUES (?, ?, ?, ?, ?)", rows
            )

    def close(self) -> None:
        self._db.close()
