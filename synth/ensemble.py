"""Synthetic ensembles on disk, with the truth that produced them.

:func:`synthesize` turns a kind (``freeze-database``, ``pertlim``, ``control``, ``candidate``,
``ppe``) and a scenario into CESM-named cases written by :mod:`synth.writers`, plus
``truth.json`` beside them. The physics lives in :mod:`synth.physics`, the planted
causes in :mod:`synth.scenarios`; this module only decides *who* the members are
(parameters, seeds, names) and where they go.

Layout of ``outdir``::

    truth.json                      every kind
    <case>/...                      freeze-database, pertlim, control
    reference/<case>/...            candidate: the reference pertlim ensemble
    candidate/<case>/...            candidate: the same with one parameter changed
    coupled/<case>/..., offline/<case>/...   ppe (lnd+atm, lnd only)
    coupled_params.csv, offline_params.csv, parameters.csv, crosswalk.csv   ppe

Seeds: member ``i`` of an ensemble draws from ``default_rng([seed, stream, i])``, so the same
arguments give byte-identical signals and a member's series do not depend on the ensemble size.
"""

from __future__ import annotations

import csv
import json
import logging
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from ensembles import __version__
from ensembles.errors import ConfigurationError
from ensembles.filenames import split_case
from ensembles.registry import features as registry_features
from synth import parameters as synth_parameters
from synth import physics, ppe_land
from synth.physics import MemberParameters, Simulation
from synth.scenarios import PPE_PARAMETERS, Scenario, get_scenario

logger = logging.getLogger(__name__)

COUPLED_KINDS = ("freeze-database", "pertlim", "control", "candidate")
KINDS = (*COUPLED_KINDS, "ppe")
PPE_DESIGNS = ("oaat", "sampled")
START_YEAR = 1
PERTLIM_STEP = 1.0e-14  # pertlim of member n is n * PERTLIM_STEP


@dataclass(frozen=True)
class FlavourNames:
    """CESM case-name stems of one model generation (docs/cesm-conventions.md).

    Attributes
    ----------
    coupled
        Stem of coupled cases (compset and grid).
    plain_label
        The ensemble label left out of case names: CESM3 freeze-database runs are plain
        development cases, ``<stem>.NNN``; CESM2 ones carry ``.freeze``.
    ppe_coupled, ppe_offline
        Stems of coupled (B) and land-only (I compset) perturbed-parameter runs.
    """

    coupled: str
    plain_label: str | None
    ppe_coupled: str
    ppe_offline: str


FLAVOURS: dict[str, FlavourNames] = {
    "cesm3": FlavourNames("b.e30_alpha09b.B1850C_MTso.ne30_t232_wgx3", "freeze",
                          "b.e30.B1850.ne30_t232", "i.e30.I2000Clm60Sp.ne30_t232"),
    "cesm2": FlavourNames("b.e21.B1850.f09_g17", None,
                          "b.e21.B1850.f09_g17", "i.e21.I2000Clm50Sp.f09_g17"),
}


def case_name(flavour: str, label: str, number: int) -> str:
    """``<stem>[.<label>].NNN``, e.g. ``b.e30_alpha09b.B1850C_MTso.ne30_t232_wgx3.001``."""
    names = FLAVOURS[flavour]
    if label == names.plain_label:
        return f"{names.coupled}.{number:03d}"
    return f"{names.coupled}.{label}.{number:03d}"


def _stream(name: str) -> int:
    """A stable integer for a seed stream (``hash()`` is salted per process)."""
    return zlib.crc32(name.encode())


def member_generators(seed: int, stream: str, n_members: int) -> list[np.random.Generator]:
    """One generator per member, independent of how many members there are."""
    return [np.random.default_rng([seed, _stream(stream), i]) for i in range(n_members)]


def _member_seed(seed: int, stream: str, member: int) -> int:
    """An integer seed for the writer's spatial patterns of one member."""
    return int(np.random.SeedSequence([seed, _stream(stream), member, 1]).generate_state(1)[0])


