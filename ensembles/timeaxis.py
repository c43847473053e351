"""Model time, decoded with cftime and labelled by the month each value belongs to.

CESM2 stamps monthly means at the *end* of the interval (00:00 on the 1st of the next
month) while newer streams stamp the middle, so a month is always taken from the centre
of the bounds variable; without bounds, an end-of-month stamp is recognised and shifted.
Years start at 0001 and are not real dates, hence cftime and never pandas datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache

import cftime
import netCDF4
import numpy as np

from ensembles.errors import InputFileError
from ensembles.ncread import Decoding, decoding, read_block

BOUNDS_NAMES = ("time_bnds", "time_bounds", "time_bound")
MONTH_DAYS = (27.5, 31.5)  # a bounds width outside this is not a monthly mean


@dataclass
class FileTime:
    """Months covered by one file and the time indices to read for them, in order."""

    months: list[str]
    indices: np.ndarray
    calendar: str
    notes: list[str] = field(default_factory=list)


def month_key(date: cftime.datetime) -> str:
    return f"{date.year:04d}-{date.month:02d}"


def month_number(key: str) -> int:
    """``"0001-01"`` -> 12: months since year 0, so that month arithmetic is integer."""
    return int(key[:4]) * 12 + int(key[5:7]) - 1


def month_label(number: int) -> str:
    """The month key of a :func:`month_number`."""
    year, month = divmod(int(number), 12)
    return f"{year:04d}-{month + 1:02d}"


def month_centre(key: str, calendar: str = "noleap") -> cftime.datetime:
    """Mid-point of a month, the time coordinate every component is aligned on."""
    year, month = (int(part) for part in key.split("-"))
    start = cftime.datetime(year, month, 1, calendar=calendar)
    end = cftime.datetime(year + month // 12, month % 12 + 1, 1, calendar=calendar)
    return start + (end - start) / 2


@dataclass(frozen=True)
class TimeLayout:
    """What a stream's attributes say about its time axis, worked out once per layout."""

    dims: tuple[str, ...]  # of `time`; the first is the time dimension
    units: str
    calendar: str
    bounds: str | None  # the bounds variable, None when the file has none
    read_dims: tuple[str, ...]  # of the variable read in each file: the bounds, else time
    decoding: Decoding  # of that variable
    origin: float | None  # for arithmetic decoding on the noleap calendar (see _noleap_origin)

    @property
    def variables(self) -> tuple[str, ...]:
        """Variables whose attributes this layout was derived from."""
        return ("time",) if self.bounds is None else ("time", self.bounds)


def _bounds_name(nc: netCDF4.Dataset, time: netCDF4.Variable) -> str | None:
    name = getattr(time, "bounds", None)
    if name and name in nc.variables:
        return name
    return next((n for n in BOUNDS_NAMES if n in nc.variables), None)


def time_layout(nc: netCDF4.Dataset, path: str) -> TimeLayout:
    """Read and check the time attributes of an open file.

    Raises
    ------
    InputFileError
        No `time` variable, or one without CF units.
    """
    if "time" not in nc.variables:
        raise InputFileError(path, "no `time` variable")
    time = nc.variables["time"]
    units = getattr(time, "units", None)
    calendar = getattr(time, "calendar", "standard")
    if not units or "since" not in units:
        raise InputFileError(path, f"time has no CF units (got {units!r})")
    bounds = _bounds_name(nc, time)
    read = time if bounds is None else nc.variables[bounds]
    return TimeLayout(
        dims=time.dimensions,
        units=units,
        calendar=calendar,
        bounds=bounds,
        read_dims=read.dimensions,
        decoding=decoding(read),
        origin=_noleap_origin(units) if calendar in _NOLEAP else None,
    )


