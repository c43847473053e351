"""Columnar features of a series of files: what the cache stores and the table is built from.

A nightly rescan touches every file of an ensemble although only a few are new. Holding
each file's features as nested dicts made every cached file cost tens of microseconds to
decode and as much again to assemble, so a rescan grew with the whole ensemble. A block
holds all files of one ``(directory, case, model, stream)`` as flat arrays instead: the
cost of a rescan follows the number of blocks and of new files, not of old ones.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ensembles.extract import FileFeatures
from ensembles.filenames import COMPONENT_OF_MODEL, CesmFile
from ensembles.timeaxis import month_number

GridSignature = tuple[str | int, ...]
"""The case's files a grid fallback may read and the signatures of those it did
(:func:`ensembles.features._grid_record`), flattened for JSON."""


class BlockKey(NamedTuple):
    """The files one block holds: one stream of one case in one directory."""

    directory: str
    case: str
    model: str
    stream: str

    @classmethod
    def of(cls, f: CesmFile) -> BlockKey:
        return cls(str(f.path.parent), f.case, f.model, f.stream)

    @property
    def component(self) -> str:
        return COMPONENT_OF_MODEL[self.model]


@dataclass
class Column:
    """Values of one (feature, source expression), one row per file and month, in file order."""

    file: np.ndarray  # int, index into FeatureBlock.paths
    month: np.ndarray  # int, month_number
    value: np.ndarray  # float, NaN where the file had a missing value

    def take(self, rows: np.ndarray) -> Column:
        return Column(self.file[rows], self.month[rows], self.value[rows])


@dataclass
class FeatureBlock:
    """Features of the files of one :class:`BlockKey`, files sorted by path.

    ``signatures`` holds each file's (size, mtime) when it was read, so that the cache can
    tell which files are unchanged; ``grid`` the same of the file that completed their grid
    (MOM6 static, CAM LANDFRAC), whose change invalidates every file; ``months`` lists
    every month each file covers (a file can give a month but no value for some feature).
    """

    key: BlockKey
    paths: list[str]
    signatures: list[tuple[int, int]]
    months: Column  # value unused (NaN): which months each file covers
    columns: dict[tuple[str, str], Column] = field(default_factory=dict)
    notes: list[tuple[int, str]] = field(default_factory=list)  # (file index, note)
    grid: GridSignature | None = None

    @classmethod
    def from_results(
        cls,
        key: BlockKey,
        results: Iterable[tuple[FileFeatures, tuple[int, int]]],
        grid: GridSignature | None = None,
    ) -> FeatureBlock:
        """A block from freshly read files (any order) and the signatures they were read at."""
        ordered = sorted(results, key=lambda pair: pair[0].path)
        rows: dict[tuple[str, str], tuple[list, list, list]] = {}
        file_of_month: list[int] = []
        months: list[int] = []
        notes = []
        for i, (result, _) in enumerate(ordered):
            numbers = [month_number(m) for m in result.months]
            file_of_month.extend([i] * len(numbers))
            months.extend(numbers)
            notes.extend((i, note) for note in result.notes)
            for name, by_expression in result.values.items():
                for expression, values in by_expression.items():
                    files, column_months, column_values = rows.setdefault(
                        (name, expression), ([], [], [])
                    )
                    files.extend([i] * len(values))
                    column_months.extend(numbers)
                    column_values.extend(values)
        return cls(
            key=key,
            paths=[result.path for result, _ in ordered],
            signatures=[tuple(signature) for _, signature in ordered],
            months=_column(file_of_month, months, [None] * len(months)),
            columns={name: _column(*lists) for name, lists in rows.items()},
            notes=notes,
            grid=grid,
        )

    def subset(self, keep: Sequence[int]) -> FeatureBlock:
        """The block of the files at ``keep`` (sorted indices), renumbered."""
        renumber = np.full(len(self.paths), -1)
        renumber[list(keep)] = np.arange(len(keep))

        def select(column: Column) -> Column:
            kept = column.take(renumber[column.file] >= 0)
            kept.file = renumber[kept.file]
            return kept

        return FeatureBlock(
            key=self.key,
            paths=[self.paths[i] for i in keep],
            signatures=[self.signatures[i] for i in keep],
            months=select(self.months),
            columns={  # a feature only the dropped files gave is gone, not empty
                name: kept
                for name, column in self.columns.items()
                if len((kept := select(column)).file)
            },
            notes=[(int(renumber[i]), note) for i, note in self.notes if renumber[i] >= 0],
            grid=self.grid,
        )

    def merged(self, other: FeatureBlock) -> FeatureBlock:
        """This block and another of the same key (different files), files sorted by path."""
        paths = self.paths + other.paths
        order = sorted(range(len(paths)), key=paths.__getitem__)
        position = np.empty(len(paths), dtype=np.int64)
        position[order] = np.arange(len(paths))
        shift = len(self.paths)

        def join(a: Column | None, b: Column | None) -> Column:
            parts = [
                Column(position[c.file + offset], c.month, c.value)
                for c, offset in ((a, 0), (b, shift))
                if c is not None
            ]
            file = np.concatenate([p.file for p in parts])
            rows = np.argsort(file, kind="stable")  # a file's rows keep their month order
            return Column(
                file[rows],
                np.concatenate([p.month for p in parts])[rows],
                np.concatenate([p.value for p in parts])[rows],
            )

        signatures = self.signatures + other.signatures
        return FeatureBlock(
            key=self.key,
            paths=[paths[i] for i in order],
            signatures=[signatures[i] for i in order],
            months=join(self.months, other.months),
            columns={
                name: join(self.columns.get(name), other.columns.get(name))
                for name in {**self.columns, **other.columns}
            },
            notes=sorted(
                [(int(position[i]), n) for i, n in self.notes]
                + [(int(position[i + shift]), n) for i, n in other.notes]
            ),
            grid=other.grid,  # the newer files were read with the grid as it is now
        )

    def to_json(self) -> str:
        """JSON text; arrays as base64 of little-endian numbers (no pickle, fast to decode)."""
        return json.dumps(
            {
                "paths": self.paths,
                "signatures": self.signatures,
                "months": _encode(self.months),
                "columns": [[*name, *_encode(c)] for name, c in self.columns.items()],
                "notes": self.notes,
                "grid": self.grid,
            }
        )

    @classmethod
    def from_json(cls, key: BlockKey, text: str) -> FeatureBlock:
        record = json.loads(text)
        return cls(
            key=key,
            paths=record["paths"],
            signatures=[tuple(s) for s in record["signatures"]],
            months=_decode(*record["months"]),
            columns={(name, expr): _decode(*arrays) for name, expr, *arrays in record["columns"]},
            notes=[(i, note) for i, note in record["notes"]],
            grid=tuple(record["grid"]) if record["grid"] else None,
        )

    @property
    def directory(self) -> Path:
        return Path(self.key.directory)


def _column(files: list[int], months: list[int], values: list[float | None]) -> Column:
    return Column(
        np.array(files, dtype=np.int64),
        np.array(months, dtype=np.int64),
        np.array(values, dtype=float),  # None becomes NaN
    )


_TYPES = ("<i4", "<i4", "<f8")  # file, month, value


def _encode(column: Column) -> list[str]:
    arrays = (column.file, column.month, column.value)
    return [
        base64.b64encode(np.ascontiguousarray(a, dtype=t).tobytes()).decode("ascii")
        for a, t in zip(arrays, _TYPES, strict=True)
    ]


def _decode(file: str, month: str, value: str) -> Column:
    def array(text: str, dtype: str) -> np.ndarray:
        return np.frombuffer(base64.b64decode(text), dtype=dtype)

    return Column(
        array(file, "<i4").astype(np.int64),
        array(month, "<i4").astype(np.int64),
        array(value, "<f8").astype(float),  # a writable copy in native order
    )