# --- who the members are ------------------------------------------------------------------
@dataclass(frozen=True)
class EnsemblePlan:
    """One ensemble to simulate and write.

    Attributes
    ----------
    role
        ``members`` (single-ensemble kinds), ``reference`` or ``candidate``.
    subdir
        Directory under ``outdir`` for its cases (``""``: ``outdir`` itself).
    label
        Case-name label between the stem and the member number (see :class:`FlavourNames`).
    params
        Member parameters.
    stream
        Seed stream of its members' noise.
    design
        Extra truth: how the parameters were chosen.
    """

    role: str
    subdir: str
    label: str
    params: MemberParameters
    stream: str
    design: dict[str, object] = field(default_factory=dict)


NUISANCE_RANGES: dict[str, tuple[float, float]] = {
    "driver_gain": (0.8, 1.2),
    "mixing_efficiency": (0.3, 0.4),
    "heat_loss_scale": (0.96, 1.04),
    "background_fw_msv": (8.0, 10.0),
    "s_deep": (34.88, 34.92),
}
"""Parameters that differ between freeze-database members without deciding their fate."""

EARLIEST_CROSSING_YEAR = 10
"""A freeze database's ramps reach the critical forcing after this many years; noise brings
some onsets forward by a year or two, so onsets come after year ~8 and 36-month leads exist."""
CONTROL_BACKGROUND_FW_MSV = 7.0  # a control is further from the tipping point
CANDIDATE_CHANGE = ("mixing_efficiency", 0.7)  # parameter and factor of a candidate
PERTLIM_CROSSING = 0.9  # the pertlim ramp reaches the critical forcing at this fraction of the run


