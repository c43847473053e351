"""Perturbed-parameter ensembles: parameter tables, ``parameters.csv``, crosswalks, designs.

These are file contracts (docs/design.md "Ensembles and members"), so they live in the data
layer and every mismatch is an :class:`~ensembles.errors.InputFileError` naming the file:

- a parameter table ``*.csv`` has a column ``member`` (the case name, or its suffix such as
  ``001``, ``OAAT0004``, ``COUP0003``) and one column per parameter, in its own units;
- ``parameters.csv`` has ``parameter,default,min,max`` and optionally ``units,description``;
- a crosswalk ``*.csv`` has columns ``coupled,offline`` holding case names or suffixes.

Coupled and offline member numbers need not agree, so runs are paired through the crosswalk
or through their parameter values, never by number. A one-at-a-time (OAAT) design is
recognised from the table: every member equals the default member or differs from it in
exactly one parameter; anything else is a sampled design.

:func:`load_ppe_inputs` turns the files and the members the readers found into
:class:`PpeInputs`, the one object the sensitivity detector needs besides the features.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ensembles.errors import ConfigurationError, InputFileError
from ensembles.filenames import split_case

log = logging.getLogger(__name__)

Setup = Literal["coupled", "offline"]
SETUPS: tuple[Setup, Setup] = ("coupled", "offline")
Design = Literal["oaat", "sampled"]
RTOL = 1e-9
"""Relative tolerance for "the same parameter value" (values are written with ``repr``)."""

DEFAULT_FILES = {"params": "coupled_params.csv", "offline_params": "offline_params.csv",
                 "parameters": "parameters.csv", "crosswalk": "crosswalk.csv"}
"""File names the synthetic generator writes beside ``coupled/`` and ``offline/``."""


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter's default and range (from ``parameters.csv`` or the tables)."""

    name: str
    low: float
    high: float
    default: float | None = None
    units: str = ""
    description: str = ""
    source: str = "parameters.csv"


@dataclass(frozen=True)
class SetupDesign:
    """The parameter values of one setup's members and the design they form.

    Attributes
    ----------
    setup
        ``coupled`` or ``offline``.
    values
        Index = case names (as the readers name members), columns = parameters.
    design
        ``oaat`` or ``sampled``.
    default
        The default parameter vector (OAAT, or from ``parameters.csv``); None if unknown.
    replicates
        Members whose parameters all equal the default (noise estimate of an OAAT design).
    perturbed
        OAAT only: parameter -> members that differ from the default in that parameter.
    source
        Where the values came from (the table, or the other setup's table via the crosswalk).
    """

    setup: Setup
    values: pd.DataFrame
    design: Design
    default: pd.Series | None
    replicates: list[str]
    perturbed: dict[str, list[str]]
    source: str


@dataclass
class PpeInputs:
    """Everything the sensitivity analysis needs about parameters and pairing."""

    parameters: dict[str, ParameterSpec]
    setups: dict[str, SetupDesign]
    pairs: list[tuple[str, str]]
    pairing: str
    files: dict[str, str | None]
    notes: list[str] = field(default_factory=list)

    @property
    def design(self) -> Design:
        return self.setups["coupled"].design

    @property
    def names(self) -> list[str]:
        return list(self.parameters)


