"""Feature cache in SQLite: one columnar block per stream of a case, JSON text (never pickle).

A file's features are reused only while its path, size and modification time are
unchanged *and* the feature definitions (registry, regions, esmwatch version) hash to the
same value, so a nightly scan reads only new or changed files (a file's size and mtime may
come from :mod:`ensembles.listing`'s record of an unchanged directory rather than a ``stat``).
Failed reads are never stored: a half-written file is read again next time.  One row per
block, not per file, keeps a rescan's lookups to a few dozen rows however long the runs are.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from ensembles.blocks import BlockKey, FeatureBlock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feature_blocks (
    key TEXT PRIMARY KEY,
    definitions TEXT NOT NULL,
    payload TEXT NOT NULL
)
"""


_CHUNK = 500  # keys per lookup query, well under SQLite's limit on bound parameters


def file_signature(path: str | Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


class FeatureCache:
    """Cache of :class:`FeatureBlock` by block key, valid for one definitions hash."""

    def __init__(self, directory: str | Path, definitions: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.path = Path(directory) / "features.sqlite"
        self.definitions = definitions
        self._db = sqlite3.connect(self.path, timeout=60)  # ingest jobs of other members write
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.execute("DROP TABLE IF EXISTS file_features")  # the per-file cache before 0.2

    def blocks(self, keys: Collection[BlockKey]) -> dict[BlockKey, FeatureBlock]:
        """The stored blocks of these keys; :func:`unchanged` tells which files still hold."""
        wanted = {json.dumps(key): key for key in keys}
        texts = list(wanted)
        found = {}
        for i in range(0, len(texts), _CHUNK):
            chunk = texts[i : i + _CHUNK]
            rows = self._db.execute(
                "SELECT key, payload FROM feature_blocks "
                f"WHERE definitions = ? AND key IN ({','.join('?' * len(chunk))})",
                (self.definitions, *chunk),
            )
            found.update({wanted[k]: FeatureBlock.from_json(wanted[k], p) for k, p in rows})
        return found

    def store(self, blocks: Iterable[FeatureBlock]) -> None:
        rows = [(json.dumps(b.key), self.definitions, b.to_json()) for b in blocks]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO feature_blocks VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        self._db.close()


def unchanged(
    block: FeatureBlock,
    current: Collection[str],
    signature_of: Callable[[str], tuple[int, int]] = file_signature,
) -> list[int]:
    """Indices of the block's files that are still there, at the signature they were read at.

    ``signature_of`` gives a file's (size, mtime) now: a ``stat``, or
    :meth:`ensembles.listing.Listings.signature`, which trusts an unchanged directory's
    listing instead.
    """
    keep = []
    for i, (path, signature) in enumerate(zip(block.paths, block.signatures, strict=True)):
        if path not in current:
            continue
        try:
            if signature_of(path) == signature:
                keep.append(i)
        except OSError:
            continue
    return keep
