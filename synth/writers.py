"""Write CESM-faithful synthetic history files from per-member monthly regional signals.

A *signal* is a monthly series named like a registry feature (``so_upper_labsea``,
``qrunoff_greenland``...). :func:`write_case` turns a Dataset of signals into the files a
CESM case would leave in its short-term archive (or post-processed time series), so that a
reader computing the registry's regional reductions recovers the signals:

* **means** (``reduction: mean``): the domain-weighted area mean over the region (ocean
  cells, or CAM area x (1 - landfrac), or CLM area x landfrac) equals the signal, in the
  registry's canonical units; ``*_upper_*`` signals are the thickness-weighted mean over the
  registry's ``upper_ocean_m`` layer;
* **integrals** (``reduction: integral``): the area integral of the flux, converted to
  volume with the registry's water density (for mass fluxes), equals the signal in mSv.

Each model of a case is planned once (:class:`ModelRun`), then written month by month: the
background climatology (:mod:`synth.climate`), the placement of signals
(:mod:`synth.placement`), the model's files (:mod:`synth.model_specs`) and its grid
(:mod:`synth.layouts`) each live in their own module.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import netCDF4
import numpy as np
import xarray as xr

from ensembles.errors import ConfigurationError
from ensembles.registry import registry
from synth.climate import (
    AT_LEAST,
    CLIMATE,
    COLUMNS,
    DEPENDS,
    SHARES,
    SIGNAL_ALIASES,
    Climate,
    Context,
    Geography,
)
from synth.grids import SynthGrids
from synth.layouts import GridLayout, GridVar
from synth.model_specs import MODELS, OUTPUTS, FileField, ModelSpec, written_fields
from synth.placement import Misses, Placement, crc, place, plan_placements, signal_targets

logger = logging.getLogger(__name__)

FileLayout = Literal["history", "tseries"]

COMPONENTS = ("ocn", "ice", "atm", "lnd")


def _year_month(offset: int, start_year: int) -> tuple[int, int]:
    """Model year and 1-based month of month ``offset`` counted from January of start_year."""
    return start_year + offset // 12, offset % 12 + 1


# ========================================================================================
# One model in one case: static plan, monthly fields
# ========================================================================================
@dataclass(frozen=True, eq=False)
class ModelRun:
    """Everything about one model that does not change from month to month.

    Signals also shape fields the model only uses internally (the ice cover behind CAM's
    ICEFRAC or POP's MELT_F, HMXL behind MOM6's mixed layers), which keeps the components
    consistent; only fields written to the files (``written``) count as placing a signal
    and report misses.
    """

    spec: ModelSpec
    layout: GridLayout
    geo: Geography
    names: tuple[str, ...]
    placements: dict[str, list[Placement]]
    deep: dict[str, np.ndarray]
    upper_weights: np.ndarray | None
    written: frozenset[str]
    placed: frozenset[str]
    seed: int


def _needed(spec: ModelSpec) -> tuple[str, ...]:
    """Canonical fields a model needs, with dependencies, in :data:`CLIMATE` order."""
    wanted = {f.source for f in spec.fields if f.source is not None}
    stack = list(wanted)
    while stack:
        for dep in DEPENDS.get(stack.pop(), ()):
            if dep not in wanted:
                wanted.add(dep)
                stack.append(dep)
    return tuple(name for name in CLIMATE if name in wanted)


def _signals_by_field(names: tuple[str, ...], targets: Mapping[tuple[str, str], str]
                      ) -> dict[str, dict[str, str]]:
    """Per canonical field, region -> signal, aliases filling regions without own signal."""
    out: dict[str, dict[str, str]] = {}
    for name in names:
        own = {region: sig for (var, region), sig in targets.items() if var == name}
        for alias in SIGNAL_ALIASES.get(name, ()):
            for (var, region), sig in targets.items():
                if var == alias:
                    own.setdefault(region, sig)
        if own:
            out[name] = own
    return out


def _upper_weights(layout: GridLayout) -> np.ndarray | None:
    """Thickness (m) of each level inside the registry's upper-ocean layer."""
    if layout.z_top is None or layout.z_bot is None:
        return None
    top, bottom = registry().upper_ocean_m
    return np.clip(np.minimum(layout.z_bot, bottom) - np.maximum(layout.z_top, top), 0.0, None)