# --- readers -------------------------------------------------------------------------------
def _read_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """A CSV as strings with the required columns, or an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        frame = pd.read_csv(path, dtype=str, skipinitialspace=True, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"not a readable CSV file: {err}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputFileError(path, f"missing column(s) {', '.join(missing)}; found "
                                   f"{', '.join(frame.columns) or 'none'}")
    if frame.empty:
        raise InputFileError(path, "no rows")
    return frame.apply(lambda col: col.str.strip())


def _numbers(frame: pd.DataFrame, columns: Sequence[str], path: Path, label: str) -> pd.DataFrame:
    """Columns as floats; the first bad cell is named (row label and column)."""
    out = {}
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = frame.index[int(np.flatnonzero(bad.to_numpy())[0])]
            raise InputFileError(path, f"{label} {row!r}, column {column!r}: "
                                       f"{frame.at[row, column]!r} is not a finite number")
        out[column] = values.astype(float)
    return pd.DataFrame(out, index=frame.index)


def read_parameter_table(path: str | Path) -> pd.DataFrame:
    """A parameter table: index = member keys as written, one float column per parameter."""
    path = Path(path)
    frame = _read_csv(path, ["member"])
    if frame["member"].isna().any() or (frame["member"] == "").any():
        raise InputFileError(path, "a row has an empty member")
    duplicated = sorted(set(frame["member"][frame["member"].duplicated()]))
    if duplicated:
        raise InputFileError(path, f"member(s) listed twice: {', '.join(duplicated)}")
    names = [c for c in frame.columns if c != "member"]
    if not names:
        raise InputFileError(path, "no parameter columns besides 'member'")
    frame = frame.set_index("member")
    return _numbers(frame, names, path, "member")


def read_parameters(path: str | Path) -> dict[str, ParameterSpec]:
    """``parameters.csv``: default and range of each parameter, min < max, default inside."""
    path = Path(path)
    frame = _read_csv(path, ["parameter", "default", "min", "max"]).set_index("parameter")
    if frame.index.duplicated().any():
        twice = sorted(set(frame.index[frame.index.duplicated()]))
        raise InputFileError(path, f"parameter(s) listed twice: {', '.join(twice)}")
    numbers = _numbers(frame, ["default", "min", "max"], path, "parameter")
    specs = {}
    for name, row in numbers.iterrows():
        if not row["min"] < row["max"] or not row["min"] <= row["default"] <= row["max"]:
            raise InputFileError(path, f"parameter {name!r}: need min < max and min <= default "
                                       f"<= max, got {row['default']}, {row['min']}, {row['max']}")
        text = {key: str(frame.at[name, key]) if key in frame and pd.notna(frame.at[name, key])
                else "" for key in ("units", "description")}
        specs[str(name)] = ParameterSpec(str(name), float(row["min"]), float(row["max"]),
                                         float(row["default"]), text["units"],
                                         text["description"], str(path))
    return specs


def read_crosswalk(path: str | Path) -> list[tuple[str, str]]:
    """``(coupled, offline)`` keys; a row with an empty cell is a missing pair (an error)."""
    path = Path(path)
    frame = _read_csv(path, ["coupled", "offline"])
    incomplete = frame[frame["coupled"].isna() | frame["offline"].isna()
                       | (frame["coupled"] == "") | (frame["offline"] == "")]
    if len(incomplete):
        shown = "; ".join(f"line {i + 2}: coupled={r.coupled!r}, offline={r.offline!r}"
                          for i, r in incomplete.head(5).iterrows())
        raise InputFileError(path, f"{len(incomplete)} row(s) with a missing pair ({shown})")
    for column in ("coupled", "offline"):
        twice = sorted(set(frame[column][frame[column].duplicated()]))
        if twice:
            raise InputFileError(path, f"{column} member(s) paired twice: {', '.join(twice)}")
    return list(zip(frame["coupled"], frame["offline"], strict=True))


# --- matching keys to cases ----------------------------------------------------------------
def match_members(keys: Iterable[str], cases: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Map table keys to case names: the full name, the member id, or a ``.``-suffix.

    Returns
    -------
    matched, unmatched
        ``{key: case}`` and the keys that name no case. A key naming several cases is an
        error for the caller to report, so it is raised here as a ``ConfigurationError``.
    """
    by_name = set(cases)
    by_id: dict[str, list[str]] = {}
    for case in cases:
        by_id.setdefault(split_case(case)[1], []).append(case)
    matched, unmatched = {}, []
    for key in keys:
        if key in by_name:
            matched[key] = key
            continue
        found = by_id.get(key) or [c for c in cases if c.endswith("." + key)]
        if len(found) > 1:
            raise ConfigurationError(f"member {key!r} matches several cases: "
                                     f"{', '.join(sorted(found)[:4])}")
        if found:
            matched[key] = found[0]
        else:
            unmatched.append(key)
    return matched, unmatched