def _stratified(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    """``n`` values, one per equal slice of ``[low, high]``, in random order (a 1-D LHS)."""
    edges = np.linspace(low, high, n + 1)
    values = edges[:-1] + rng.random(n) * np.diff(edges)
    return rng.permutation(values)


def _ramp_for(critical: np.ndarray, gain: np.ndarray, crossing_year: np.ndarray,
              scenario: Scenario) -> np.ndarray:
    """Trend (mSv/decade of the driver's channel) that reaches ``critical`` in ``crossing_year``.

    The interior sees ``gain`` times the driver's anomaly, except in the ``null`` scenario where
    the trend is the interior drift itself.
    """
    effective_gain = gain if scenario.main_driver is not None else np.ones_like(gain)
    return 10.0 * critical / (effective_gain * crossing_year)


def _database(scenario: Scenario, members: int, years: int, seed: int,
              parameters: str = "none", fixed: np.ndarray | None = None
              ) -> list[EnsemblePlan]:
    """Members differ in nuisance parameters and in the ramp that decides their fate.

    Without a parameter design, half of the members (rounded up) get a ramp that reaches their
    own critical forcing between :data:`EARLIEST_CROSSING_YEAR` and the end of the run; the
    others only 1.6-4 runs later. With one (:mod:`synth.parameters`), each member's fate is
    drawn from its parameter table row (all at ``fixed`` scaled values, when given: the
    re-simulation of one setting) and the ramp follows it.
    """
    rng = np.random.default_rng([seed, _stream("freeze-database/parameters")])
    nuisance = {name: _stratified(rng, *bounds, members)
                for name, bounds in NUISANCE_RANGES.items()}
    params = MemberParameters.nominal(members, **nuisance)
    critical = physics.critical_freshwater(params, physics.ramp_shape(scenario))
    design: dict[str, object] = {"critical_freshwater_msv": critical.round(3).tolist()}
    if parameters != "none":
        table_rng = np.random.default_rng([seed, _stream(f"freeze-database/table/{parameters}")])
        table = synth_parameters.draw(parameters, members, table_rng, fixed)
        crossing = synth_parameters.crossing_years(table.froze_planned, years,
                                                   EARLIEST_CROSSING_YEAR, table_rng)
        design["parameter_table"] = {name: v.tolist() for name, v in table.values().items()}
        design["parameter_design"] = synth_parameters.table_truth(parameters)
        design["freeze_probability"] = synth_parameters.freeze_probability(
            table.u, parameters).round(4).tolist()
    else:
        n_freeze = (members + 1) // 2
        last = max(years - 2.0, EARLIEST_CROSSING_YEAR + 1.0)
        crossing = np.concatenate([
            _stratified(rng, EARLIEST_CROSSING_YEAR, last, n_freeze),
            _stratified(rng, 1.6 * years, 4.0 * years, members - n_freeze)])
        crossing = rng.permutation(crossing)
    trend = _ramp_for(critical, params.driver_gain, crossing, scenario)
    params = params.with_values(driver_trend_msv_per_decade=trend)
    design["crossing_year"] = crossing.round(2).tolist()
    return [EnsemblePlan("members", "", "freeze", params, "freeze-database", design)]


def _pertlim_params(members: int, years: int, scenario: Scenario, *, ramp: bool,
                    **overrides: float) -> MemberParameters:
    """Shared parameters, ``pertlim = n * 1e-14`` for member ``n`` (1-based)."""
    params = MemberParameters.nominal(members, **overrides)
    if ramp:
        critical = physics.critical_freshwater(MemberParameters.nominal(1, **overrides),
                                               physics.ramp_shape(scenario))
        trend = _ramp_for(critical, params.driver_gain[:1], np.array([PERTLIM_CROSSING * years]),
                          scenario)
        params = params.with_values(driver_trend_msv_per_decade=float(trend[0]))
    return params.with_values(initial_s_perturbation=PERTLIM_STEP * np.arange(1, members + 1))


def _pertlim(scenario: Scenario, members: int, years: int, seed: int) -> list[EnsemblePlan]:
    params = _pertlim_params(members, years, scenario, ramp=True)
    return [EnsemblePlan("members", "", "pertlim", params, "pertlim",
                         {"crossing_year": PERTLIM_CROSSING * years})]


def _control_params(members: int, years: int, scenario: Scenario) -> MemberParameters:
    """Pertlim members further from the tipping point, without a ramp: they rarely freeze."""
    return _pertlim_params(members, years, scenario, ramp=False,
                           background_fw_msv=CONTROL_BACKGROUND_FW_MSV)


def _control(scenario: Scenario, members: int, years: int, seed: int) -> list[EnsemblePlan]:
    params = _control_params(members, years, scenario)
    return [EnsemblePlan("members", "", "control", params, "control")]


def _candidate(scenario: Scenario, members: int, years: int, seed: int) -> list[EnsemblePlan]:
    """A control-like reference and the same configuration with one parameter changed."""
    reference = _control_params(members, years, scenario)
    name, factor = CANDIDATE_CHANGE
    candidate = reference.with_values(**{name: getattr(reference, name) * factor})
    change = {"parameter": name, "reference": float(getattr(reference, name)[0]),
              "candidate": float(getattr(candidate, name)[0])}
    return [EnsemblePlan("reference", "reference", "reference", reference, "reference"),
            EnsemblePlan("candidate", "candidate", "candidate", candidate, "candidate",
                         {"changed_parameter": change})]


PLANNERS: dict[str, Callable[[Scenario, int, int, int], list[EnsemblePlan]]] = {
    "freeze-database": _database,
    "pertlim": _pertlim,
    "control": _control,
    "candidate": _candidate,
}
"""How each coupled kind chooses its members."""


def plan_ensemble(kind: str, scenario: str | Scenario, members: int, years: int, seed: int = 0,
                  parameters: str = "none") -> list[EnsemblePlan]:
    """The ensembles a coupled kind writes (two for ``candidate``, one otherwise).

    ``parameters`` (``freeze-database`` only) names a :mod:`synth.parameters` design.
    """
    if kind not in PLANNERS:
        raise ConfigurationError(f"unknown coupled ensemble kind {kind!r}; known: "
                                 f"{', '.join(PLANNERS)}")
    if parameters != "none":
        if kind != "freeze-database" or parameters not in synth_parameters.DESIGNS:
            raise ConfigurationError(f"parameter design {parameters!r} needs --kind "
                                     f"freeze-database and one of "
                                     f"{', '.join(synth_parameters.DESIGNS)}")
        return _database(get_scenario(scenario), members, years, seed, parameters)
    return PLANNERS[kind](get_scenario(scenario), members, years, seed)


def simulate_plan(plan: EnsemblePlan, scenario: str | Scenario, years: int, seed: int = 0
                  ) -> Simulation:
    """Run the physics for one planned ensemble (no files)."""
    rngs = member_generators(seed, plan.stream, plan.params.n_members)
    return physics.simulate(get_scenario(scenario), plan.params, years * physics.MONTHS, rngs)


def simulate_ensemble(kind: str, scenario: str | Scenario = "greenland_runoff", members: int = 8,
                      years: int = 30, seed: int = 0) -> Simulation:
    """The simulation of a single-ensemble coupled kind, without writing anything."""
    plans = plan_ensemble(kind, scenario, members, years, seed)
    if len(plans) != 1:
        raise ConfigurationError(f"{kind} makes {len(plans)} ensembles; use plan_ensemble")
    return simulate_plan(plans[0], scenario, years, seed)


def simulate_setting(values: dict[str, float], members: int, years: int, seed: int,
                     scenario: str | Scenario = "greenland_runoff", parameters: str = "freeze"
                     ) -> Simulation:
    """``members`` freeze-database runs all at one parameter setting (names missing from
    ``values`` at their defaults): the re-simulation that checks a what-if change."""
    fixed = synth_parameters.scaled(values)
    plan = _database(get_scenario(scenario), members, years, seed, parameters, fixed)[0]
    return simulate_plan(plan, scenario, years, seed)


def write_parameter_tables(root: Path, cases: Sequence[str], table: dict[str, list[float]]
                           ) -> None:
    """``params.csv`` (``member,<param>...``, member ids) and ``parameters.csv`` in ``root``."""
    names = [p.name for p in synth_parameters.PARAMETERS]
    _write_csv(root / synth_parameters.TABLE_FILE, ["member", *names],
               ([split_case(case)[1], *(repr(table[n][i]) for n in names)]
                for i, case in enumerate(cases)))
    _write_csv(root / "parameters.csv", ["parameter", "default", "min", "max", "units",
                                         "description"],
               ([p.name, repr(p.default), repr(p.low), repr(p.high), p.units, p.description]
                for p in synth_parameters.PARAMETERS))


# --- signals -----------------------------------------------------------------------------
def signals_dataset(series: dict[str, np.ndarray], member: int, names: Iterable[str],
                    start_year: int = START_YEAR) -> xr.Dataset:
    """One member's monthly signals in the layout :func:`writers.write_case` expects.

    Variables are the registry features in ``names``, in canonical units with ``units``,
    ``process`` and ``role`` attributes; ``time`` is the month index from January of
    ``start_year``.
    """
    catalogue = registry_features()
    data = {}
    for name in names:
        feature = catalogue[name]
        data[name] = xr.DataArray(np.asarray(series[name][member], dtype=np.float64),
                                  dims="time", attrs={"units": feature.units,
                                                      "process": feature.process,
                                                      "role": feature.role})
    n_months = len(next(iter(data.values())))
    return xr.Dataset(data, coords={"time": np.arange(n_months)},
                      attrs={"start_year": start_year, "source": "esmwatch synthetic generator"})


def _component_features(components: Sequence[str]) -> list[str]:
    return [name for name, f in registry_features().items() if f.var.component in components]


# --- writing -----------------------------------------------------------------------------
def _writer() -> tuple[Callable, Callable]:
    """The grid and file writers, imported late so the physics works without them."""
    from synth.grids import make_grids
    from synth.writers import write_case

    return make_grids, write_case


def _progress(items: Sequence, enabled: bool, desc: str) -> Iterable:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="case")


