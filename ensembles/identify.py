"""Identify a model-written file whose name was shortened, from what the file says of itself.

Files that travel (test data, a colleague's extract, files gathered into one workspace)
lose their CESM names: ``clm2.h0.subset.control.nc``, ``orig.PRECT.10days.nc``. The model
still wrote its case into the global attributes (CAM ``case``, CLM ``case_id``), its name
into ``source``/``title`` (CICE, MOM6, coupler ``file_version``), and the output
frequency into the time axis. Reading that header gives the file its true place (and its
true reason when it cannot give features, such as daily output) instead of "not a
recognised name". Only files whose names match no pattern are opened here.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cftime
import netCDF4
import numpy as np

from ensembles.errors import UnrecognisedFileName
from ensembles.filenames import COMPONENT_OF_MODEL, CesmFile, split_case
from ensembles.timeaxis import BOUNDS_NAMES

logger = logging.getLogger(__name__)

_NAMED_MODEL = re.compile(
    r"(?:^|\.)(?P<model>" + "|".join(COMPONENT_OF_MODEL) + r")\.(?P<stream>h[a-z0-9]*)\."
)
# (global attribute, pattern in its value, model): how each model signs its history files
_SIGNATURES = (
    ("file_version", re.compile(r"^cpl"), "cpl"),
    ("source", re.compile(r"^CAM\b|Community Atmosphere Model"), "cam"),
    ("source", re.compile(r"Community Land Model|^CLM\b"), "clm2"),
    ("title", re.compile(r"^CLM History"), "clm2"),
    ("source", re.compile(r"Los Alamos Sea Ice Model|^CICE"), "cice"),
    ("title", re.compile(r"^MOM6 diagnostic"), "mom6"),
    ("source", re.compile(r"Parallel Ocean Program|^POP\b"), "pop"),
)
_CASE_ATTRS = ("case", "case_id")
# width of one time interval in days -> frequency, date width
_FREQUENCIES = ((0.9, 1.1, "day_1", 10), (27.5, 31.5, "month_1", 7), (364.0, 366.0, "year_1", 4))


def identify_by_content(path: Path, problem: UnrecognisedFileName) -> CesmFile:
    """The record of a file with an unrecognised name, from its global attributes and time.

    Parameters
    ----------
    path
        The file.
    problem
        The name-parsing error, re-raised with what the header added when the file cannot
        be placed.

    Raises
    ------
    UnrecognisedFileName
        When the file is unreadable, has no case attribute, or no model signature.
    """
    try:
        with netCDF4.Dataset(path) as nc:
            attrs = {name: str(nc.getncattr(name)) for name in nc.ncattrs()}
            named = _NAMED_MODEL.search(path.name)
            model = named["model"] if named else _model_of(attrs)
            if model == "cpl":
                raise UnrecognisedFileName(
                    path, "coupler history (cpl): esmwatch builds no features from coupler files"
                )
            case = next((attrs[a].strip(" .") for a in _CASE_ATTRS if attrs.get(a)), None)
            if model is None or not case:
                raise problem
            frequency, start, end = _time_span(nc)
    except (OSError, AttributeError, ValueError, IndexError, TypeError):
        raise problem from None  # unreadable, or a time axis without units: unplaced
    ensemble, member_id = split_case(case)
    logger.debug("%s: identified from its header as %s %s", path, case, model)
    return CesmFile(
        path=path,
        case=case,
        member_id=member_id,
        ensemble=ensemble,
        component=COMPONENT_OF_MODEL[model],
        model=model,
        stream=named["stream"] if named else "h",
        frequency=frequency,
        start=start,
        end=end,
        variable=None,
        layout="history" if start else "static",
    )


def _model_of(attrs: dict[str, str]) -> str | None:
    for attr, pattern, model in _SIGNATURES:
        if pattern.search(attrs.get(attr, "")):
            return model
    return None


def _time_span(nc: netCDF4.Dataset) -> tuple[str, str | None, str | None]:
    """Frequency and first/last dates, from the bounds' width (else the stamps' spacing)."""
    time = nc.variables.get("time")
    if time is None or time.size == 0:
        return "fixed", None, None
    units, calendar = time.units, getattr(time, "calendar", "noleap")  # no units: unplaced
    bounds = next((nc.variables[b] for b in BOUNDS_NAMES if b in nc.variables), None)
    if bounds is not None:
        edges = np.asarray(bounds[:], dtype=float)
        width, centres = float(np.median(edges[:, 1] - edges[:, 0])), edges.mean(axis=1)
    else:
        centres = np.asarray(time[:], dtype=float)
        width = float(np.median(np.diff(centres))) if centres.size > 1 else float("nan")
    frequency, digits = next(
        ((name, n) for lo, hi, name, n in _FREQUENCIES if lo <= width <= hi), ("unknown", 10)
    )
    dates = cftime.num2date(centres[[0, -1]], units, calendar)
    start, end = (f"{d.year:04d}-{d.month:02d}-{d.day:02d}"[:digits] for d in dates)
    return frequency, start, end