def _shown(items: Sequence[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" (and {len(items) - n} more)" if len(items) > n else "")


# --- designs -------------------------------------------------------------------------------
def _mode_row(values: pd.DataFrame) -> pd.Series:
    """The most frequent parameter vector (the default member of an OAAT table)."""
    counts = values.round(12).value_counts(sort=True)
    return pd.Series(counts.index[0], index=values.columns, dtype=float)


def recognise_design(setup: Setup, values: pd.DataFrame, source: str,
                     defaults: Mapping[str, ParameterSpec] | None = None) -> SetupDesign:
    """OAAT if every member equals the default or differs from it in exactly one parameter.

    The default is ``parameters.csv``'s where given (a default member is then optional), else
    the most frequent row (the default member and its replicates).
    """
    default = None
    if defaults and all(defaults[n].default is not None for n in values.columns):
        default = pd.Series({n: defaults[n].default for n in values.columns}, dtype=float)
    candidates = [d for d in (default, _mode_row(values)) if d is not None]
    for candidate in candidates:
        differs = ~np.isclose(values.to_numpy(), candidate.to_numpy()[None, :], rtol=RTOL,
                              atol=0.0)
        n_diff = differs.sum(axis=1)
        if (n_diff <= 1).all() and (n_diff == 1).any():
            perturbed = {name: [str(m) for m in values.index[differs[:, j] & (n_diff == 1)]]
                         for j, name in enumerate(values.columns)}
            replicates = [str(m) for m in values.index[n_diff == 0]]
            return SetupDesign(setup, values, "oaat", candidate, replicates, perturbed, source)
    return SetupDesign(setup, values, "sampled", default, [], {}, source)


# --- assembling both setups ----------------------------------------------------------------
def _split_table(table: pd.DataFrame, path: Path, members: Mapping[str, Sequence[str]],
                 order: Sequence[Setup]) -> dict[str, pd.DataFrame]:
    """Rows of ``table`` per setup, re-indexed by case name; unknown rows are an error.

    Rows are matched to the setups in ``order`` (a suffix such as ``001`` may exist in both
    setups: the first setup in ``order`` claims it), so one table may also list both setups.
    """
    parts: dict[str, pd.DataFrame] = {}
    leftover = list(table.index)
    for setup in order:
        try:
            matched, leftover = match_members(leftover, members[setup])
        except ConfigurationError as err:
            raise InputFileError(path, str(err)) from None
        if matched:
            rows = table.loc[list(matched)]
            rows.index = pd.Index([matched[k] for k in matched], name="member")
            parts[setup] = rows
    if leftover and not parts:
        raise InputFileError(path, f"no row names a {' or '.join(order)} member under the roots "
                                   f"(rows such as {_shown(leftover, 3)}; members such as "
                                   f"{_shown(list(members[order[0]]), 2)})")
    if leftover:
        raise InputFileError(path, f"row(s) for member(s) not found under the "
                                   f"{' or '.join(order)} roots: {_shown(leftover)}")
    return parts


def _check_covered(setup: str, values: pd.DataFrame, cases: Sequence[str], path: str) -> None:
    missing = sorted(set(cases) - set(values.index))
    if missing:
        raise InputFileError(path, f"no parameter row for {len(missing)} {setup} member(s) "
                                   f"found under the roots: {_shown(missing)}")


def _crosswalk_pairs(path: Path, members: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """Crosswalk rows as ``(coupled case, offline case)``; every coupled member needs a pair."""
    rows = read_crosswalk(path)
    resolved: dict[str, dict[str, str]] = {}
    for setup, column in zip(SETUPS, (0, 1), strict=True):
        try:
            matched, unmatched = match_members([r[column] for r in rows], members[setup])
        except ConfigurationError as err:
            raise InputFileError(path, str(err)) from None
        if unmatched:
            raise InputFileError(path, f"{setup} member(s) not found under the {setup} roots: "
                                       f"{_shown(unmatched)}")
        resolved[setup] = matched
    pairs = [(resolved["coupled"][c], resolved["offline"][o]) for c, o in rows]
    unpaired = sorted(set(members["coupled"]) - {c for c, _ in pairs})
    if unpaired:
        raise InputFileError(path, f"missing pairs: no offline twin for {len(unpaired)} coupled "
                                   f"member(s): {_shown(unpaired)}")
    return pairs


def _via_crosswalk(target: Setup, known: pd.DataFrame, pairs: list[tuple[str, str]],
                   cases: Sequence[str], path: Path) -> pd.DataFrame:
    """Parameter values of ``target``'s members copied from their twins."""
    twin = {(c if target == "coupled" else o): (o if target == "coupled" else c)
            for c, o in pairs}
    missing = sorted(set(cases) - set(twin))
    if missing:
        other = "offline" if target == "coupled" else "coupled"
        raise InputFileError(path, f"missing pairs: no {other} twin for {target} member(s) "
                                   f"{_shown(missing)}, so their parameters are unknown")
    values = known.loc[[twin[c] for c in cases]]
    values.index = pd.Index(list(cases), name="member")
    return values


def _check_pairs(values: dict[str, pd.DataFrame], pairs: list[tuple[str, str]], path: Path
                 ) -> None:
    """Paired runs must share their parameter values."""
    a = values["coupled"].loc[[c for c, _ in pairs]].to_numpy()
    b = values["offline"].loc[[o for _, o in pairs]].to_numpy()
    bad = ~np.isclose(a, b, rtol=1e-6, atol=0.0).all(axis=1)
    if bad.any():
        shown = [f"{c} / {o}" for (c, o), flag in zip(pairs, bad, strict=True) if flag]
        raise InputFileError(path, f"{int(bad.sum())} pair(s) whose parameter values differ "
                                   f"between the tables: {_shown(shown, 3)}")


def _pairs_by_value(values: dict[str, pd.DataFrame]) -> tuple[list[tuple[str, str]], list[str]]:
    """Pair runs with identical parameter vectors (first unused twin), report the rest."""
    offline = values["offline"]
    keys = {m: tuple(np.round(offline.loc[m].to_numpy(), 12)) for m in offline.index}
    free: dict[tuple, list[str]] = {}
    for member, key in keys.items():
        free.setdefault(key, []).append(member)
    pairs, lonely = [], []
    for member, row in values["coupled"].iterrows():
        twins = free.get(tuple(np.round(row.to_numpy(), 12)), [])
        if twins:
            pairs.append((str(member), twins.pop(0)))
        else:
            lonely.append(str(member))
    return pairs, lonely


def _resolve_specs(values: dict[str, pd.DataFrame], specs: dict[str, ParameterSpec] | None,
                   path: Path | None, notes: list[str]) -> dict[str, ParameterSpec]:
    names = list(values["coupled"].columns)
    if specs is None:
        both = pd.concat(list(values.values()))
        notes.append("no parameters.csv: each parameter's range is the range of the tables' "
                     "values")
        return {n: ParameterSpec(n, float(both[n].min()), float(both[n].max()), source="tables")
                for n in names}
    missing = [n for n in names if n not in specs]
    if missing:
        raise InputFileError(path, f"no row for parameter(s) {', '.join(missing)} of the "
                                   "parameter table")
    for name in names:
        spec = specs[name]
        slack = 1e-9 * (spec.high - spec.low)
        for setup, frame in values.items():
            low, high = float(frame[name].min()), float(frame[name].max())
            if low < spec.low - slack or high > spec.high + slack:
                notes.append(f"{setup} values of {name} ({low:g} to {high:g}) lie outside the "
                             f"range of parameters.csv ({spec.low:g} to {spec.high:g})")
    return {n: specs[n] for n in names}


def load_ppe_inputs(members: Mapping[str, Sequence[str]], params: str | Path | None,
                    offline_params: str | Path | None = None,
                    parameters: str | Path | None = None,
                    crosswalk: str | Path | None = None) -> PpeInputs:
    """Parameter values of every coupled and offline member, their design and pairing.

    Parameters
    ----------
    members
        ``{"coupled": [case, ...], "offline": [...]}``: the members the readers found.
    params
        Parameter table of the coupled runs (or of both setups: rows are matched to either).
    offline_params
        Parameter table of the offline runs, when separate.
    parameters
        Optional ``parameters.csv`` (defaults and ranges).
    crosswalk
        Optional ``coupled,offline`` pairs. Required when one setup has no table: its values
        are then copied from its twins. With both tables, paired runs must agree.

    Raises
    ------
    InputFileError
        A table that does not match the members, a crosswalk with missing pairs, a bad file.
    ConfigurationError
        No table at all, or the two setups have different designs or parameters.
    """
    if params is None and offline_params is None:
        raise ConfigurationError("no parameter table: give the coupled (or offline) table")
    files = {"params": params, "offline_params": offline_params, "parameters": parameters,
             "crosswalk": crosswalk}
    files = {k: (str(v) if v is not None else None) for k, v in files.items()}
    notes: list[str] = []
    values: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    tables = [(Path(p), order) for p, order in ((params, SETUPS), (offline_params, ("offline",)))
              if p is not None]
    for path, order in tables:
        for setup, frame in _split_table(read_parameter_table(path), path, members,
                                         order).items():
            if setup in values:
                raise InputFileError(path, f"{setup} members are listed in two tables")
            values[setup], sources[setup] = frame, str(path)
    names = list(next(iter(values.values())).columns)
    for setup, frame in values.items():
        if set(frame.columns) != set(names):
            raise ConfigurationError(f"the tables name different parameters: "
                                     f"{sources[setup]} has {', '.join(frame.columns)}, "
                                     f"expected {', '.join(names)}")
        _check_covered(setup, frame, members[setup], sources[setup])
        values[setup] = frame.loc[list(members[setup]), names]
    pairs: list[tuple[str, str]] = []
    pairing = "none"
    if crosswalk is not None:
        pairs = _crosswalk_pairs(Path(crosswalk), members)
        pairing = "crosswalk"
        for setup in SETUPS:
            if setup not in values:
                other = "offline" if setup == "coupled" else "coupled"
                values[setup] = _via_crosswalk(setup, values[other], pairs, members[setup],
                                               Path(crosswalk))
                sources[setup] = f"{sources[other]} via {crosswalk}"
    for setup in SETUPS:
        if setup not in values:
            raise ConfigurationError(f"the {setup} members have no parameters: give their table "
                                     "or a crosswalk pairing them with the other setup")
    if crosswalk is not None:
        _check_pairs(values, pairs, Path(crosswalk))
    if crosswalk is None:
        pairs, lonely = _pairs_by_value(values)
        pairing = "parameter values"
        if lonely:
            notes.append(f"{len(lonely)} coupled member(s) have no offline run with the same "
                         f"parameter values: {_shown(lonely, 4)}")
    spec_path = Path(parameters) if parameters is not None else None
    specs = _resolve_specs(values, read_parameters(spec_path) if spec_path else None,
                           spec_path, notes)
    setups = {s: recognise_design(s, values[s], sources[s], specs if spec_path else None)
              for s in SETUPS}
    if setups["coupled"].design != setups["offline"].design:
        raise ConfigurationError(f"the coupled runs form a {setups['coupled'].design} design but "
                                 f"the offline runs a {setups['offline'].design} one; compare "
                                 "like with like")
    log.info("PPE inputs: %s design, %d coupled and %d offline members, paired by %s",
             setups["coupled"].design, len(values["coupled"]), len(values["offline"]), pairing)
    return PpeInputs(specs, setups, pairs, pairing, files, notes)


def find_default_files(coupled_roots: Sequence[str | Path], offline_roots: Sequence[str | Path]
                       ) -> dict[str, Path]:
    """Tables the synthetic generator (or a user) put beside the setups' roots.

    Looks in each root and in its parent for :data:`DEFAULT_FILES`: ``coupled_params.csv``
    near the coupled roots, ``offline_params.csv`` near the offline roots, ``parameters.csv``
    and ``crosswalk.csv`` near either. Returns the files found, keyed like the CLI options.
    """
    def near(roots: Sequence[str | Path]) -> list[Path]:
        dirs: list[Path] = []
        for root in roots:
            for d in (Path(root), Path(root).parent):
                if d not in dirs:
                    dirs.append(d)
        return dirs

    where = {"params": near(coupled_roots), "offline_params": near(offline_roots),
             "parameters": near([*coupled_roots, *offline_roots]),
             "crosswalk": near([*coupled_roots, *offline_roots])}
    found = {}
    for key, dirs in where.items():
        for d in dirs:
            if (d / DEFAULT_FILES[key]).is_file():
                found[key] = d / DEFAULT_FILES[key]
                break
    return found