@dataclass(frozen=True)
class WriteOptions:
    """Where and how cases are written."""

    outdir: Path
    flavour: str
    size: str
    layout: str
    seed: int
    progress: bool
    packed: bool = False
    output: str = "full"
    parameters: str = "none"


def _write_members(options: WriteOptions, root: Path, cases: Sequence[str],
                   series: dict[str, np.ndarray], components: Sequence[str], stream: str,
                   grids: object) -> None:
    """Write every member's case under ``root``."""
    _, write_case = _writer()
    names = _component_features(components)
    for i in _progress(range(len(cases)), options.progress, f"writing {root.name or 'cases'}"):
        signals = signals_dataset(series, i, names)
        write_case(root, cases[i], signals, grids, components=tuple(components),
                   layout=options.layout, seed=_member_seed(options.seed, stream, i),
                   packed=options.packed, output=options.output)
        logger.debug("wrote %s under %s", cases[i], root)


def _year(index: int) -> str:
    return f"{START_YEAR + index:04d}-01"


def _members_truth(plan: EnsemblePlan, sim: Simulation, cases: Sequence[str]
                   ) -> list[dict[str, object]]:
    flags = physics.frozen_winters(sim.features["hmxl_labsea_interior"],
                                   sim.features["aice_labsea_interior"])
    records = []
    for i, case in enumerate(cases):
        onset = int(sim.onset_index[i])
        records.append({
            "case": case,
            "member": split_case(case)[1],
            "ensemble": plan.role,
            "pertlim": float(plan.params.initial_s_perturbation[i]),
            "parameters": plan.params.record(i),
            "froze": onset >= 0,
            "first_freeze": _year(onset) if onset >= 0 else None,
            "frozen_winters": [START_YEAR + int(y) for y in np.flatnonzero(flags[i])],
        })
    return records


