"""What each data directory held at the last scan: a warm rescan stats directories, not files.

Why: a rerun with nothing new used to parse every file name and ``stat`` every cached
file to learn that nothing had changed, so its cost grew with the whole archive (tens of
thousands of files) rather than with what was new.  Here the feature cache's database
(table ``dir_listings``, one JSON row per directory, never pickle) remembers, for each
directory discovery found files in, what each file name parsed to and each file's size
and mtime, with the directory's own inode, mtime and ctime.  A rerun still lists every
directory (``os.scandir`` is cheap: no ``stat`` per entry), so new and deleted files are
always seen; what it skips is the parsing, and, in a directory whose inode, mtime and
ctime are unchanged, the ``stat`` of each file.

What this relies on, and what it cannot see (the trade-offs):

- Creating, deleting or renaming an entry changes its directory's mtime and ctime, so a
  file replaced by a new one (written elsewhere and renamed over, as CESM's archiver,
  ``cp`` to a temporary name, ``rsync`` and NCO's ``-O`` do) puts every file of that
  directory through a ``stat`` again.  The ctime also catches tools that restore an old
  mtime on the directory (``rsync -a``, ``cp -p``, ``tar``): only the kernel sets it.
- Rewriting an existing file *in place* (appending, truncating, editing it under the same
  name) changes only that file's size and mtime, not its directory's: in an otherwise
  quiet directory, a rerun trusts the recorded size and mtime and misses it.  Three rules
  narrow this window:

  * a file whose mtime was less than :data:`SETTLE_NS` old when it was recorded (a copy or
    a write still going on) is not trusted: it is ``stat``-ed on every run until it has
    been quiet that long;
  * a directory checked less than :data:`RACY_NS` after it last changed is checked again
    next time (a change in the same clock tick leaves the mtime equal; some file systems
    keep whole seconds), and so is one whose record is older than :data:`MAX_AGE_NS`: every
    directory gets a full check at least once a week, the nightly scan included;
  * a file reached through a symbolic link is always ``stat``-ed (its target can change
    without its directory changing).

  ``verify=True`` (``esmwatch features --verify``) trusts no record and ``stat``-s every
  file, as a first scan does.
- Failed reads are never cached (see :mod:`ensembles.cache`): a file that was broken or
  half-written is read again on every run, whatever its directory says.
- Times are compared with this machine's clock; a file server whose clock runs far behind
  makes fresh files look settled sooner.
- What a name parses to is reused while the parser is the same: the accepted patterns and
  the source of :mod:`ensembles.filenames` are hashed into the key, so a new naming
  pattern re-parses every name once.
- Rows of directories that no longer exist stay behind, as the feature blocks of deleted
  runs do; they are never read again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path

from ensembles import __version__, filenames
from ensembles.errors import UnrecognisedFileName
from ensembles.filenames import CesmFile, FilePattern, parse_filename

log = logging.getLogger(__name__)

SETTLE_NS = 10 * 60 * 10**9
"""A file modified less than this long before it was recorded may still be being written."""

RACY_NS = 5 * 10**9
"""A directory checked this soon after it changed may have changed again in the same clock
tick (1 s on some file systems, plus clock skew): it is checked again next time."""

MAX_AGE_NS = 7 * 24 * 3600 * 10**9
"""Records older than this are not trusted: each directory is fully checked weekly."""

_clock = time.time_ns  # tests move it forward: files settle and directories age

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dir_listings (
    path TEXT PRIMARY KEY,
    payload TEXT NOT NULL
)
"""

_FIELDS = tuple(f.name for f in fields(CesmFile) if f.name != "path")
_FORMAT = 1  # of a stored record; records of another format are ignored


@dataclass
class _Directory:
    """One directory's record: as stored, then as this run found it.

    ``files`` maps a name to ``[size, mtime_ns, settled]``; ``parsed`` a name to the
    parsed fields (:data:`_FIELDS`) or the reason it was not recognised.  ``checked``
    says whether this run has compared the directory's identity with the record yet.
    """

    path: str
    stamp: tuple[int, int, int] | None = None  # inode, mtime_ns, ctime_ns of the directory
    checked_at: int = 0  # when the sizes and mtimes in ``files`` started being recorded
    files: dict[str, list] = field(default_factory=dict)
    parser: str | None = None
    parsed: dict[str, list | str] = field(default_factory=dict)
    checked: bool = False
    trusted: bool = False
    changed: bool = False
    seen: set[str] = field(default_factory=set)  # names parsed in this run

    @classmethod
    def from_json(cls, path: str, text: str | None) -> _Directory:
        """The stored record, or an empty one where none (of this format) is stored."""
        record = json.loads(text) if text is not None else {}
        if record.get("format") != _FORMAT:
            return cls(path)
        return cls(
            path,
            tuple(record["stamp"]) if record["stamp"] else None,
            record["checked_at"],
            record["files"],
            record["parser"],
            record["parsed"],
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": _FORMAT,
                "stamp": self.stamp,
                "checked_at": self.checked_at,
                "files": self.files,
                "parser": self.parser,
                "parsed": self.parsed,
            }
        )

    @cached_property
    def parent(self) -> Path:
        return Path(self.path)


def parser_key(patterns: Sequence[FilePattern]) -> str:
    """What a parse depends on: esmwatch's version, the patterns and the parser's code."""
    digest = hashlib.sha256(__version__.encode())
    for p in patterns:
        digest.update(repr((p.shape, p.regex.pattern, p.regex.flags, p.layout)).encode())
    with contextlib.suppress(OSError, TypeError):  # no source (frozen): version and patterns
        digest.update(Path(filenames.__file__).read_bytes())
    return digest.hexdigest()


