"""The freeze database's parameter table and ``parameters.csv``: the PPE file contracts.

Both files are read by :mod:`ensembles.ppe` (same readers, same messages); this module adds
what the freeze analysis needs on top: every member found under the roots has a row, every
table column is a parameter of ``parameters.csv``, and every value lies inside its
``min``/``max`` (an emulator is only asked about the box its members span, and the safe
region and the what-if are stated in that box). Each mismatch is an
:class:`~ensembles.errors.InputFileError` naming the file and the members or columns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ensembles.errors import ConfigurationError, InputFileError
from ensembles.ppe import ParameterSpec, match_members, read_parameter_table, read_parameters

log = logging.getLogger(__name__)
SHOWN = 6


def _shown(items: Sequence[str]) -> str:
    extra = len(items) - SHOWN
    return ", ".join(items[:SHOWN]) + (f" (and {extra} more)" if extra > 0 else "")


@dataclass(frozen=True)
class ParameterInputs:
    """Parameter values of the members and the box they live in.

    Attributes
    ----------
    values
        Index = case names (as the readers name members), columns = parameters.
    specs
        Parameter -> range and default (from ``parameters.csv``, or the table's own range).
    files
        The files used (``table``, ``parameters``).
    notes
        What was assumed (no ``parameters.csv``, dropped constant columns).
    """

    values: pd.DataFrame
    specs: dict[str, ParameterSpec]
    files: dict[str, str | None]
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return list(self.values.columns)

    def scale(self, values: np.ndarray) -> np.ndarray:
        """Values to ``u = (value - min) / (max - min)`` (columns in :attr:`names` order)."""
        low, high = self.bounds()
        return (np.asarray(values, float) - low) / (high - low)

    def unscale(self, u: np.ndarray) -> np.ndarray:
        low, high = self.bounds()
        return low + np.asarray(u, float) * (high - low)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([self.specs[n].low for n in self.names]),
            np.array([self.specs[n].high for n in self.names]),
        )

    def scaled(self) -> np.ndarray:
        """Members' parameters in the unit box, ``(members, parameters)``."""
        return self.scale(self.values.to_numpy(dtype=float))

    def default_scaled(self) -> np.ndarray | None:
        """The default vector in the unit box, or None when a default is unknown."""
        defaults = [self.specs[n].default for n in self.names]
        if any(d is None for d in defaults):
            return None
        return self.scale(np.array(defaults, dtype=float))


def _match_rows(table: pd.DataFrame, cases: Sequence[str], path: Path) -> pd.DataFrame:
    """Rows re-indexed by case name; rows naming no member and members without a row fail."""
    try:
        matched, unmatched = match_members(list(table.index), cases)
    except ConfigurationError as err:
        raise InputFileError(path, str(err)) from None
    if unmatched:
        raise InputFileError(
            path, f"row(s) for member(s) not found under the roots: {_shown(unmatched)}"
        )
    missing = sorted(set(cases) - set(matched.values()))
    if missing:
        raise InputFileError(
            path,
            f"no parameter row for {len(missing)} member(s) found under "
            f"the roots: {_shown(missing)}",
        )
    rows = table.loc[list(matched)]
    rows.index = pd.Index([matched[k] for k in matched], name="member")
    return rows.loc[list(cases)]


def _check_against_specs(
    values: pd.DataFrame,
    specs: dict[str, ParameterSpec],
    table: Path,
    spec_path: Path,
    notes: list[str],
) -> None:
    unknown = [c for c in values.columns if c not in specs]
    if unknown:
        raise InputFileError(
            table,
            f"unknown parameter column(s) {_shown(unknown)}: not in "
            f"{spec_path.name} ({_shown(list(specs))})",
        )
    absent = [n for n in specs if n not in values.columns]
    if absent:
        notes.append(
            f"{spec_path.name} lists parameter(s) the table does not vary: {_shown(absent)}"
        )
    for name in values.columns:
        spec = specs[name]
        slack = 1e-9 * (spec.high - spec.low)
        outside = values.index[
            (values[name] < spec.low - slack) | (values[name] > spec.high + slack)
        ]
        if len(outside):
            shown = [f"{m} = {values.at[m, name]:g}" for m in outside]
            raise InputFileError(
                table,
                f"parameter {name!r} outside its range "
                f"[{spec.low:g}, {spec.high:g}] of {spec_path.name} "
                f"for {len(outside)} member(s): {_shown(shown)}",
            )


def load_parameter_inputs(
    cases: Sequence[str], table: str | Path, parameters: str | Path | None = None
) -> ParameterInputs:
    """Parameter values of every member found under the roots, checked against the box.

    Parameters
    ----------
    cases
        The members the readers found (case names).
    table
        ``member,<param>...``; member = case name, member id or ``.``-suffix.
    parameters
        Optional ``parameters.csv``. Without it each parameter's range is the range of the
        table's values and no default is known (the what-if then needs one).

    Raises
    ------
    InputFileError
        Members missing from the table, rows for unknown members, unknown columns, values
        outside ``min``/``max``, or any reader error of :mod:`ensembles.ppe`.
    """
    table_path = Path(table)
    values = _match_rows(read_parameter_table(table_path), cases, table_path)
    notes: list[str] = []
    if parameters is not None:
        spec_path = Path(parameters)
        specs = read_parameters(spec_path)
        _check_against_specs(values, specs, table_path, spec_path, notes)
        specs = {n: specs[n] for n in values.columns}
    else:
        notes.append(
            "no parameters.csv: each parameter's range is the range of the table's "
            "values and no default is known"
        )
        specs = {
            n: ParameterSpec(n, float(values[n].min()), float(values[n].max()), source="table")
            for n in values.columns
        }
    constant = [n for n, s in specs.items() if not s.high > s.low]
    if constant:
        notes.append(f"constant parameter(s) left out: {_shown(constant)}")
        values = values.drop(columns=constant)
        specs = {n: s for n, s in specs.items() if n not in constant}
    if values.shape[1] == 0:
        raise InputFileError(table_path, "no parameter varies between the members")
    files = {
        "table": str(table_path),
        "parameters": None if parameters is None else str(parameters),
    }
    log.info("parameter table: %d members x %d parameters", *values.shape)
    return ParameterInputs(values, specs, files, notes)