def _deep_profiles(layout: GridLayout, geo: Geography, names: tuple[str, ...]
                   ) -> dict[str, np.ndarray]:
    """Static 3-D profiles below the upper layer, from the annual-mean background only,
    so that deep values do not depend on any signal."""
    if layout.z_top is None or layout.z_bot is None:
        return {}
    annual = Context(geo, None)
    for name in names:
        annual.fields[name] = CLIMATE[name].background(annual)
    z = 0.5 * (layout.z_top + layout.z_bot)
    top = registry().upper_ocean_m[1]
    return {name: deep(annual.fields[name], geo, z, top)
            for name, (_, deep) in COLUMNS.items() if name in names}


@lru_cache(maxsize=16)
def _static(spec: ModelSpec, grids: SynthGrids
            ) -> tuple[GridLayout, Geography, tuple[str, ...], dict[str, np.ndarray]]:
    """What depends on the model and grid only, computed once per grid and shared by cases:
    layout, geography, canonical fields and deep ocean profiles (never mutated)."""
    layout = spec.layout(grids)
    geo = Geography(layout.cells)
    names = _needed(spec)
    return layout, geo, names, _deep_profiles(layout, geo, names)


def _model_run(spec: ModelSpec, grids: SynthGrids, targets: Mapping[tuple[str, str], str],
               seed: int) -> ModelRun:
    """Plan one model in one case: the static part plus this case's placements."""
    layout, geo, names, deep = _static(spec, grids)
    written = frozenset(f.source for f in spec.fields if f.source is not None)
    placements: dict[str, list[Placement]] = {}
    placed: set[str] = set()
    for name, by_region in _signals_by_field(names, targets).items():
        plan, skipped = plan_placements(name, by_region, layout.cells, seed)
        if name in written:
            for signal in skipped:
                logger.debug("%s: signal %s has no cells on this grid", spec.model, signal)
            placed |= {p.signal for p in plan}
        placements[name] = plan
    return ModelRun(
        spec=spec, layout=layout, geo=geo, names=names, placements=placements,
        deep=deep, upper_weights=_upper_weights(layout), written=written,
        placed=frozenset(placed), seed=seed,
    )


def _with_noise(background: np.ndarray, climate: Climate, rng: np.random.Generator
                ) -> np.ndarray:
    """Background plus small month-to-month noise, kept within bounds."""
    values = np.array(background, dtype=float)
    if climate.noise:
        noise = climate.noise * rng.standard_normal(values.shape)
        values = values * (1.0 + noise) if climate.form == "mul" else values + noise
    return np.clip(values, *climate.bounds)


def _canonical_fields(run: ModelRun, month_offset: int, month: int,
                      signals: Mapping[str, np.ndarray], index: int, misses: Misses
                      ) -> Context:
    """All canonical fields of one month: background, noise, then the placed signals."""
    ctx = Context(run.geo, month)
    rng = np.random.default_rng([run.seed, crc(run.spec.model), month_offset])
    size = run.layout.cells.size
    for name in run.names:
        climate = CLIMATE[name]
        background = np.broadcast_to(climate.background(ctx), (size,))
        values = _with_noise(background, climate, rng)
        field_misses = misses if name in run.written else Misses()
        for placement in run.placements.get(name, ()):
            signal = float(signals[placement.signal][index])
            if np.isfinite(signal):
                place(values, placement, signal, climate, month_offset, field_misses)
        ctx.fields[name] = values
    for high, low in AT_LEAST:
        if high in ctx.fields and low in ctx.fields:
            ctx.fields[high] = np.maximum(ctx.fields[high], ctx.fields[low])
    return ctx


def _column(run: ModelRun, name: str, ctx: Context) -> np.ndarray:
    """A 3-D column: top level = surface field, linear through the upper layer so that its
    thickness-weighted mean is the upper field, static deep profile below."""
    weights = run.upper_weights
    assert weights is not None and run.layout.z_top is not None and run.layout.z_bot is not None
    surface = ctx.fields[COLUMNS[name][0]]
    upper = ctx.fields[name]
    z = 0.5 * (run.layout.z_top + run.layout.z_bot)
    inside = weights > 0
    depth_below_top = z[inside] - z[0]
    slope = (upper - surface) * weights.sum() / float(weights[inside] @ depth_below_top)
    column = run.deep[name].copy()
    column[inside] = surface[None, :] + slope[None, :] * depth_below_top[:, None]
    column[0] = surface
    return column