def _label_truth() -> dict[str, object]:
    return {"mld_feature": "hmxl_labsea_interior", "mld_threshold_m": physics.LABEL_MLD_M,
            "ice_feature": "aice_labsea_interior", "ice_threshold": physics.LABEL_ICE,
            "combine": "and", "consecutive_winters": physics.LABEL_WINTERS,
            "onset": "January of the first of the consecutive frozen winters"}


def _write_coupled(kind: str, scenario: Scenario, members: int, years: int,
                   options: WriteOptions) -> dict[str, object]:
    make_grids, _ = _writer()
    grids = make_grids(options.flavour, options.size, seed=options.seed)
    ensembles = {}
    for plan in plan_ensemble(kind, scenario, members, years, options.seed, options.parameters):
        sim = simulate_plan(plan, scenario, years, options.seed)
        cases = [case_name(options.flavour, plan.label, i + 1) for i in range(members)]
        root = options.outdir / plan.subdir if plan.subdir else options.outdir
        _write_members(options, root, cases, sim.features, ("ocn", "ice", "atm", "lnd"),
                       plan.stream, grids)
        if "parameter_table" in plan.design:
            write_parameter_tables(root, cases, plan.design["parameter_table"])
        ensembles[plan.role] = {"directory": plan.subdir or ".", "design": plan.design,
                                "members": _members_truth(plan, sim, cases)}
        logger.info("%s %s: %d of %d members froze", kind, plan.role, int(sim.froze.sum()),
                    members)
    truth: dict[str, object] = {**scenario.truth(), "label": _label_truth(),
                                "feedbacks": sorted({f.process for f in registry_features().values()
                                                     if f.role == "feedback"}),
                                "budget": _budget_truth(scenario)}
    if list(ensembles) == ["members"]:
        truth.update(ensembles["members"])
    else:
        truth["ensembles"] = ensembles
    return truth


def _budget_truth(scenario: Scenario) -> dict[str, object]:
    """What enters the interior salinity, for validation of budget views."""
    features = physics.PROCESSES[scenario.main_driver].features if scenario.main_driver else ()
    return {
        "units": "mSv",
        "interior_terms": [{"feature": f.name, "weight": f.fw_weight, "lag_months": f.fw_lag,
                            "times": "driver_gain"} for f in features if f.fw_weight],
        "interior_drift": (None if scenario.main_driver else
                           "driver_trend_msv_per_decade: unobserved interior freshwater drift"),
        "feedback_terms": ["local sea-ice growth (brine) and melt, part of fsitherm_labsea"],
        "note": "only the interior terms' anomalies reach the convection site; the other Lab "
                "Sea budget terms vary but are exported by the boundary current. Evaporation "
                "features are the atmosphere's demand and are not reduced by sea ice (lhflx "
                "is), so that no driver responds to the collapse.",
    }


