"""Parse CESM output file names into typed records, and find them under data roots.

A CESM file name carries the case, the model, the stream and the model date, but the case
itself contains dots (``b.e21.BHIST.f09_g17.CMIP6-historical.001``), so names are parsed
from the right: the model token is the last ``.<model>.`` whose remainder matches one of the
known shapes. The shapes live in one ordered table, :data:`FILE_PATTERNS`, so a new naming
variant (CESM versions and development branches keep adding them) is a new row, not a new
branch. Dates stay strings: years 0001-9999 are model years, not calendar dates.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ensembles.errors import InputFileError, UnrecognisedFileName

if TYPE_CHECKING:
    from ensembles.listing import Listings

logger = logging.getLogger(__name__)

COMPONENT_OF_MODEL: dict[str, str] = {
    "pop": "ocn",
    "mom6": "ocn",
    "cice": "ice",
    "cam": "atm",
    "clm2": "lnd",
    "mosart": "rof",
    "cism": "glc",
    "cpl": "cpl",
}
"""The CESM component (archive directory name) that each model's files belong to."""

_MODEL = "(?P<model>" + "|".join(COMPONENT_OF_MODEL) + ")"
# h, h0..h9, CESM3 averaged/instantaneous h0a/h0i, and sub-streams such as h.z, h.nday1.
# "hi"/"ha" (coupler history) are deliberately not streams: a digit must come before a/i.
_STREAM = r"(?P<stream>h(?:\d+[ai]?)?(?:\.[a-z][a-z0-9_]*)*)"
_CASE = r"^(?P<case>.+)\."
_HEAD = _CASE + _MODEL + r"\." + _STREAM
_MEMBER_SUFFIX = re.compile(r"\d{2,4}|[A-Z]{3,}\d{2,}")
_FREQUENCY_DIR = re.compile(r"(?:year|month|day|hour)_\d+")
_RESTART = re.compile(rf"\.{_MODEL}\.(?:r|rs\d*|rh\d*[ai]?)\.")
_FREQUENCY_OF_DATE_LENGTH = {4: "year_1", 7: "month_1", 10: "day_1", 16: "subdaily"}
"""Frequency implied by a normalised date: YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DD-SSSSS."""


@dataclass(frozen=True, slots=True)
class FilePattern:
    """One accepted file-name shape.

    Attributes
    ----------
    shape
        Human-readable form, quoted in the error for a name that matches nothing.
    regex
        Full-name pattern with groups ``case``, ``model``, ``stream`` and either ``date``
        (history), ``variable``/``start``/``end`` (time series) or neither (static).
    layout
        ``"history"``, ``"tseries"`` or ``"static"``.
    """

    shape: str
    regex: re.Pattern[str]
    layout: str


FILE_PATTERNS: tuple[FilePattern, ...] = (
    FilePattern(
        "<case>.<model>.<stream>.<VAR>.<YYYYMM>-<YYYYMM>.nc (time series; also YYYYMMDD, YYYY)",
        re.compile(
            _HEAD
            + r"\.(?P<variable>[A-Za-z0-9_]+)"
            + r"\.(?P<start>\d{4}(?:\d\d){0,2})-(?P<end>\d{4}(?:\d\d){0,2})\.nc$"
        ),
        "tseries",
    ),
    FilePattern(
        "<case>.<model>.<stream>.<YYYY-MM[-DD[-SSSSS]]>.nc (history)",
        re.compile(_HEAD + r"\.(?P<date>\d{4}-\d\d(?:-\d\d(?:-\d{5})?)?)\.nc$"),
        "history",
    ),
    FilePattern(
        "<case>.mom6.[h.]<stream>{_|.}<YYYY_MM[_DD]>.nc (CESM-MOM6 history: hm, sfc, h.z, "
        "h.native, h.sfc, h.rho2...)",
        re.compile(
            _CASE
            + r"(?P<model>mom6)\.(?P<stream>(?:h\.)?[a-z][a-z0-9]*)"
            + r"[._](?P<date>\d{4}[-_]\d\d(?:[-_]\d\d)?)\.nc$"
        ),
        "history",
    ),
    FilePattern(
        "<case>.mom6.[h.]static.nc, <case>.mom6.h.ocean_geometry.nc (MOM6 grid)",
        re.compile(_CASE + r"(?P<model>mom6)\.(?P<stream>(?:h\.)?(?:static|ocean_geometry))\.nc$"),
        "static",
    ),
    FilePattern(
        "<case>.pop.h.once.nc (POP time-invariant fields)",
        re.compile(_CASE + r"(?P<model>pop)\.(?P<stream>h\.once)\.nc$"),
        "static",
    ),
)
"""Every accepted shape, tried in order; the first that matches the whole name wins."""