def _file_values(run: ModelRun, ctx: Context) -> dict[str, np.ndarray]:
    """File variables of one month in file units and shapes, masked cells filled."""
    layout = run.layout
    raw: dict[str, np.ndarray] = {}
    out: dict[str, np.ndarray] = {}
    for f in run.spec.fields:
        if f.parts:
            value = np.sum([raw[part] for part in f.parts], axis=0)
        elif f.levels:
            value = _column(run, f.source, ctx) * f.scale  # type: ignore[arg-type]
        else:
            share = SHARES[f.share](ctx) if f.share else 1.0
            value = ctx.fields[f.source] * share * f.scale  # type: ignore[index]
        raw[f.name] = value
        out[f.name] = _masked(value, layout, run.spec.fill_value)
    return out


def _masked(value: np.ndarray, layout: GridLayout, fill: float | None) -> np.ndarray:
    """float32 file array: invalid cells (land, below KMT) set to the fill value."""
    out = np.asarray(value, dtype=np.float32)
    if fill is not None:
        valid = layout.valid
        if out.ndim == 2:
            assert layout.kmt is not None
            valid = valid[None, :] & (np.arange(out.shape[0])[:, None] < layout.kmt[None, :])
        out = np.where(valid, out, np.float32(fill))
    return out.reshape(out.shape[:-1] + layout.cells.shape)


# ========================================================================================
# netCDF output
# ========================================================================================
# Post-processed CESM time series are netCDF-4 with deflate (the history files they come
# from are not): lossless level 1 with shuffle shrinks the synthetic ones about 3.7 times.
TSERIES_FORMAT = "NETCDF4_CLASSIC"
TSERIES_COMPRESSION = {"zlib": True, "complevel": 1, "shuffle": True}
# Packed time series (``packed=True``): 16-bit integers with CF scale_factor/add_offset over
# each file's own range, as NCO's ncpdq writes and ERA5's netCDF files come: lossy at about
# 1/65000 of the range, and about half the size again after deflate.
PACKED_FILL = np.int16(-32767)
PACKED_STEPS = 65000


def packing(values: np.ndarray, fill: float | None) -> tuple[float, float]:
    """``(scale_factor, add_offset)`` that map the valid values onto int16 without clipping."""
    valid = values if fill is None else values[values != np.float32(fill)]
    low, high = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 0.0)
    return (high - low) / PACKED_STEPS or 1.0, (high + low) / 2


def _template(run: ModelRun, case: str, fields: Iterable[FileField]) -> bytes:
    """Bytes of a file with everything but the records: global attributes, time axis with
    bounds, grid variables and the declared ``fields``, with zero time steps.

    Built once per model in memory and copied for every month: netCDF3 moves all data
    already defined on every switch between define and data mode, so declaring a file from
    scratch each month would cost far more than writing its records.
    """
    ds = netCDF4.Dataset("template", "w", format=run.spec.file_format, memory=1 << 16)
    _declare(ds, run, case, fields)
    return bytes(ds.close())


def _create_tseries(path: Path, run: ModelRun, case: str, field: FileField,
                    packed: tuple[float, float] | None = None) -> netCDF4.Dataset:
    """A time-series file, netCDF-4 with its field deflated (and packed to int16 with
    ``packed = (scale_factor, add_offset)``), open for appending records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = netCDF4.Dataset(path, "w", format=TSERIES_FORMAT)
    _declare(ds, run, case, (field,), compressed=True, packed=packed)
    return ds


def _declare(ds: netCDF4.Dataset, run: ModelRun, case: str, fields: Iterable[FileField],
             compressed: bool = False, packed: tuple[float, float] | None = None) -> None:
    """Global attributes, time axis with bounds, grid variables and ``fields``."""
    spec, layout = run.spec, run.layout
    ds.set_fill_off()  # every value is written; pre-filling would write the data twice
    ds.setncatts(_global_attrs(case, spec))
    ds.createDimension("time", None)
    ds.createDimension(spec.time.bounds_dim, 2)
    for name, size in layout.dims:
        ds.createDimension(name, size)
    time = ds.createVariable("time", "f8", ("time",))
    time.setncatts({"long_name": "time", "units": spec.time.units, "calendar": "noleap",
                    "bounds": spec.time.bounds})
    bounds = ds.createVariable(spec.time.bounds, "f8", ("time", spec.time.bounds_dim))
    bounds.setncatts({"long_name": "boundaries for time-averaging interval",
                      "units": spec.time.units})
    for f in fields:
        _define_field(ds, f, run, compressed, packed)
    pending = [_define_grid_var(ds, var, layout, spec.fill_value) for var in layout.grid_vars]
    for name, values in pending:
        ds[name][:] = values


def _open_copy(path: Path, template: bytes) -> netCDF4.Dataset:
    """Write the template to ``path`` and open it for appending records."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(template)
    ds = netCDF4.Dataset(path, "r+")
    ds.set_fill_off()
    return ds