# --- perturbed-parameter ensembles --------------------------------------------------------
@dataclass(frozen=True)
class PpeMember:
    """One parameter set, run offline and coupled."""

    offline_number: int
    coupled_number: int
    values: dict[str, float]
    role: str  # default, replicate, min, max, sample


def ppe_design(design: str, members: int, rng: np.random.Generator) -> list[PpeMember]:
    """Parameter sets and their (shuffled) coupled numbering.

    ``oaat``: the default, ``members - 1`` replicates of it, then a min and a max member per
    parameter. ``sampled``: ``members`` Latin-hypercube samples. Coupled numbers are a
    derangement of the offline numbers, so pairing runs by number is always wrong.
    """
    defaults = {p.name: p.default for p in PPE_PARAMETERS}
    if design == "oaat":
        sets = [(dict(defaults), "default")]
        sets += [(dict(defaults), "replicate") for _ in range(members - 1)]
        for p in PPE_PARAMETERS:
            sets += [({**defaults, p.name: p.low}, "min"), ({**defaults, p.name: p.high}, "max")]
    elif design == "sampled":
        columns = {p.name: p.low + _stratified(rng, 0.0, 1.0, members) * (p.high - p.low)
                   for p in PPE_PARAMETERS}
        sets = [({name: float(v[i]) for name, v in columns.items()}, "sample")
                for i in range(members)]
    else:
        raise ConfigurationError(f"unknown PPE design {design!r}; known: {', '.join(PPE_DESIGNS)}")
    coupled = _derangement(len(sets), rng)
    return [PpeMember(i, int(coupled[i]), values, role) for i, (values, role) in enumerate(sets)]


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation with no fixed point (identity for n == 1, where none exists)."""
    if n == 1:
        return np.zeros(1, dtype=int)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def ppe_case(flavour: str, setup: str, number: int) -> str:
    names = FLAVOURS[flavour]
    if setup == "coupled":
        return f"{names.ppe_coupled}.COUP{number:04d}"
    return f"{names.ppe_offline}.OFFL{number:04d}"


def _ppe_series(setup: str, design: list[PpeMember], years: int, seed: int
                ) -> dict[str, np.ndarray]:
    """Signals of every member of one setup, in offline-number order.

    Coupled members are independent control runs (their own weather); offline members share
    one data-atmosphere forcing, so they differ only by the parameters and a small replicate
    noise. Both get :func:`ppe_land.land_response` to the parameters.
    """
    n_months = years * physics.MONTHS
    null = get_scenario("null")
    if setup == "coupled":
        params = MemberParameters.nominal(len(design),
                                          background_fw_msv=CONTROL_BACKGROUND_FW_MSV)
        rngs = member_generators(seed, "ppe-coupled", len(design))
        series = dict(physics.simulate(null, params, n_months, rngs).features)
    else:
        forcing = physics.draw_noise([np.random.default_rng([seed, _stream("ppe-forcing")])], 1,
                                     n_months)
        shared = physics.make_drivers(null, MemberParameters.nominal(1), forcing)
        names = _component_features(("lnd",))
        white = np.stack([g.standard_normal((len(names), n_months))
                          for g in member_generators(seed, "ppe-offline", len(design))], axis=1)
        months = physics.month_of(n_months)
        series = {name: shared[name] + ppe_land.OFFLINE_REPLICATE_NOISE
                  * np.asarray(physics.driver_feature(name)[1].own)[months] * white[k]
                  for k, name in enumerate(names)}
    responses = ppe_land.land_response(PPE_PARAMETERS, [m.values for m in design], setup,
                                       n_months)
    for name, response in responses.items():
        series[name] = series[name] + response
    return series


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_ppe_tables(outdir: Path, sim: PpeSimulation) -> None:
    """``coupled_params.csv``, ``offline_params.csv``, ``parameters.csv`` and ``crosswalk.csv``.

    Each setup's table lists its cases in case-number order, so the rows of the two tables
    are in different orders: only the crosswalk (or the parameter values) pairs them.
    """
    names = [p.name for p in PPE_PARAMETERS]
    for setup in PPE_COMPONENTS:
        order = sorted(sim.design, key=lambda m: _number(m, setup))
        _write_csv(outdir / f"{setup}_params.csv", ["member", *names],
                   ([sim.cases[setup][_number(m, setup)], *(repr(m.values[n]) for n in names)]
                    for m in order))
    _write_csv(outdir / "parameters.csv", ["parameter", "default", "min", "max", "units",
                                           "description"],
               ([p.name, repr(p.default), repr(p.low), repr(p.high), p.units, p.description]
                for p in PPE_PARAMETERS))
    _write_csv(outdir / "crosswalk.csv", ["coupled", "offline"],
               ([sim.cases["coupled"][m.coupled_number], sim.cases["offline"][m.offline_number]]
                for m in sim.design))


def _number(member: PpeMember, setup: str) -> int:
    return member.coupled_number if setup == "coupled" else member.offline_number


PPE_COMPONENTS = {"coupled": ("lnd", "atm"), "offline": ("lnd",)}


@dataclass(frozen=True)
class PpeSimulation:
    """Both setups of a perturbed-parameter ensemble, before any file is written.

    Attributes
    ----------
    design
        Parameter sets with their offline and (shuffled) coupled case numbers.
    cases
        Setup -> case names, index = case number.
    features
        Setup -> feature -> ``(case number, month)`` series of the setup's components.
    """

    design: list[PpeMember]
    cases: dict[str, list[str]]
    features: dict[str, dict[str, np.ndarray]]

    def table(self, setup: str, start_year: int = START_YEAR) -> xr.Dataset:
        """The feature table the readers would give for ``setup`` (no files written)."""
        from types import SimpleNamespace

        from synth.table import feature_table

        return feature_table(SimpleNamespace(features=self.features[setup]), self.cases[setup],
                             ensemble=split_case(self.cases[setup][0])[0], start_year=start_year)


def simulate_ppe(design_name: str, members: int, years: int, seed: int = 0,
                 flavour: str = "cesm3") -> PpeSimulation:
    """Signals of an ``oaat`` or ``sampled`` PPE in both setups, ordered by case number."""
    rng = np.random.default_rng([seed, _stream("ppe-design")])
    design = ppe_design(design_name, members, rng)
    cases = {setup: [ppe_case(flavour, setup, k) for k in range(len(design))]
             for setup in PPE_COMPONENTS}
    features = {}
    for setup, components in PPE_COMPONENTS.items():
        series = _ppe_series(setup, design, years, seed)
        by_number = sorted(design, key=lambda m: _number(m, setup))
        order = [m.offline_number for m in by_number]
        features[setup] = {name: series[name][order] for name in _component_features(components)}
    return PpeSimulation(design, cases, features)


def _write_ppe(members: int, years: int, design_name: str, options: WriteOptions
               ) -> dict[str, object]:
    sim = simulate_ppe(design_name, members, years, options.seed, options.flavour)
    make_grids, _ = _writer()
    grids = make_grids(options.flavour, options.size, seed=options.seed)
    for setup, components in PPE_COMPONENTS.items():
        _write_members(options, options.outdir / setup, sim.cases[setup], sim.features[setup],
                       components, f"ppe-{setup}", grids)
    write_ppe_tables(options.outdir, sim)
    design, cases = sim.design, sim.cases
    return {
        "kind": "ppe",
        "design": design_name,
        "target": {"variable": "eflx_lh_tot", "component": "lnd", "region": "north_america_ne",
                   "season": "JJA", "units": "W m-2", "feature": "eflx_lh_tot_north_america_ne"},
        "effect_definition": "JJA-mean response at the parameter's max minus at its min",
        "parameters": [p.truth() for p in PPE_PARAMETERS],
        "offline_replicate_noise": ppe_land.OFFLINE_REPLICATE_NOISE,
        "members": [{"offline": cases["offline"][m.offline_number],
                     "coupled": cases["coupled"][m.coupled_number], "role": m.role,
                     "parameters": m.values} for m in design],
        "numbering": "coupled member numbers are a derangement of the offline numbers; "
                     "pair runs with crosswalk.csv",
    }


# --- entry point -------------------------------------------------------------------------
def _check(kind: str, members: int, years: int, flavour: str, size: str, layout: str,
           design: str, output: str = "full") -> None:
    problems = []
    if kind not in KINDS:
        problems.append(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if flavour not in FLAVOURS:
        problems.append(f"flavour {flavour!r} is not one of {', '.join(FLAVOURS)}")
    if size not in ("small", "default"):
        problems.append(f"size {size!r} is not small or default")
    if layout not in ("history", "tseries"):
        problems.append(f"layout {layout!r} is not history or tseries")
    from synth.model_specs import OUTPUTS  # with the writers: imported late

    if output not in OUTPUTS:
        problems.append(f"output {output!r} is not one of {', '.join(OUTPUTS)}")
    if design not in PPE_DESIGNS:
        problems.append(f"design {design!r} is not one of {', '.join(PPE_DESIGNS)}")
    if members < 1 or years < 1:
        problems.append(f"members ({members}) and years ({years}) must be at least 1")
    if problems:
        raise ConfigurationError("cannot synthesize: " + "; ".join(problems))


def synthesize(outdir: str | Path, *, kind: str, scenario: str = "greenland_runoff",
               members: int = 8, years: int = 30, seed: int = 0, flavour: str = "cesm3",
               size: str = "default", layout: str = "history", progress: bool = False,
               design: str = "oaat", packed: bool = False, output: str = "full",
               parameters: str = "none") -> Path:
    """Write a synthetic ensemble and its ``truth.json`` under ``outdir``.

    Parameters
    ----------
    outdir
        Directory to write into (created); see the module docstring for the layout.
    kind
        ``freeze-database``, ``pertlim``, ``control``, ``candidate`` or ``ppe``.
    scenario
        Planted cause (:data:`synth.scenarios.SCENARIOS`); ignored for ``ppe``.
    members
        Members per ensemble; for an OAAT ``ppe`` the number of default-parameter members
        (the default and its replicates), for a sampled one the number of samples.
    years
        Model years, from January of year 1.
    seed
        Same arguments and seed give byte-identical signals.
    flavour, size, layout
        ``cesm3``/``cesm2`` names and grids, grid size, ``history`` or ``tseries`` files.
    progress
        Show a tqdm bar per ensemble.
    design
        ``oaat`` or ``sampled`` (``ppe`` only).
    packed
        ``tseries`` only: 16-bit packed fields, about half the size (lossy at ~1/65000 of
        each file's range).
    output
        ``full`` or ``reduced``: what a lean production run writes (no CAM ``LANDFRAC``,
        ``PRECC`` + ``PRECL`` instead of ``PRECT``, no ocean velocities), so the readers'
        fallbacks are exercised.
    parameters
        ``freeze-database`` only: ``freeze`` or ``null`` writes ``params.csv`` and
        ``parameters.csv`` whose values decide (or, for ``null``, do not decide) the freezes
        (:mod:`synth.parameters`).

    Returns
    -------
    Path
        ``outdir``.
    """
    _check(kind, members, years, flavour, size, layout, design, output)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    options = WriteOptions(outdir, flavour, size, layout, seed, progress, packed,
                           output=output, parameters=parameters)
    if kind == "ppe":
        body = _write_ppe(members, years, design, options)
    else:
        body = _write_coupled(kind, get_scenario(scenario), members, years, options)
    truth = {"schema": 1, "generator": "synth", "esmwatch_version": __version__,
             "kind": kind, "flavour": flavour, "start_year": START_YEAR, "years": years,
             "seed": seed, "output": output, **body}
    (outdir / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=False) + "\n")
    logger.info("wrote %s ensemble to %s", kind, outdir)
    return outdir
