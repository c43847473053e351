"""Coupled-vs-offline sensitivity: targets, Sobol on Ishigami, planted classes, result, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cftime
import jsonschema
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import qmc
from typer.testing import CliRunner

from detectors.sensitivity import emulator as emu
from detectors.sensitivity.analysis import SensitivitySettings, analyse_sensitivity
from detectors.sensitivity.effects import oaat_effects, replicate_noise
from detectors.sensitivity.results import SensitivityResult
from detectors.sensitivity.targets import parse_target, resolve_target, season_means
from ensembles.errors import ConfigurationError
from ensembles.ppe import load_ppe_inputs, recognise_design
from service.cli import app
from synth.ensemble import simulate_ppe, synthesize, write_ppe_tables
from synth.scenarios import PPE_PARAMETERS

TARGET = "eflx_lh_tot:north_america_ne:JJA"
TARGET_FEATURE = "eflx_lh_tot_north_america_ne"
PLANTED = {p.name: p.verdict for p in PPE_PARAMETERS}
SCHEMA = SensitivityResult.model_json_schema(by_alias=True)


def _shuffled_crosswalk(root: Path, seed: int) -> Path:
    """The generator's crosswalk with its rows in a random order (numbers already deranged)."""
    with (root / "crosswalk.csv").open() as handle:
        rows = list(csv.reader(handle))
    order = np.random.default_rng(seed).permutation(len(rows) - 1)
    path = root / "crosswalk_shuffled.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([rows[0], *(rows[1:][i] for i in order)])
    return path


def _analyse(design: str, members: int, years: int, root: Path,
             settings: SensitivitySettings) -> SensitivityResult:
    """In-memory PPE: coupled parameters known only through the offline table + crosswalk."""
    sim = simulate_ppe(design, members, years, seed=0)
    write_ppe_tables(root, sim)
    inputs = load_ppe_inputs(sim.cases, root / "offline_params.csv", None,
                             root / "parameters.csv", _shuffled_crosswalk(root, 1))
    tables = {setup: sim.table(setup) for setup in ("coupled", "offline")}
    return analyse_sensitivity(tables, inputs, TARGET, settings)


@pytest.fixture(scope="module")
def oaat_result(tmp_path_factory) -> SensitivityResult:
    """8 default members x 120 years: enough for every planted class (30 years is not)."""
    return _analyse("oaat", 8, 120, tmp_path_factory.mktemp("oaat"), SensitivitySettings())


@pytest.fixture(scope="module")
def sampled_result(tmp_path_factory) -> SensitivityResult:
    settings = SensitivitySettings(n_bootstrap=30, emulators=("linear", "gp"),
                                   sobol_base_samples=256)
    return _analyse("sampled", 40, 20, tmp_path_factory.mktemp("sampled"), settings)


# --- targets ------------------------------------------------------------------------------
def test_target_parsing_and_clear_errors():
    spec = parse_target("eflx_lh_tot:north_america_ne:djf:0005-0010")
    assert spec.months == (12, 1, 2) and spec.period == (5, 10)
    assert spec.feature == "eflx_lh_tot_north_america_ne"
    assert parse_target("tsa:greenland:ANN").months == tuple(range(1, 13))
    assert parse_target("tsa:greenland:jul").months == (7,)
    with pytest.raises(ConfigurationError, match="unknown season 'XYZ'"):
        parse_target("eflx_lh_tot:north_america_ne:XYZ")
    with pytest.raises(ConfigurationError, match="no registered feature eflx_lh_tot_labsea"):
        parse_target("eflx_lh_tot:labsea:JJA")
    with pytest.raises(ConfigurationError, match="unknown variable 'latent'"):
        parse_target("latent:north_america_ne:JJA")
    with pytest.raises(ConfigurationError, match="expected variable:region:season"):
        parse_target("eflx_lh_tot:JJA")


def test_an_atmosphere_target_names_the_land_variable_for_offline_runs():
    sim = simulate_ppe("oaat", 1, 1, seed=0)
    tables = {setup: sim.table(setup) for setup in ("coupled", "offline")}
    with pytest.raises(ConfigurationError, match=r"no atm output.*eflx_lh_tot instead"):
        resolve_target(parse_target("lhflx:labsea:JJA"), tables)


