"""An intake-esm compatible catalog of CESM output: an esmcat JSON beside a CSV file table.

The JSON follows the esmcat 0.1.0 layout that ``intake_esm/cat.py`` models, so a catalog
written here opens with ``intake_esm.esm_datastore``; it is modelled with small strict
pydantic models so a malformed catalog fails on load with a message, not later in a
groupby. Each row is one file; history files list the time-varying variables read from
their header, so a truncated or foreign file is found here, once, instead of during
feature extraction.
"""

from __future__ import annotations

import ast
import datetime
import enum
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import netCDF4
import pandas as pd
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ensembles.errors import ConfigurationError, InputFileError
from ensembles.filenames import CesmFile, discover

logger = logging.getLogger(__name__)

CATALOG_COLUMNS = [
    "path",
    "case",
    "member_id",
    "ensemble",
    "component",
    "model",
    "stream",
    "frequency",
    "layout",
    "start_time",
    "end_time",
    "variable",
]
ESMCAT_VERSION: Literal["0.1.0"] = "0.1.0"
PATH_COLUMN = "path"
VARIABLE_COLUMN = "variable"
GROUPBY_ATTRS = ["case", "component", "model", "stream", "frequency", "layout"]
"""One intake-esm dataset per member, stream and cadence; history and time-series files
of the same stream stay apart because they hold the same variables twice."""
_TIME_BOUNDS = frozenset({"time_bnds", "time_bounds", "time_bound"})


class AggregationType(enum.StrEnum):
    """How intake-esm combines the files of one group."""

    join_new = "join_new"
    join_existing = "join_existing"
    union = "union"