class Listings:
    """Records of the directories of earlier scans, in the feature cache's database.

    :func:`~ensembles.filenames.discover` calls :meth:`parse` in place of
    :func:`~ensembles.filenames.parse_filename`; the feature cache asks :meth:`signature`
    for a file's size and mtime; :meth:`close` stores what changed.  Paths are the strings
    discovery built (directory, separator, name).

    Parameters
    ----------
    database
        The SQLite file (the feature cache's).
    verify
        Trust no record: ``stat`` every file, as a first scan does.
    """

    def __init__(self, database: str | Path, *, verify: bool = False) -> None:
        self._db = sqlite3.connect(database, timeout=60)  # other members' ingest jobs write
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self.verify = verify
        self._directories: dict[str, _Directory] = {}
        self._patterns: Sequence[FilePattern] | None = None
        self._parser = ""
        self._started = _clock()
        self.trusted = 0  # directories whose recorded sizes and mtimes were trusted
        self.checked = 0  # directories whose files were stat-ed again
        self.stats = 0  # files stat-ed

    def parse(self, path: str, patterns: Sequence[FilePattern]) -> CesmFile:
        """:func:`~ensembles.filenames.parse_filename` of a path, reusing earlier parses."""
        directory, _, name = path.rpartition(os.sep)
        record = self._directory(directory)
        if patterns is not self._patterns:
            self._patterns, self._parser = patterns, parser_key(patterns)
        if record.parser != self._parser:
            record.parser, record.parsed = self._parser, {}
        record.seen.add(name)
        known = record.parsed.get(name)
        if known is None:
            try:
                parsed = parse_filename(path, patterns)
            except UnrecognisedFileName as err:
                known = err.problem
            else:
                known = [getattr(parsed, f) for f in _FIELDS]
            record.parsed[name] = known
            record.changed = True
        if isinstance(known, str):
            raise UnrecognisedFileName(path, known)
        return CesmFile(record.parent / name, *known)

    def signature(self, path: str) -> tuple[int, int]:
        """A file's (size, mtime_ns): the recorded one where it can be trusted (see the
        module docstring), else a ``stat`` now.

        Raises
        ------
        OSError
            When the file had to be ``stat``-ed and is gone.
        """
        directory, _, name = path.rpartition(os.sep)
        record = self._directory(directory)
        if not record.checked:
            self._check(record)
        listed = record.files.get(name)
        if record.trusted and listed is not None and listed[2]:
            return listed[0], listed[1]
        self.stats += 1
        found = os.lstat(path)
        linked = stat.S_ISLNK(found.st_mode)
        if linked:
            found = os.stat(path)
        self._record(record, name, found.st_size, found.st_mtime_ns, _clock(), linked)
        return found.st_size, found.st_mtime_ns

    def observed(self, path: str, signature: tuple[int, int]) -> None:
        """Record the (size, mtime_ns) a file was just read at, so that the next run need
        not ``stat`` it; files reached through a link are left to :meth:`signature`."""
        directory, _, name = path.rpartition(os.sep)
        record = self._directory(directory)
        if not record.checked:
            self._check(record)
        if not os.path.islink(path):
            self._record(record, name, *signature, self._started, linked=False)

    @staticmethod
    def _record(
        record: _Directory, name: str, size: int, mtime: int, at: int, linked: bool
    ) -> None:
        """A file's size and mtime seen at ``at``: settled if it had been quiet long enough."""
        entry = [size, mtime, not linked and at - mtime >= SETTLE_NS]
        if entry != record.files.get(name):
            record.files[name] = entry
            record.changed = True

    def close(self) -> None:
        """Store the records this run changed, with only the names it found."""
        rows = []
        for record in self._directories.values():
            if record.seen and len(record.parsed) != len(record.seen):  # some names went
                record.parsed = {n: p for n, p in record.parsed.items() if n in record.seen}
                record.files = {n: f for n, f in record.files.items() if n in record.seen}
                record.changed = True
            if record.changed:
                rows.append((record.path, record.to_json()))
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO dir_listings VALUES (?, ?)", rows)
        self._db.close()
        log.info(
            "directories: %d trusted, %d checked (%d files stat-ed), %d records stored",
            self.trusted,
            self.checked,
            self.stats,
            len(rows),
        )

    def _directory(self, path: str) -> _Directory:
        record = self._directories.get(path)
        if record is None:
            row = self._db.execute("SELECT payload FROM dir_listings WHERE path = ?", (path,))
            text = next(iter(row), (None,))[0]
            record = self._directories[path] = _Directory.from_json(path, text)
        return record

    def _check(self, record: _Directory) -> None:
        """Compare the directory with its record; start a new record if it cannot stand."""
        try:
            found = os.stat(record.path)
            stamp = (found.st_ino, found.st_mtime_ns, found.st_ctime_ns)
        except OSError:  # gone since discovery: nothing in it can be trusted
            stamp = None
        now = _clock()
        record.checked = True
        record.trusted = (
            not self.verify
            and stamp is not None
            and record.stamp == stamp
            and record.checked_at - max(stamp[1], stamp[2]) >= RACY_NS
            and now - record.checked_at < MAX_AGE_NS
        )
        if record.trusted:
            self.trusted += 1
            return
        self.checked += 1
        record.stamp, record.checked_at, record.files = stamp, now, {}
        record.changed = True