def test_djf_belongs_to_the_year_it_ends_in_and_incomplete_seasons_are_dropped():
    time = [cftime.DatetimeNoLeap(1 + i // 12, i % 12 + 1, 15) for i in range(36)]
    values = np.array([[100.0 * (1 + i // 12) + (i % 12 + 1) for i in range(36)]])
    series = xr.DataArray(values, dims=("member", "time"),
                          coords={"member": ["a"], "time": time})
    djf = season_means(series, parse_target("tsa:greenland:DJF"))
    assert list(djf["year"].values) == [2, 3]  # DJF of year 1 lacks December of year 0
    assert djf.sel(year=2).item() == pytest.approx((112 + 201 + 202) / 3)
    jja = season_means(series, parse_target("tsa:greenland:JJA:0002-0003"))
    assert list(jja["year"].values) == [2, 3]
    with pytest.raises(ConfigurationError, match="no complete JJA season in 0007-0009"):
        season_means(series, parse_target("tsa:greenland:JJA:0007-0009"))


# --- Sobol through an emulator ----------------------------------------------------------------
def test_sobol_through_the_emulator_matches_ishigami():
    """Analytic S1 of Ishigami (a=7, b=0.1): 0.314, 0.442, 0.0."""
    u = qmc.LatinHypercube(d=3, seed=0).random(200)
    x = -np.pi + 2.0 * np.pi * u
    y = np.sin(x[:, 0]) + 7.0 * np.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * np.sin(x[:, 0])
    model = emu.choose_emulator(u, y, ("linear", "gp"), folds=3, tolerance=0.01, seed=0)
    assert model.name == "gp" and model.cv.r2 > 0.9
    names = ["x1", "x2", "x3"]
    sample = emu.sobol_sample(names, 4096, seed=0)
    indices = emu.sobol_indices(names, sample, model.predict(sample), 0.9, seed=0)
    assert np.allclose(indices.s1, [0.314, 0.442, 0.0], atol=0.05)
    assert np.allclose(indices.st, [0.558, 0.442, 0.244], atol=0.05)


# --- planted classes -------------------------------------------------------------------------
def test_oaat_design_recovers_every_planted_class(oaat_result):
    assert oaat_result.design == "oaat"
    assert {p.parameter: p.verdict for p in oaat_result.parameters} == PLANTED
    for row in oaat_result.parameters:
        assert row.offline.low_value < row.offline.high_value
    assert {n.setup: n.source for n in oaat_result.noise} == {"coupled": "replicates",
                                                              "offline": "replicates"}
    assert oaat_result.pairing["method"] == "crosswalk"


def test_sampled_design_recovers_every_planted_class_with_shap_and_sobol(sampled_result):
    result = sampled_result
    assert result.design == "sampled"
    assert {p.parameter: p.verdict for p in result.parameters} == PLANTED
    assert result.emulator is not None and len(result.emulator.fits) == 2
    for fit in result.emulator.fits:
        assert fit.cv_r2 > 0.8 and fit.shap_additivity_error < 1e-6
        assert set(fit.candidates) == {"linear", "gp"}
    s1 = {(r.setup, r.parameter): r.s1 for r in result.sobol}
    assert s1[("offline", "froot_leaf")] < 0.02 and s1[("offline", "medlynslope")] > 0.2
    shap = {(r.setup, r.parameter): r for r in result.shap}
    assert shap[("coupled", "medlynslope")].direction == "-"
    assert shap[("offline", "medlynslope")].direction == "+"
    assert len(shap[("coupled", "kmax")].values) == 40


def test_no_false_sign_flip_when_the_coupled_setup_is_pure_noise(tmp_path):
    """Coupled responses replaced by default-parameter replicates of another run: no effect."""
    sim = simulate_ppe("oaat", 8, 10, seed=4)
    write_ppe_tables(tmp_path, sim)
    inputs = load_ppe_inputs(sim.cases, tmp_path / "coupled_params.csv",
                             tmp_path / "offline_params.csv", tmp_path / "parameters.csv",
                             tmp_path / "crosswalk.csv")
    tables = {setup: sim.table(setup) for setup in ("coupled", "offline")}
    n = tables["coupled"].sizes["member"]
    null = simulate_ppe("oaat", n, 10, seed=5)  # its first n parameter sets are all default
    replicates = [null.cases["coupled"][m.coupled_number] for m in null.design[:n]]
    noise = null.table("coupled")[TARGET_FEATURE].sel(member=replicates)
    tables["coupled"][TARGET_FEATURE] = tables["coupled"][TARGET_FEATURE].copy(data=noise.values)
    result = analyse_sensitivity(tables, inputs, TARGET, SensitivitySettings())
    verdicts = {p.parameter: p.verdict for p in result.parameters}
    # no class that needs a present coupled effect in both setups; a single false "present"
    # among the 14 simultaneous intervals is allowed 10% of the time (here: froot_leaf)
    both = {"sign-flip", "amplified", "damped", "consistent"}
    assert not both & set(verdicts.values()), verdicts
    assert sum(v == "coupled-only" for v in verdicts.values()) <= 1, verdicts


def test_an_oaat_effect_and_its_interval_by_hand():
    """Replicates 10, 11, 9, 10 (sd sqrt(2/3), df 3); low end 7, high end 15.

    effect = 15 - 7 = 8; se = sqrt(2/3) x sqrt(1 + 1) = 1.1547; t(0.95, 3) = 2.3534;
    90% CI = 8 +- 2.7175.
    """
    members = ["d0", "d1", "d2", "d3", "lo", "hi"]
    values = pd.DataFrame({"p": [1.0] * 4 + [0.0, 2.0]}, index=members)
    design = recognise_design("coupled", values, "test")
    response = pd.Series([10.0, 11.0, 9.0, 10.0, 7.0, 15.0], index=members)
    noise = replicate_noise("coupled", response, None, design)
    assert noise.sd == pytest.approx(0.8165, abs=1e-4) and noise.df == 3
    found, _ = oaat_effects(response, design, noise, level=0.9)
    p = found["p"]
    assert (p.low, p.high, p.effect) == (7.0, 15.0, 8.0)
    assert p.ci == pytest.approx((5.2825, 10.7175), abs=1e-3)
    assert (p.low_value, p.high_value, p.n_low, p.n_high) == (0.0, 2.0, 1, 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_small_ppe_says_inconclusive_instead_of_a_wrong_class(tmp_path, seed):
    """4 default members x 15 years (the audit's case): some classes cannot be told apart."""
    sim = simulate_ppe("oaat", 4, 15, seed=seed)
    write_ppe_tables(tmp_path, sim)
    inputs = load_ppe_inputs(sim.cases, tmp_path / "coupled_params.csv",
                             tmp_path / "offline_params.csv", tmp_path / "parameters.csv",
                             tmp_path / "crosswalk.csv")
    tables = {setup: sim.table(setup) for setup in ("coupled", "offline")}
    result = analyse_sensitivity(tables, inputs, TARGET, SensitivitySettings())
    verdicts = {p.parameter: p.verdict for p in result.parameters}
    wrong = {n: v for n, v in verdicts.items() if v not in (PLANTED[n], "inconclusive")}
    assert not wrong, verdicts
    assert "inconclusive" in verdicts.values()


def test_spin_up_years_are_dropped_and_stated(oaat_result, tmp_path):
    assert oaat_result.spinup_years == 2 and oaat_result.target.years[0] == 3  # runs start at 1
    assert any("0001-0002 dropped as spin-up" in n for n in oaat_result.notes)
    kept = _analyse("oaat", 2, 4, tmp_path, SensitivitySettings(spinup_years=0))
    assert kept.target.years == [1, 2, 3, 4]
    with pytest.raises(ConfigurationError, match="leaves none"):
        _analyse("oaat", 2, 2, tmp_path, SensitivitySettings())


def test_oaat_intervals_are_calibrated_on_pure_noise():
    """90% CIs of null effects exclude zero ~10% of the time (so a null sign flip is <= 5%)."""
    rng = np.random.default_rng(0)
    members = ["d0", "d1", "d2", "d3", "lo", "hi"]
    values = pd.DataFrame({"p": [1.0] * 4 + [0.0, 2.0]}, index=members)
    design = recognise_design("coupled", values, "test")
    excluded = 0
    draws = 1000
    for _ in range(draws):
        response = pd.Series(rng.standard_normal(len(members)), index=members)
        noise = replicate_noise("coupled", response, None, design)
        found, _ = oaat_effects(response, design, noise, level=0.9)
        excluded += not found["p"].ci[0] <= 0.0 <= found["p"].ci[1]
    assert 0.07 < excluded / draws < 0.13


# --- the result contract -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["oaat_result", "sampled_result"])
def test_result_json_is_valid_against_its_published_schema(name, request):
    result = request.getfixturevalue(name)
    document = json.loads(result.model_dump_json(by_alias=True))
    jsonschema.validate(document, SCHEMA)
    assert document["schema"] == 2 and document["job"] == "sensitivity"
    row = document["parameters"][0]
    assert {"parameter", "offline", "coupled", "class"} <= set(row)
    assert {"effect", "ci", "low", "high"} <= set(row["offline"])
    assert set(document["target"]) >= {"variable", "component", "region", "season", "period",
                                       "units"}
    assert document["target"]["component"] == "lnd" and document["target"]["units"] == "W m-2"


# --- the CLI end to end ----------------------------------------------------------------------
def test_cli_analyze_sensitivity_end_to_end_on_a_tiny_ppe(tmp_path):
    data = synthesize(tmp_path / "ppe", kind="ppe", design="oaat", members=2, years=3,
                      size="small", seed=0)
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["analyze", "sensitivity", "--coupled", str(data / "coupled"),
                                 "--offline", str(data / "offline"), "--target", TARGET,
                                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "oaat design" in result.output and "medlynslope:" in result.output
    document = json.loads((out / "result.json").read_text())
    jsonschema.validate(document, SCHEMA)
    assert document["inputs"]["params"].endswith("coupled_params.csv")
    assert document["inputs"]["crosswalk"].endswith("crosswalk.csv")
    assert len(document["parameters"]) == len(PPE_PARAMETERS)
    html = (out / "report.html").read_text()
    assert "effects.png" in html and (out / "effects.png").stat().st_size > 1000
    bad = runner.invoke(app, ["analyze", "sensitivity", "--coupled", str(data / "coupled"),
                              "--offline", str(data / "offline"), "--target",
                              "eflx_lh_tot:north_america_ne:XYZ", "--out", str(out)])
    assert bad.exit_code == 1 and "unknown season 'XYZ'" in bad.output
    assert "Traceback" not in bad.output
    schema = runner.invoke(app, ["schema", "sensitivity"])
    assert schema.exit_code == 0 and '"sensitivity"' in schema.output