class _Strict(BaseModel):
    """Base of the esmcat models: no unknown keys, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Attribute(_Strict):
    """A searchable catalog column."""

    column_name: str
    vocabulary: str = ""


class Assets(_Strict):
    """Which column holds the file path, and the file format."""

    column_name: str
    format: Literal["netcdf"] = "netcdf"


class Aggregation(_Strict):
    """One aggregation step applied by intake-esm when loading a group."""

    type: AggregationType
    attribute_name: str
    options: dict[str, str] = {}


class AggregationControl(_Strict):
    """Grouping of rows into datasets and the steps that combine each group."""

    variable_column_name: str
    groupby_attrs: list[str]
    aggregations: list[Aggregation]


class EsmCatalog(_Strict):
    """The esmcat JSON document.

    ``columns_with_iterables`` is our record of which CSV columns hold list literals;
    intake-esm ignores the key, so callers pass it on (see :func:`write_catalog`).
    """

    esmcat_version: Literal["0.1.0"]
    id: str
    description: str = ""
    catalog_file: str
    attributes: list[Attribute]
    assets: Assets
    aggregation_control: AggregationControl
    last_updated: datetime.datetime | None = None
    columns_with_iterables: list[str] = []

    @model_validator(mode="after")
    def _columns_known(self) -> EsmCatalog:
        """Every column the aggregation names must be a declared attribute."""
        known = {attribute.column_name for attribute in self.attributes}
        control = self.aggregation_control
        named = {
            control.variable_column_name,
            *control.groupby_attrs,
            *(aggregation.attribute_name for aggregation in control.aggregations),
            *self.columns_with_iterables,
        }
        if unknown := sorted(named - known):
            raise ValueError(f"columns {unknown} are used but not declared as attributes")
        return self


def build_catalog(
    roots: Iterable[str | Path], *, read_variables: bool = True
) -> tuple[pd.DataFrame, list[InputFileError]]:
    """Discover CESM files under the roots and tabulate them, one row per file.

    Parameters
    ----------
    roots
        Data root directories (archive layout or flat run directories).
    read_variables
        Open each file's header to list its variables and to weed out unreadable files.
        With ``False`` nothing is opened: only time-series rows know their variable (a
        string), the others hold ``None`` — enough for listing, not for intake-esm loading.

    Returns
    -------
    tuple
        The table (columns :data:`CATALOG_COLUMNS`, absolute paths, sorted by path;
        ``variable`` holds lists when headers were read) and one :class:`InputFileError`
        per unrecognised or unreadable file, which is left out of the table.
    """
    files, errors = discover(roots)
    rows = []
    for cesm_file in files:
        try:
            variables = _file_variables(cesm_file) if read_variables else cesm_file.variable
        except InputFileError as exc:
            errors.append(exc)
            continue
        rows.append(_row(cesm_file, variables))
    logger.info("catalogued %d files, %d problems", len(rows), len(errors))
    return pd.DataFrame(rows, columns=CATALOG_COLUMNS), errors


def _row(cesm_file: CesmFile, variables: list[str] | str | None) -> dict[str, object]:
    """One catalog row; the path is absolute so the catalog works from any directory."""
    return {
        "path": str(cesm_file.path.resolve()),
        "case": cesm_file.case,
        "member_id": cesm_file.member_id,
        "ensemble": cesm_file.ensemble,
        "component": cesm_file.component,
        "model": cesm_file.model,
        "stream": cesm_file.stream,
        "frequency": cesm_file.frequency,
        "layout": cesm_file.layout,
        "start_time": cesm_file.start,
        "end_time": cesm_file.end,
        "variable": variables,
    }


def _file_variables(cesm_file: CesmFile) -> list[str]:
    """List the variables a file contributes, reading only its header.

    History files contribute their time-varying fields (not the time bounds), a time
    series its one variable (checked to be present), a grid file all its fields.

    Parameters
    ----------
    cesm_file
        The parsed file.

    Returns
    -------
    list of str
        Variable names in file order.

    Raises
    ------
    InputFileError
        When the file cannot be opened as netCDF, or a time series lacks its variable.
    """
    try:
        with netCDF4.Dataset(cesm_file.path) as dataset:
            if cesm_file.layout == "tseries":
                return _tseries_variable(cesm_file, dataset)
            if cesm_file.layout == "static":
                return [name for name in dataset.variables if name not in dataset.dimensions]
            return _time_variables(dataset)
    except OSError as exc:
        raise InputFileError(cesm_file.path, f"not a netCDF file or truncated: {exc}") from exc


def _tseries_variable(cesm_file: CesmFile, dataset: netCDF4.Dataset) -> list[str]:
    """The variable named in a time-series file name, which the file must contain."""
    if cesm_file.variable not in dataset.variables:
        raise InputFileError(
            cesm_file.path, f"time-series file does not contain its variable {cesm_file.variable}"
        )
    return [cesm_file.variable]


def _time_variables(dataset: netCDF4.Dataset) -> list[str]:
    """Fields with a ``time`` dimension, without coordinates and time bounds.

    Bounds are dropped both by the CF ``bounds`` attribute and by the CESM names, because
    not every CESM model writes the attribute.
    """
    bounds = {
        variable.getncattr("bounds")
        for variable in dataset.variables.values()
        if "bounds" in variable.ncattrs()
    }
    return [
        name
        for name, variable in dataset.variables.items()
        if "time" in variable.dimensions
        and name not in dataset.dimensions
        and name not in bounds | _TIME_BOUNDS
    ]


def write_catalog(df: pd.DataFrame, outdir: str | Path, name: str, description: str = "") -> Path:
    """Write the table as ``<outdir>/<name>.csv`` and its esmcat ``<outdir>/<name>.json``.

    When ``variable`` holds lists, every cell is written as a Python list literal
    (``"['SALT', 'TEMP']"``) and the JSON records ``columns_with_iterables``. intake-esm
    ignores that key, so open the catalog with
    ``intake_esm.esm_datastore(json_path, columns_with_iterables=["variable"])``: without it
    the lists stay strings and a multi-file group loads with every field turned into a
    coordinate.

    Both files are written to a temporary name and renamed, the CSV first, so a reader
    never sees a JSON pointing at a half-written table.

    Parameters
    ----------
    df
        A table with at least :data:`CATALOG_COLUMNS`, as from :func:`build_catalog`.
    outdir
        Directory to write into (created if missing).
    name
        Catalog name: the file stem and the esmcat ``id``.
    description
        Free text stored in the JSON.

    Returns
    -------
    Path
        The JSON file.

    Raises
    ------
    ConfigurationError
        When the table lacks catalog columns.
    """
    if missing := [column for column in CATALOG_COLUMNS if column not in df.columns]:
        raise ConfigurationError(f"catalog table lacks columns {missing}")
    table = df[CATALOG_COLUMNS].copy()
    iterables = [VARIABLE_COLUMN] if table[VARIABLE_COLUMN].map(_is_list).any() else []
    for column in iterables:
        table[column] = table[column].map(lambda value: repr(_as_list(value)))
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = outdir / f"{name}.csv", outdir / f"{name}.json"
    _write_atomically(csv_path, table.to_csv(index=False))
    esmcat = _esmcat(name, description, csv_path.name, iterables)
    _write_atomically(json_path, esmcat.model_dump_json(indent=2, exclude_none=True))
    logger.info("wrote catalog %s (%d files)", json_path, len(table))
    return json_path


def _is_list(value: object) -> bool:
    """Whether a cell names several variables (a list, or a tuple as intake-esm gives)."""
    return isinstance(value, list | tuple)


def _as_list(value: object) -> list[str]:
    """A cell as a list: lists kept, a single name wrapped, a missing value empty."""
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return [value] if isinstance(value, str) else []


def _esmcat(name: str, description: str, catalog_file: str, iterables: list[str]) -> EsmCatalog:
    """The esmcat document: union the variables of a group, join its files along time."""
    return EsmCatalog(
        esmcat_version=ESMCAT_VERSION,
        id=name,
        description=description,
        catalog_file=catalog_file,
        attributes=[Attribute(column_name=c) for c in CATALOG_COLUMNS if c != PATH_COLUMN],
        assets=Assets(column_name=PATH_COLUMN),
        aggregation_control=AggregationControl(
            variable_column_name=VARIABLE_COLUMN,
            groupby_attrs=GROUPBY_ATTRS,
            aggregations=[
                Aggregation(type=AggregationType.union, attribute_name=VARIABLE_COLUMN),
                Aggregation(
                    type=AggregationType.join_existing,
                    attribute_name="start_time",
                    options={"dim": "time", "coords": "minimal", "compat": "override"},
                ),
            ],
        ),
        last_updated=datetime.datetime.now(datetime.UTC).replace(microsecond=0),
        columns_with_iterables=iterables,
    )


def _write_atomically(path: Path, text: str) -> None:
    """Write beside the target and rename, so the target is never half written."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def load_catalog(json_path: str | Path) -> pd.DataFrame:
    """Read a catalog written by :func:`write_catalog` back into a table.

    Parameters
    ----------
    json_path
        The esmcat JSON; its ``catalog_file`` is resolved relative to the JSON's directory.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CATALOG_COLUMNS`, all strings (``member_id`` ``"001"`` stays a
        string), missing values as ``None``, list columns as lists.

    Raises
    ------
    InputFileError
        When the JSON is not a valid esmcat document or its table is missing or malformed.
    """
    json_path = Path(json_path)
    try:
        esmcat = EsmCatalog.model_validate_json(json_path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise InputFileError(json_path, f"not an esmwatch catalog: {exc}") from exc
    csv_path = json_path.parent / esmcat.catalog_file
    if not csv_path.is_file():
        raise InputFileError(csv_path, f"catalog table named by {json_path} is missing")
    table = pd.read_csv(csv_path, dtype=str)
    if missing := [column for column in CATALOG_COLUMNS if column not in table.columns]:
        raise InputFileError(csv_path, f"catalog table lacks columns {missing}")
    table = table[CATALOG_COLUMNS]
    table = table.astype(object).where(table.notna(), None)
    for column in esmcat.columns_with_iterables:
        table[column] = table[column].map(ast.literal_eval)
    return table