@dataclass(frozen=True, slots=True)
class CesmFile:
    """What a CESM output file's name and location say about it.

    Attributes
    ----------
    path
        The file, as found.
    case
        Full case name, e.g. ``b.e21.BHIST.f09_g17.CMIP6-historical.001``.
    member_id
        The case's member suffix (``001``, ``OAAT0004``), or the case when it has none.
    ensemble
        The case without its member suffix (the case itself when it has none).
    component
        ``atm``, ``ocn``, ``ice``, ``lnd``, ``rof``, ``glc`` or ``cpl``.
    model
        ``pop``, ``mom6``, ``cice``, ``cam``, ``clm2``, ``mosart``, ``cism`` or ``cpl``.
    stream
        History stream as written in the name: ``h``, ``h0a``, ``h.z``, ``hm``, ``h.static``...
    frequency
        ``month_1``, ``day_1``, ``year_1``, ``subdaily`` (the ``-SSSSS`` date form), a
        time-series directory name such as ``hour_6``, or ``fixed`` for grid files.
    start, end
        Model dates normalised to ``YYYY-MM``, ``YYYY-MM-DD`` or ``YYYY-MM-DD-SSSSS``; equal
        for history files, the first and last period of a time series, ``None`` for grids.
    variable
        The variable of a single-variable time-series file, else ``None``.
    layout
        ``history``, ``tseries`` or ``static``.
    """

    path: Path
    case: str
    member_id: str
    ensemble: str
    component: str
    model: str
    stream: str
    frequency: str
    start: str | None
    end: str | None
    variable: str | None
    layout: str

    @property
    def is_monthly(self) -> bool:
        """Whether the file holds monthly data, the cadence the features are built on."""
        return self.frequency == "month_1"


def split_case(case: str) -> tuple[str, str]:
    """Split a case name into ``(ensemble, member_id)``.

    Parameter tables and crosswalks name members by suffix (``001``, ``OAAT0004``) or by
    full case name, so both halves are needed. A case with no recognisable suffix, or with
    no dot at all (``COUP0000``), is its own ensemble and member.

    Parameters
    ----------
    case
        Full case name.

    Returns
    -------
    tuple of str
        The ensemble (case without suffix) and the member id.
    """
    head, _, last = case.rpartition(".")
    if head and _MEMBER_SUFFIX.fullmatch(last):
        return head, last
    return case, case


def parse_filename(path: str | Path, patterns: Sequence[FilePattern] = FILE_PATTERNS) -> CesmFile:
    """Parse one CESM output file name.

    Parameters
    ----------
    path
        The file; only its name is parsed, plus its directory for time-series frequency.
    patterns
        Accepted shapes, tried in order; override to accept a site-specific variant.

    Returns
    -------
    CesmFile
        The typed record.

    Raises
    ------
    UnrecognisedFileName
        When no pattern matches (restart, coupler and log files included); the message
        names the file and lists the expected shapes.
    """
    path = path if isinstance(path, Path) else Path(path)  # rescans parse every file
    for pattern in patterns:
        match = pattern.regex.match(path.name)
        if match:
            return _record(path, pattern.layout, match)
    problem = (
        "a restart file, not model output"
        if _RESTART.search(path.name)
        else "not a recognised CESM output file name"
    )
    expected = "; ".join(pattern.shape for pattern in patterns)
    raise UnrecognisedFileName(path, f"{problem}; expected one of: {expected}")


def _record(path: Path, layout: str, match: re.Match[str]) -> CesmFile:
    """Build the record from a matched name; the layout decides how dates are read."""
    groups = match.groupdict()
    model = groups["model"]
    start, end = _dates(path, groups)
    ensemble, member_id = split_case(groups["case"])
    return CesmFile(
        path=path,
        case=groups["case"],
        member_id=member_id,
        ensemble=ensemble,
        component=COMPONENT_OF_MODEL[model],
        model=model,
        stream=groups["stream"],
        frequency=_frequency(path, layout, start),
        start=start,
        end=end,
        variable=groups.get("variable"),
        layout=layout,
    )


def _dates(path: Path, groups: dict[str, str | None]) -> tuple[str | None, str | None]:
    """Normalised ``(start, end)``: one stamp for history files, a span for time series."""
    if date := groups.get("date"):
        return _normalise_date(date), _normalise_date(date)
    start, end = groups.get("start"), groups.get("end")
    if start and end:
        if len(start) != len(end) or end < start:
            raise UnrecognisedFileName(
                path, f"time-series span {start}-{end} is not two dates of one width in order"
            )
        return _normalise_date(start), _normalise_date(end)
    return None, None


def _normalise_date(raw: str) -> str:
    """``000101`` -> ``0001-01``, ``0001_01_01`` -> ``0001-01-01``; dashed forms unchanged."""
    if raw.isdigit():
        return "-".join(part for part in (raw[:4], raw[4:6], raw[6:8]) if part)
    return raw.replace("_", "-")