def _global_attrs(case: str, spec: ModelSpec) -> dict[str, str]:
    return {
        "title": case,
        "case": case,
        "source": spec.source,
        "Conventions": "CF-1.0",
        "history": "synthetic CESM-like output written by esmwatch (synth)",
    }


def _define_grid_var(ds: netCDF4.Dataset, var: GridVar, layout: GridLayout,
                     fill: float | None) -> tuple[str, np.ndarray]:
    """Declare one time-invariant variable; return the values to write once declared.

    ``fill`` variables (CLM area, MOM6 deptho) are masked off the valid cells.
    """
    if np.issubdtype(var.values.dtype, np.integer):
        dtype = "i4"
    else:
        dtype = "f4" if var.values.dtype == np.float32 else "f8"
    if not (var.fill and fill is not None):
        ds.createVariable(var.name, dtype, var.dims).setncatts(dict(var.attrs))
        return var.name, var.values
    out = ds.createVariable(var.name, dtype, var.dims, fill_value=fill)
    out.setncatts({**var.attrs, "missing_value": np.array(fill, dtype=dtype)})
    return var.name, np.where(layout.valid.reshape(var.values.shape), var.values, fill)


def _define_field(ds: netCDF4.Dataset, f: FileField, run: ModelRun,
                  compressed: bool = False, packed: tuple[float, float] | None = None) -> None:
    """Declare one data variable with CESM-like attributes."""
    layout, fill = run.layout, run.spec.fill_value
    dims = ("time", *((layout.vertical,) if f.levels else ()), *layout.horizontal)
    encoding = TSERIES_COMPRESSION if compressed else {}
    if packed is not None:
        var = ds.createVariable(f.name, "i2", dims, fill_value=PACKED_FILL, **encoding)
        var.setncatts({"scale_factor": np.float32(packed[0]),
                       "add_offset": np.float32(packed[1])})
        fill = None  # the packed fill value marks the invalid cells
    else:
        var = ds.createVariable(f.name, "f4", dims, fill_value=np.float32(fill) if fill
                                else None, **encoding)
    attrs: dict[str, object] = {"long_name": f.long_name, "units": f.units,
                                "cell_methods": "time: mean"}
    coordinates = layout.coordinates[1 if f.levels else 0]
    if coordinates:
        attrs["coordinates"] = coordinates
    if fill is not None:
        attrs["missing_value"] = np.float32(fill)
    var.setncatts(attrs)


def _write_static(run: ModelRun, directory: Path, case: str) -> list[Path]:
    """The once-per-case grid file (MOM6 ``h.static``), if the model has one."""
    spec, layout = run.spec, run.layout
    if spec.static_stream is None:
        return []
    path = directory / f"{case}.{spec.model}.{spec.static_stream}.nc"
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format=spec.file_format) as ds:
        ds.setncatts(_global_attrs(case, spec))
        for name, size in layout.dims:
            if name in layout.horizontal:
                ds.createDimension(name, size)
        horizontal = [var for var in layout.grid_vars if set(var.dims) <= set(layout.horizontal)]
        pending = [_define_grid_var(ds, var, layout, spec.fill_value)
                   for var in (*horizontal, *layout.static)]
        for name, values in pending:
            ds[name][:] = values
    return [path]


def _write_time(ds: netCDF4.Dataset, slot: int, run: ModelRun, stamps: tuple[float, ...]
                ) -> None:
    ds["time"][slot] = stamps[0]
    ds[run.spec.time.bounds][slot, :] = stamps[1:]


class _HistorySink:
    """One file per month holding every variable: ``<case>.<model>.<stream>.YYYY-MM.nc``."""

    def __init__(self, run: ModelRun, directory: Path, case: str) -> None:
        self.run, self.directory, self.case = run, directory, case
        self.template = _template(run, case, run.spec.fields)
        self.paths: list[Path] = []

    def write(self, year: int, month: int, stamps: tuple[float, ...],
              values: Mapping[str, np.ndarray]) -> None:
        spec = self.run.spec
        path = self.directory / f"{self.case}.{spec.model}.{spec.stream}.{year:04d}-{month:02d}.nc"
        with _open_copy(path, self.template) as ds:
            _write_time(ds, 0, self.run, stamps)
            for f in spec.fields:
                ds[f.name][0] = values[f.name]
        self.paths.append(path)

    def close(self) -> list[Path]:
        return self.paths


