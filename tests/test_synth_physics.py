"""The synthetic Labrador Sea: planted causes freeze members, decoys do nothing, truth is kept.

Physics tests run the model without files (16 members x 30 years per scenario, seed 0); the
file tests write tiny ensembles with the real writers and check the layout and truth.json.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ensembles.errors import ConfigurationError
from ensembles.filenames import discover, split_case
from ensembles.registry import features as registry_features
from synth import ensemble, physics, ppe_land
from synth.scenarios import PPE_PARAMETERS, SCENARIOS, Scenario, classify

MEMBERS, YEARS, SEED = 16, 30, 0
PLANTED = ("greenland_runoff", "sea_ice_import", "precipitation")
DECOY_PAIRS = {  # a main-driver feature and a feature of the co-varying decoy
    "greenland_runoff": ("qrunoff_greenland", "qrunoff_north_america_ne"),
    "sea_ice_import": ("hi_baffin", "hi_arctic"),
    "precipitation": ("prect_labsea", "u10_labsea"),
}


@pytest.fixture(scope="module")
def database() -> dict[str, physics.Simulation]:
    """A freeze database per scenario, simulated once for the module."""
    return {name: ensemble.simulate_ensemble("freeze-database", name, MEMBERS, YEARS, SEED)
            for name in (*PLANTED, "null")}


def _annual(series: np.ndarray) -> np.ndarray:
    return series.reshape(series.shape[0], -1, physics.MONTHS).mean(axis=2)


def _march(series: np.ndarray) -> np.ndarray:
    return series[:, physics.MARCH :: physics.MONTHS]


def _jfm(series: np.ndarray) -> np.ndarray:
    return series.reshape(series.shape[0], -1, physics.MONTHS)[:, :, :3].mean(axis=2)


def _pre_onset_effect(sim: physics.Simulation, process: str, years: int = 5) -> float:
    """Cohen's d of a process's interior-freshwater channel, 5 years before onset.

    Members that never froze are measured over the same years before the median onset, so
    both groups are compared at the same model years.
    """
    channel = _annual(physics.freshwater_channel(physics.PROCESSES[process], sim.drivers))
    onset = sim.onset_index
    reference = int(np.median(onset[sim.froze]))
    ends = np.where(sim.froze, onset, reference)
    window = np.array([channel[i, end - years : end].mean() for i, end in enumerate(ends)])
    frozen, never = window[sim.froze], window[~sim.froze]
    pooled = np.sqrt(0.5 * (frozen.var(ddof=1) + never.var(ddof=1)))
    return float((frozen.mean() - never.mean()) / pooled)


def _monthly_anomaly(series: np.ndarray) -> np.ndarray:
    """Standardised anomaly from each calendar month's ensemble climatology."""
    by_month = series.reshape(series.shape[0], -1, physics.MONTHS)
    sd = by_month.std(axis=(0, 1))
    return ((by_month - by_month.mean(axis=(0, 1))) / np.where(sd > 0, sd, 1.0)).reshape(
        series.shape)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over members of the correlation of monthly anomalies."""
    x, y = _monthly_anomaly(a), _monthly_anomaly(b)
    return float(np.mean([np.corrcoef(x[i], y[i])[0, 1] for i in range(len(x))]))


# --- the model -------------------------------------------------------------------------
def test_every_registry_feature_is_simulated(database: dict[str, physics.Simulation]) -> None:
    sim = database["greenland_runoff"]
    assert set(sim.features) == set(registry_features())
    for name, values in sim.features.items():
        assert values.shape == (MEMBERS, YEARS * physics.MONTHS), name
        assert np.all(np.isfinite(values)), name


@pytest.mark.parametrize("process", list(physics.PROCESSES))
def test_driver_tables_match_the_registry(process: str) -> None:
    """Each synthetic driver feature is a registry driver of the process that generates it;
    the rest are upstream co-symptoms, registry state (never a source)."""
    catalogue = registry_features()
    for feature in physics.PROCESSES[process].features:
        entry = catalogue[feature.name]
        if entry.role == "state":
            assert entry.process.startswith("upstream_"), feature.name
            assert feature.fw_weight == 0.0 and not feature.budget, feature.name
            continue
        assert entry.process == process, feature.name
        assert entry.role == "driver", feature.name
        assert len(feature.clim) == len(feature.amp) == len(feature.own) == physics.MONTHS


def test_convecting_climate_has_realistic_magnitudes(
        database: dict[str, physics.Simulation]) -> None:
    sim = database["greenland_runoff"]
    f, early = sim.features, slice(0, 5 * physics.MONTHS)
    salinity = _annual(f["so_upper_labsea"][:, early])
    assert salinity.min() > 34.5 and salinity.max() < 34.9
    assert np.all((_march(f["hmxl_labsea_interior"][:, early]) > 1000)
                  & (_march(f["hmxl_labsea_interior"][:, early]) < 2100))
    assert np.all(f["xmxl_labsea_interior"] >= f["hmxl_labsea_interior"])
    assert _jfm(f["aice_labsea_interior"][:, early]).max() < 0.2
    greenland = _annual(f["friver_west_greenland_shelf"] + f["ficeberg_labsea"])[:, :5]
    assert 3.0 < greenland.mean() < 12.0  # mSv: "a few mSv" reach the Labrador Sea
    assert np.all(f["evs_labsea"] <= 0) and np.all(f["qflx_labsea"] >= 0)
    assert np.all((f["aice_labsea"] >= 0) & (f["aice_labsea"] <= 1))


@pytest.mark.parametrize("scenario", [*PLANTED, "null"])
def test_about_half_of_a_database_freezes_after_year_eight(
        database: dict[str, physics.Simulation], scenario: str) -> None:
    sim = database[scenario]
    assert 0.3 <= sim.froze.mean() <= 0.7
    assert sim.onset_index[sim.froze].min() >= 8


@pytest.mark.parametrize("scenario", [*PLANTED, "null"])
def test_a_freeze_persists_shallow_icy_and_fresh(
        database: dict[str, physics.Simulation], scenario: str) -> None:
    sim = database[scenario]
    march = _march(sim.features["hmxl_labsea_interior"])
    ice = _jfm(sim.features["aice_labsea_interior"])
    salinity = _annual(sim.features["so_upper_labsea"])
    for member in np.flatnonzero(sim.froze):
        onset = sim.onset_index[member]
        after = slice(onset + 1, None)
        assert np.all(march[member, after] < 300), member
        assert np.all(ice[member, after] > 0.6), member
        if onset + 4 <= YEARS:  # the freeze itself, before the ramp freshens further
            drop = salinity[member, :5].mean() - salinity[member, onset + 1 : onset + 4].mean()
            assert 0.2 < drop < 0.8, (member, drop)


@pytest.mark.parametrize("scenario", [*PLANTED, "null"])
def test_feedbacks_respond_to_the_freeze(database: dict[str, physics.Simulation],
                                         scenario: str) -> None:
    """Ice insulates: winter heat loss and latent heat collapse; local ice melt grows."""
    sim = database[scenario]
    f = sim.features
    for member in np.flatnonzero(sim.froze)[:3]:
        before = slice(0, 5)
        after = slice(sim.onset_index[member] + 1, None)
        heat = _jfm(f["hfds_labsea"])[member]
        latent = _jfm(f["lhflx_labsea"])[member]
        assert heat[after].mean() > heat[before].mean() + 100  # less negative: less loss
        assert latent[after].mean() < 0.5 * latent[before].mean()
        melt = f["fsitherm_labsea"].reshape(MEMBERS, -1, 12)[member, :, 3:5].mean(axis=1)
        assert melt[after].mean() > melt[before].mean() + 10


@pytest.mark.parametrize("scenario", PLANTED)
def test_the_main_driver_is_high_before_onset(database: dict[str, physics.Simulation],
                                              scenario: str) -> None:
    effect = _pre_onset_effect(database[scenario], SCENARIOS[scenario].main_driver)
    assert effect > 2.0


def test_no_driver_carries_information_in_the_null_scenario(
        database: dict[str, physics.Simulation]) -> None:
    sim = database["null"]
    effects = {name: _pre_onset_effect(sim, name) for name, process in physics.PROCESSES.items()
               if process.fw_per_unit}
    assert max(abs(e) for e in effects.values()) < 1.5, effects


@pytest.mark.parametrize("scenario", PLANTED)
def test_the_covarying_decoy_correlates_but_has_no_effect(
        database: dict[str, physics.Simulation], scenario: str) -> None:
    sim = database[scenario]
    spec = SCENARIOS[scenario]
    driver_feature, decoy_feature = DECOY_PAIRS[scenario]
    assert 0.4 < _correlation(sim.features[driver_feature], sim.features[decoy_feature]) < 0.85

    other = physics.make_drivers(spec, sim.params, physics.draw_noise(
        np.random.default_rng(99), MEMBERS, YEARS * physics.MONTHS))
    decoys = {f.name for name in spec.decoys for f in physics.PROCESSES[name].features}
    swapped = {name: other[name] if name in decoys else series
               for name, series in sim.drivers.items()}
    rerun = physics.integrate(spec, sim.params, swapped, sim.noise, sim.initial)
    assert np.array_equal(rerun.salinity, sim.column.salinity)

    main = {f.name for f in physics.PROCESSES[spec.main_driver].features}
    swapped = {name: other[name] if name in main else series
               for name, series in sim.drivers.items()}
    rerun = physics.integrate(spec, sim.params, swapped, sim.noise, sim.initial)
    assert not np.allclose(rerun.salinity, sim.column.salinity)


def test_land_and_ocean_runoff_tell_the_same_story_unless_routed_away(
        database: dict[str, physics.Simulation]) -> None:
    """Greenland runoff reaches the shelf; co-varying continental runoff goes to Hudson Bay."""
    f = database["greenland_runoff"].features
    assert _correlation(f["qrunoff_greenland"], f["friver_west_greenland_shelf"]) > 0.8
    assert abs(_correlation(f["qrunoff_greenland"], f["friver_labrador_shelf"])) < 0.2
    assert _correlation(f["qrunoff_greenland"], f["qrunoff_north_america_ne"]) > 0.4


def test_simulation_is_deterministic_and_members_are_independent_of_ensemble_size() -> None:
    first = ensemble.simulate_ensemble("pertlim", "precipitation", 3, 4, seed=7)
    again = ensemble.simulate_ensemble("pertlim", "precipitation", 3, 4, seed=7)
    larger = ensemble.simulate_ensemble("pertlim", "precipitation", 5, 4, seed=7)
    other = ensemble.simulate_ensemble("pertlim", "precipitation", 3, 4, seed=8)
    for name, values in first.features.items():
        assert np.array_equal(values, again.features[name]), name
        assert np.array_equal(values, larger.features[name][:3]), name
    assert not np.array_equal(first.features["pr_labsea"], other.features["pr_labsea"])


def test_pertlim_members_share_parameters_but_not_their_fate() -> None:
    sim = ensemble.simulate_ensemble("pertlim", "greenland_runoff", 12, YEARS, SEED)
    params = sim.params
    for name in params.names():
        values = getattr(params, name)
        if name == "initial_s_perturbation":
            assert np.allclose(values, ensemble.PERTLIM_STEP * np.arange(1, 13), rtol=0,
                               atol=1e-20)
        else:
            assert np.all(values == values[0]), name
    assert 0 < sim.froze.sum() < len(sim.froze)


def test_control_rarely_freezes_and_candidate_changes_one_parameter() -> None:
    control = ensemble.simulate_ensemble("control", "greenland_runoff", 8, YEARS, SEED)
    assert control.froze.sum() <= 1
    reference, candidate = ensemble.plan_ensemble("candidate", "greenland_runoff", 4, 5)
    changed = [name for name in reference.params.names()
               if not np.array_equal(getattr(reference.params, name),
                                     getattr(candidate.params, name))]
    assert changed == [ensemble.CANDIDATE_CHANGE[0]]
    assert (reference.subdir, candidate.subdir) == ("reference", "candidate")


def test_scenarios_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="not one of the synthetic driver processes"):
        Scenario("bad", "unknown driver", main_driver="volcanoes")
    with pytest.raises(ConfigurationError, match="no freshwater channel"):
        Scenario("bad", "winds cannot freshen", main_driver="wind_stress")
    with pytest.raises(ConfigurationError, match="unknown synthetic scenario"):
        ensemble.simulate_ensemble("pertlim", "volcanoes", 2, 1)
    for spec in SCENARIOS.values():
        assert spec.main_driver not in spec.decoys


# --- perturbed-parameter ensembles -------------------------------------------------------
def test_land_response_plants_each_class_exactly() -> None:
    n_months = 24
    for p in PPE_PARAMETERS:
        assert classify(p.offline_effect, p.coupled_effect) == p.verdict
        values = [{q.name: q.default for q in PPE_PARAMETERS} for _ in range(2)]
        values[0][p.name], values[1][p.name] = p.low, p.high
        for setup in ("offline", "coupled"):
            response = ppe_land.land_response(PPE_PARAMETERS, values, setup, n_months)
            jja = response["eflx_lh_tot_north_america_ne"].reshape(2, -1, 12)[:, :, 5:8].mean(
                axis=(1, 2))
            assert jja[1] - jja[0] == pytest.approx(p.effect(setup)), (p.name, setup)
    assert {p.verdict for p in PPE_PARAMETERS} >= {
        "amplified", "damped", "sign-flip", "no-effect", "coupled-only", "consistent"}


@pytest.mark.parametrize("design", ["oaat", "sampled"])
def test_ppe_design_numbers_coupled_runs_differently(design: str) -> None:
    members = ensemble.ppe_design(design, 4, np.random.default_rng(0))
    assert all(m.coupled_number != m.offline_number for m in members)
    assert sorted(m.coupled_number for m in members) == list(range(len(members)))
    if design == "oaat":
        assert len(members) == 4 + 2 * len(PPE_PARAMETERS)
        default = members[0].values
        for m in members[4:]:
            assert sum(m.values[k] != default[k] for k in default) == 1
    else:
        for p in PPE_PARAMETERS:
            assert all(p.low <= m.values[p.name] <= p.high for m in members)


# --- files -------------------------------------------------------------------------------
def _cases(root: Path) -> set[str]:
    files, errors = discover([root])
    assert not errors
    return {f.case for f in files}


def test_synthesize_writes_a_freeze_database_and_its_truth(tmp_path: Path) -> None:
    pytest.importorskip("synth.writers")
    root = ensemble.synthesize(tmp_path / "db", kind="freeze-database", members=3, years=2,
                               size="small")
    again = ensemble.synthesize(tmp_path / "again", kind="freeze-database", members=3, years=2,
                                size="small", layout="tseries")
    assert (root / "truth.json").read_text() == (again / "truth.json").read_text()
    truth = json.loads((root / "truth.json").read_text())
    cases = [m["case"] for m in truth["members"]]
    assert cases == [f"b.e30_alpha09b.B1850C_MTso.ne30_t232_wgx3.{n:03d}" for n in (1, 2, 3)]
    assert _cases(root) == set(cases)
    for case in cases:
        assert sorted(p.name for p in (root / case).iterdir()) == ["atm", "ice", "lnd", "ocn"]
    assert truth["kind"] == "freeze-database"
    assert truth["main_driver"] == "greenland_runoff"
    assert truth["covarying_decoy"] == "continental_runoff"
    assert "greenland_runoff" not in truth["decoys"]
    member = truth["members"][0]
    assert set(member["parameters"]) == set(physics.NOMINAL_PARAMETERS)
    assert member["froze"] is False and member["first_freeze"] is None


def test_synthesize_candidate_writes_reference_beside_it(tmp_path: Path) -> None:
    pytest.importorskip("synth.writers")
    root = ensemble.synthesize(tmp_path / "cand", kind="candidate", members=2, years=1,
                               size="small", flavour="cesm2", layout="tseries")
    truth = json.loads((root / "truth.json").read_text())
    for role in ("reference", "candidate"):
        cases = {m["case"] for m in truth["ensembles"][role]["members"]}
        assert _cases(root / role) == cases
        assert all(split_case(c)[0] == f"b.e21.B1850.f09_g17.{role}" for c in cases)
    change = truth["ensembles"]["candidate"]["design"]["changed_parameter"]
    assert change["parameter"] == ensemble.CANDIDATE_CHANGE[0]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_synthesize_writes_matched_ppe_with_shuffled_numbering(tmp_path: Path) -> None:
    pytest.importorskip("synth.writers")
    root = ensemble.synthesize(tmp_path / "ppe", kind="ppe", members=2, years=1, size="small")
    names = [p.name for p in PPE_PARAMETERS]
    tables = {setup: _read_csv(root / f"{setup}_params.csv") for setup in ("coupled", "offline")}
    for setup, rows in tables.items():
        assert list(rows[0]) == ["member", *names]
        assert {r["member"] for r in rows} == _cases(root / setup)
    assert all(c.startswith("b.e30.B1850.ne30_t232.COUP") for c in _cases(root / "coupled"))
    assert all(c.startswith("i.e30.I2000Clm60Sp.ne30_t232.OFFL")
               for c in _cases(root / "offline"))
    for case in _cases(root / "offline"):
        assert [p.name for p in (root / "offline" / case).iterdir()] == ["lnd"]
    for case in _cases(root / "coupled"):
        assert sorted(p.name for p in (root / "coupled" / case).iterdir()) == ["atm", "lnd"]

    parameters = _read_csv(root / "parameters.csv")
    assert [r["parameter"] for r in parameters] == names
    assert list(parameters[0]) == ["parameter", "default", "min", "max", "units", "description"]
    by_case = {setup: {r["member"]: r for r in rows} for setup, rows in tables.items()}
    for pair in _read_csv(root / "crosswalk.csv"):
        assert pair["coupled"][-4:] != pair["offline"][-4:]
        assert by_case["coupled"][pair["coupled"]] == {**by_case["offline"][pair["offline"]],
                                                      "member": pair["coupled"]}
    truth = json.loads((root / "truth.json").read_text())
    assert {p["parameter"]: p["class"] for p in truth["parameters"]} == {
        p.name: p.verdict for p in PPE_PARAMETERS}


def test_unknown_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="kind 'pert' is not one of"):
        ensemble.synthesize(tmp_path, kind="pert")
    with pytest.raises(ConfigurationError, match="flavour 'cesm4'"):
        ensemble.synthesize(tmp_path, kind="pertlim", flavour="cesm4")


def test_parameters_replace_keeps_shapes() -> None:
    params = physics.MemberParameters.nominal(3, driver_gain=[0.9, 1.0, 1.1])
    changed = params.with_values(mixing_efficiency=0.2)
    assert changed.mixing_efficiency.shape == (3,)
    assert replace(changed, driver_gain=params.driver_gain).record(2)["driver_gain"] == 1.1