def _frequency(path: Path, layout: str, start: str | None) -> str:
    """Output frequency of a file.

    Grids are fixed; time series trust their ``month_1``-style directory when they sit in
    one (post-processing names it after the cadence); everything else follows the width
    of the date.
    """
    if start is None:
        return "fixed"
    if layout == "tseries" and _FREQUENCY_DIR.fullmatch(path.parent.name):
        return path.parent.name
    return _FREQUENCY_OF_DATE_LENGTH[len(start)]


def _netcdf_files(root: Path, visited: set[str]) -> Iterator[str]:
    """Every ``*.nc`` file below ``root``, entering symlinked directories once each.

    Case directories are often symbolic links (HPC project spaces, runs gathered into one
    workspace), so links are followed; ``visited`` holds the real path of every directory
    entered, which stops loops and lists a directory reached twice (also from another
    root) once. ``os.scandir`` knows each entry's type from the directory listing, so a
    nightly rescan costs no stat per file (only per symbolic link).
    """
    pending = [str(root)]
    while pending:
        directory = pending.pop()
        real = os.path.realpath(directory)
        if real in visited:
            continue
        visited.add(real)
        try:
            entries = list(os.scandir(directory))
        except OSError as err:  # a link loop or a directory gone or unreadable: skipped
            logger.warning("%s: not searched: %s", directory, err.strerror)
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = not is_dir and entry.name.endswith(".nc") and entry.is_file()
            except OSError:  # a link to itself, or to a link loop
                continue
            if is_dir:
                pending.append(entry.path)
            elif is_file:
                yield entry.path


def discover(
    roots: Iterable[str | Path],
    patterns: Sequence[FilePattern] = FILE_PATTERNS,
    listings: Listings | None = None,
) -> tuple[list[CesmFile], list[InputFileError]]:
    """Find and parse every ``*.nc`` file under the data roots.

    Walks each root recursively, following symbolic links to directories, so the
    short-term archive (``<case>/<comp>/hist``), the post-processed time series
    (``<case>/<comp>/proc/tseries/month_1``) and flat run directories are all covered.
    A file whose name matches no pattern is identified from its header when it can be
    (:mod:`ensembles.identify`: names shortened by whoever copied the file). A nightly
    scan must go on past one bad file, so each unrecognised ``.nc`` file (or missing root)
    becomes an error in the returned list. Restart files are expected in run directories
    and are skipped, logged at debug level; files not ending in ``.nc`` (logs,
    ``rpointer``) are ignored.

    Parameters
    ----------
    roots
        Data root directories; overlapping roots list each file once.
    patterns
        Accepted shapes, as for :func:`parse_filename`.
    listings
        Records of earlier scans (:mod:`ensembles.listing`): names parsed then are not
        parsed again.

    Returns
    -------
    tuple
        Parsed files sorted by path, and one :class:`InputFileError` per problem.

    Raises
    ------
    InputFileError
        When the roots hold no CESM output at all (empty, mistyped, or only foreign
        files): an empty feature table with exit 0 would hide the mistake. The message
        says what was found instead.
    """
    from ensembles.identify import identify_by_content  # it builds on this module's records

    roots = [Path(root) for root in roots]
    files: list[CesmFile] = []
    errors: list[InputFileError] = []
    paths: dict[str, None] = {}  # strings: sorting 20,000 Paths costs more than parsing
    parse = listings.parse if listings is not None else parse_filename
    visited: set[str] = set()
    for root in roots:
        if root.is_dir():
            paths.update(dict.fromkeys(_netcdf_files(root, visited)))
        else:
            errors.append(InputFileError(root, "data root is not a directory"))
    for path in sorted(paths):
        try:
            files.append(parse(path, patterns))
        except UnrecognisedFileName as exc:
            if _RESTART.search(os.path.basename(path)):
                logger.debug("skipping restart file %s", path)
                continue
            try:
                files.append(identify_by_content(Path(path), exc))
            except UnrecognisedFileName as final:
                errors.append(final)
    if not files:
        raise InputFileError(", ".join(map(str, roots)), _nothing_found(roots, list(paths)))
    logger.info("discovered %d CESM files, %d problems", len(files), len(errors))
    return files, errors


def _nothing_found(roots: Sequence[Path], paths: list[str]) -> str:
    """What a root without CESM output holds, so a mistyped or wrong root is obvious."""
    if not any(root.is_dir() for root in roots):
        return "no such data directory"
    if not paths:
        return "no CESM output: no .nc files at all"
    first = min(paths)
    shown = next(
        (os.path.relpath(first, root) for root in roots if first.startswith(str(root))), first
    )
    return f"no CESM output: {len(paths)} .nc files, none with a CESM name; first: {shown}"