class _TseriesSink:
    """One file per variable for the whole run:
    ``<case>.<model>.<stream>.<VAR>.<YYYYMM>-<YYYYMM>.nc`` with the grid variables.

    Months are buffered and written a block at a time: netCDF4 writes along the unlimited
    time dimension cost far more per call than per byte.  Packed files need the whole
    run's range before the first record, so they are buffered whole and written on close.
    """

    BLOCK = 60  # months per write; bounds the buffer for 3-D ocean fields

    def __init__(self, run: ModelRun, directory: Path, case: str, span: str,
                 packed: bool = False) -> None:
        self.run, self.case, self.packed = run, case, packed
        self.slot = 0
        spec = run.spec
        self.fields = {f.name: f for f in spec.fields}
        self.paths = {name: directory / f"{case}.{spec.model}.{spec.stream}.{name}.{span}.nc"
                      for name in self.fields}
        self.files: dict[str, netCDF4.Dataset] = {} if packed else {
            name: _create_tseries(self.paths[name], run, case, f)
            for name, f in self.fields.items()}
        self.stamps: list[tuple[float, ...]] = []
        self.values: dict[str, list[np.ndarray]] = {name: [] for name in self.fields}

    def write(self, year: int, month: int, stamps: tuple[float, ...],
              values: Mapping[str, np.ndarray]) -> None:
        self.stamps.append(stamps)
        for name in self.fields:
            self.values[name].append(np.asarray(values[name]))
        if len(self.stamps) >= self.BLOCK and not self.packed:
            self._flush()

    def _flush(self) -> None:
        if not self.stamps:
            return
        start, stop = self.slot, self.slot + len(self.stamps)
        stamps = np.asarray(self.stamps)
        fill = self.run.spec.fill_value
        for name in self.fields:
            block = np.stack(self.values[name])
            if self.packed:
                scale_offset = packing(block, fill)
                self.files[name] = _create_tseries(self.paths[name], self.run, self.case,
                                                   self.fields[name], scale_offset)
                if fill is not None:  # masked cells become the packed fill value
                    invalid = block == np.float32(fill)
                    block = np.ma.array(np.where(invalid, np.float32(scale_offset[1]), block),
                                        mask=invalid)
            ds = self.files[name]
            ds["time"][start:stop] = stamps[:, 0]
            ds[self.run.spec.time.bounds][start:stop, :] = stamps[:, 1:]
            ds[name][start:stop] = block
            self.values[name].clear()
        self.slot = stop
        self.stamps.clear()

    def close(self) -> list[Path]:
        self._flush()
        for ds in self.files.values():
            ds.close()
        return list(self.paths.values())