def decode_months(nc: netCDF4.Dataset, path: str, layout: TimeLayout | None = None) -> FileTime:
    """Label each time step of an open file with its month.

    ``layout`` is the file's :func:`time_layout` when the caller has checked that it
    applies (a scan reuses it for every file of a stream); None reads it from the file.

    Raises
    ------
    InputFileError
        No decodable time, or time steps that are not monthly means.
    """
    layout = layout or time_layout(nc, path)
    n_times = len(nc.dimensions[layout.dims[0]])
    if n_times == 0:
        raise InputFileError(path, "time axis is empty (file still being written?)")
    notes: list[str] = []
    values = _read_whole(nc, layout.bounds or "time", layout)
    if layout.bounds is not None:
        bnds = values.reshape(n_times, 2)
        width = bnds[:, 1] - bnds[:, 0]
        if np.any((width < MONTH_DAYS[0]) | (width > MONTH_DAYS[1])):
            raise InputFileError(
                path,
                f"time bounds span {width.min():g}-{width.max():g} days: not monthly means "
                "(monthly features need monthly streams)",
            )
        if np.isnan(bnds).any():
            raise InputFileError(
                path, "time bounds hold missing values (file still being written?)"
            )
        months = _months_of(0.5 * (bnds[:, 0] + bnds[:, 1]), layout, path)
    else:
        dates = _decode(values, layout.units, layout.calendar, path)
        months = [month_key(_shift_end_stamp(d)) for d in dates]
        notes.append("no time bounds: month taken from the time stamp")
    indices = _last_of_each_month(months)
    if len(indices) != len(months) or np.any(np.diff(indices) < 0):
        notes.append(
            "time not monotonic or repeated (restart overlap?): kept the last value per month"
        )
    return FileTime([months[i] for i in indices], indices, layout.calendar, notes)


def _read_whole(nc: netCDF4.Dataset, name: str, layout: TimeLayout) -> np.ndarray:
    """All of the time or bounds variable ``name``, decoded as the layout says."""
    count = [len(nc.dimensions[d]) for d in layout.read_dims]
    return read_block(nc.variables[name], layout.decoding, [0] * len(count), count)


_NOLEAP = ("noleap", "365_day")
_MONTH_START = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30])


def _decode(values: np.ndarray, units: str, calendar: str, path: str) -> np.ndarray:
    try:
        dates = cftime.num2date(values, units, calendar, only_use_cftime_datetimes=True)
    except (ValueError, TypeError) as err:
        raise InputFileError(path, f"cannot decode time ({units}, {calendar}): {err}") from None
    return np.atleast_1d(dates)


@cache
def _noleap_origin(units: str) -> float | None:
    """Days from 0000-01-01 to the units' reference date, for 'days since' on noleap.

    None when the arithmetic does not apply, so cftime decodes (and reports bad units).
    """
    if not units.strip().startswith("days since"):
        return None
    try:
        ref = cftime.num2date(0.0, units, "noleap", only_use_cftime_datetimes=True)
    except (ValueError, TypeError):
        return None
    seconds = ref.hour * 3600 + ref.minute * 60 + ref.second
    return ref.year * 365 + _MONTH_START[ref.month - 1] + ref.day - 1 + seconds / 86400


def _months_of(centres: np.ndarray, layout: TimeLayout, path: str) -> list[str]:
    """Month keys of interval centres; plain arithmetic on the noleap calendar (the CESM
    default, and the hot path of every scan), cftime for every other calendar."""
    if layout.origin is None:
        return [month_key(d) for d in _decode(centres, layout.units, layout.calendar, path)]
    days = layout.origin + centres
    years = np.floor(days / 365).astype(int)
    months = np.searchsorted(_MONTH_START, days - years * 365, side="right")
    return [f"{y:04d}-{m:02d}" for y, m in zip(years.tolist(), months.tolist(), strict=True)]


def _shift_end_stamp(date: cftime.datetime) -> cftime.datetime:
    """An instant at 00:00 on the 1st closes the previous month (CESM2 convention)."""
    if (date.day, date.hour, date.minute, date.second) == (1, 0, 0, 0):
        return date - timedelta(days=1)
    return date


def _last_of_each_month(months: list[str]) -> np.ndarray:
    """Indices that sort the months and keep the last occurrence of each."""
    last = {month: i for i, month in enumerate(months)}
    return np.array([last[m] for m in sorted(last)], dtype=int)


def first_run(flags: np.ndarray, length: int) -> np.ndarray:
    """Index of the first run of ``length`` consecutive True values per row, -1 where none.

    Freeze onsets are the first of N consecutive frozen winters; the synthetic generator's
    truth and the detectors' labels both use this one rule.
    """
    flags = np.asarray(flags, dtype=bool)
    if flags.shape[1] < length:
        return np.full(flags.shape[0], -1)
    runs = np.all(np.lib.stride_tricks.sliding_window_view(flags, length, axis=1), axis=2)
    return np.where(np.any(runs, axis=1), np.argmax(runs, axis=1), -1)