# ========================================================================================
# Public entry point
# ========================================================================================
def write_case(
    root: Path,
    case: str,
    signals: xr.Dataset,
    grids: SynthGrids,
    *,
    components: Collection[str] = COMPONENTS,
    layout: Literal["history", "tseries"] = "history",
    seed: int = 0,
    packed: bool = False,
    output: str = "full",
) -> list[Path]:
    """Write one synthetic CESM case whose regional reductions reproduce ``signals``.

    Parameters
    ----------
    root
        Archive root; files go to ``root/<case>/<comp>/hist`` (history) or
        ``root/<case>/<comp>/proc/tseries/month_1`` (time series).
    case
        Case name, used in file names and global attributes.
    signals
        Dims ``(time,)``; ``time`` holds consecutive integer month offsets counted from
        January of model year ``attrs["start_year"]`` (default 1), normally ``0..n-1``.
        Variables are named like registry features (``so_upper_labsea``,
        ``qrunoff_greenland``...), in canonical units for means and in mSv for integrals.
        NaN months keep the background; names that cannot be placed are logged at debug level.
    grids
        From :func:`synth.grids.make_grids`; its flavour picks the models.
    components
        Any of ``ocn``, ``ice``, ``atm``, ``lnd``.
    layout
        ``"history"`` (one file per month) or ``"tseries"`` (one file per variable).
    seed
        Seeds the background noise and the placement patterns (one per member).
    packed
        ``tseries`` only: 16-bit packed fields (CF ``scale_factor``/``add_offset``), lossy
        at about 1/65000 of each file's range and about half the size.
    output
        ``"full"`` or ``"reduced"``: the output list of a lean production run
        (:data:`synth.model_specs.REDUCED_OUTPUT`). The fields are computed the same way
        either way (same noise, same placements); only fewer are written.

    Returns
    -------
    list of Path
        Every file written, the MOM6 static file included.
    """
    offsets, start_year = _months(signals)
    models = _models(grids.flavour, components)
    if layout not in ("history", "tseries"):
        raise ConfigurationError(f"unknown layout {layout!r}; expected 'history' or 'tseries'")
    if output not in OUTPUTS:
        raise ConfigurationError(f"unknown output {output!r}; expected one of {OUTPUTS}")
    targets, unknown = signal_targets(str(name) for name in signals.data_vars)
    _check_dims(signals, targets.values())
    values = {name: np.asarray(signals[name].values, dtype=float) for name in targets.values()}
    misses = Misses()
    paths: list[Path] = []
    placed: set[str] = set()
    for component, spec in models:
        run = _model_run(spec, grids, targets, seed)
        placed |= run.placed
        if output != "full":  # planned in full: the written fields keep their values
            run = dataclasses.replace(
                run, spec=dataclasses.replace(spec, fields=written_fields(spec, output))
            )
        directory = Path(root) / case / component / (
            "hist" if layout == "history" else "proc/tseries/month_1")
        paths += _write_static(run, directory, case)
        paths += _write_model(run, directory, case, layout, offsets, start_year, values, misses,
                              packed)
    for name in [*unknown, *sorted(set(targets.values()) - placed)]:
        logger.debug("%s: signal %s cannot be placed in the %s files written", case, name,
                     grids.flavour)
    misses.report(case)
    logger.info("%s: wrote %d files for %d months", case, len(paths), len(offsets))
    return paths


def _months(signals: xr.Dataset) -> tuple[list[int], int]:
    """Month offsets from the ``time`` coordinate and the start year; validated."""
    if "time" not in signals.dims:
        raise ConfigurationError("signals need a 'time' dimension of month offsets")
    n = signals.sizes["time"]
    raw = signals["time"].values if "time" in signals.coords else np.arange(n)
    offsets = np.asarray(raw)
    if not np.issubdtype(offsets.dtype, np.integer) or (n > 1 and np.any(np.diff(offsets) != 1)):
        raise ConfigurationError("signals 'time' must be consecutive integer month offsets")
    if n and offsets[0] < 0:
        raise ConfigurationError("signals 'time' month offsets must not be negative")
    return [int(k) for k in offsets], int(signals.attrs.get("start_year", 1))


def _check_dims(signals: xr.Dataset, names: Iterable[str]) -> None:
    """Every signal to place is a plain monthly series."""
    for name in names:
        if signals[name].dims != ("time",):
            raise ConfigurationError(
                f"signal {name!r} has dims {signals[name].dims}; expected ('time',): write "
                "one case per member"
            )


def _models(flavour: str, components: Collection[str]) -> list[tuple[str, ModelSpec]]:
    """The model specs to write, in CESM component order."""
    if flavour not in MODELS:
        raise ConfigurationError(f"unknown grid flavour {flavour!r}; expected {sorted(MODELS)}")
    bad = set(components) - set(COMPONENTS)
    if bad:
        raise ConfigurationError(f"unknown components {sorted(bad)}; expected {COMPONENTS}")
    return [(c, MODELS[flavour][c]) for c in COMPONENTS if c in components]


def _write_model(run: ModelRun, directory: Path, case: str, layout: FileLayout,
                 offsets: list[int], start_year: int, signals: Mapping[str, np.ndarray],
                 misses: Misses, packed: bool = False) -> list[Path]:
    """Write every month of one model through the layout's sink."""
    if not offsets:
        return []
    if layout == "history":
        sink: _HistorySink | _TseriesSink = _HistorySink(run, directory, case)
    else:
        first = _year_month(offsets[0], start_year)
        last = _year_month(offsets[-1], start_year)
        span = f"{first[0]:04d}{first[1]:02d}-{last[0]:04d}{last[1]:02d}"
        sink = _TseriesSink(run, directory, case, span, packed)
    try:
        for index, offset in enumerate(offsets):
            year, month = _year_month(offset, start_year)
            ctx = _canonical_fields(run, offset, month, signals, index, misses)
            sink.write(year, month, run.spec.time.stamps(year, month), _file_values(run, ctx))
    finally:
        paths = sink.close()
    return paths
