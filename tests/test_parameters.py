"""Which parameter settings freeze: table contracts, emulator choice, importance, verdicts.

Data are the generator's (``synth.parameters``: ``albedo_snow`` main, ``vmix_background``
only through an interaction, three nuisance parameters; or a null) or small hand-made
Bernoulli draws whose rule the test states, never the analysis' own output.
"""

from __future__ import annotations

import json
import warnings

import jsonschema
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from detectors.parameters.analysis import ParametersSettings, analyse_parameters
from detectors.parameters.emulator import choose_classifier
from detectors.parameters.importance import explain
from detectors.parameters.region import what_if
from detectors.parameters.results import ParametersResult
from detectors.parameters.tables import ParameterInputs, load_parameter_inputs
from ensembles.errors import ConfigurationError, InputFileError
from ensembles.ppe import ParameterSpec
from service.cli import app
from synth import parameters as truth
from synth.ensemble import case_name, plan_ensemble, simulate_plan, synthesize
from synth.table import feature_table

CASES = [f"b.e30.B1850.ne30_t232.{i:03d}" for i in (1, 2, 3)]
SCHEMA = ParametersResult.model_json_schema(by_alias=True)


def _write(path, text: str):
    path.write_text(text)
    return path


@pytest.fixture
def spec_file(tmp_path):
    return _write(
        tmp_path / "parameters.csv",
        "parameter,default,min,max,units\nalb,0.8,0.7,0.9,1\nkappa,1.0,0.5,2.0,m2/s\n",
    )


# --- table contracts ---------------------------------------------------------------------
def test_table_matched_by_member_id_and_scaled_to_the_box(tmp_path, spec_file):
    table = _write(
        tmp_path / "params.csv", "member,alb,kappa\n003,0.9,2.0\n001,0.7,0.5\n002,0.8,1.25\n"
    )
    inputs = load_parameter_inputs(CASES, table, spec_file)
    assert list(inputs.values.index) == CASES  # reader order, not table order
    np.testing.assert_allclose(inputs.scaled(), [[0, 0], [0.5, 0.5], [1, 1]])
    np.testing.assert_allclose(inputs.default_scaled(), [0.5, 1 / 3])


def test_member_missing_from_the_table_is_named(tmp_path, spec_file):
    table = _write(tmp_path / "params.csv", "member,alb,kappa\n001,0.7,0.5\n002,0.8,1\n")
    with pytest.raises(InputFileError, match=r"no parameter row for 1 member.*\.003"):
        load_parameter_inputs(CASES, table, spec_file)


def test_row_for_an_unknown_member_is_an_error(tmp_path, spec_file):
    table = _write(
        tmp_path / "params.csv", "member,alb,kappa\n001,0.7,0.5\n002,0.8,1\n003,0.8,1\n009,0.8,1\n"
    )
    with pytest.raises(InputFileError, match="not found under the roots: 009"):
        load_parameter_inputs(CASES, table, spec_file)


def test_unknown_column_is_an_error(tmp_path, spec_file):
    table = _write(
        tmp_path / "params.csv", "member,alb,kappa,gamma\n001,0.7,0.5,1\n002,0.8,1,1\n003,0.8,1,2\n"
    )
    with pytest.raises(InputFileError, match=r"unknown parameter column.*gamma"):
        load_parameter_inputs(CASES, table, spec_file)


def test_value_outside_min_max_names_member_and_parameter(tmp_path, spec_file):
    table = _write(
        tmp_path / "params.csv", "member,alb,kappa\n001,0.7,0.5\n002,0.95,1\n003,0.8,1\n"
    )
    with pytest.raises(InputFileError, match=r"'alb' outside its range \[0.7, 0.9\].*002 = 0.95"):
        load_parameter_inputs(CASES, table, spec_file)


def test_without_parameters_csv_the_range_is_the_tables_and_constants_are_dropped(tmp_path):
    table = _write(tmp_path / "params.csv", "member,alb,fixed\n001,0.7,3\n002,0.9,3\n003,0.8,3\n")
    inputs = load_parameter_inputs(CASES, table)
    assert inputs.names == ["alb"] and inputs.default_scaled() is None
    assert any("constant" in n for n in inputs.notes)
    assert any("no parameters.csv" in n for n in inputs.notes)


def test_non_numeric_cell_is_reported_by_the_ppe_reader(tmp_path, spec_file):
    table = _write(tmp_path / "params.csv", "member,alb,kappa\n001,0.7,abc\n002,0.8,1\n003,0.8,1\n")
    with pytest.raises(InputFileError, match="'abc' is not a finite number"):
        load_parameter_inputs(CASES, table, spec_file)


# --- exact SHAP --------------------------------------------------------------------------
def test_exact_shap_equals_shaps_own_exact_enumeration():
    import shap

    rng = np.random.default_rng(0)
    x = rng.random((10, 4))

    def f(u):
        return 1 / (1 + np.exp(-(3 * u[:, 0] - 4 * u[:, 1] * u[:, 2] + 0.5 * u[:, 3])))

    ours = explain(f, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = shap.KernelExplainer(f, x).shap_values(x, nsamples=2**4, silent=True)
    np.testing.assert_allclose(ours.shap, theirs, atol=1e-10)
    assert ours.additivity_error < 1e-12
    pairs = ours.pair_statistic  # log-odds: only the product term interacts
    assert pairs[1, 2] > 0.1 and np.delete(pairs[np.triu_indices(4, 1)], 3).max() < 1e-9


# --- emulator choice ---------------------------------------------------------------------
def _bernoulli(logit, n, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.random((n, p))
    return x, rng.random(n) < 1 / (1 + np.exp(-logit(x)))


def test_choice_keeps_the_simple_model_for_main_effects_and_rejects_it_for_an_interaction():
    x, y = _bernoulli(lambda u: 8 * (u[:, 0] - 0.5), 80, 3, 1)
    chosen = choose_classifier(
        x, y, np.arange(80), ("logistic", "logistic_interactions", "gp"), 5, 2, 0.02, 0
    )
    assert chosen.name == "logistic"
    x, y = _bernoulli(lambda u: 40 * (u[:, 0] - 0.5) * (u[:, 1] - 0.5), 80, 3, 2)
    chosen = choose_classifier(
        x, y, np.arange(80), ("logistic", "logistic_interactions", "gp"), 5, 2, 0.02, 0
    )
    assert chosen.name != "logistic"
    scores = {n: s.log_loss for n, s in chosen.scores.items()}
    assert scores["logistic"] > scores[chosen.name] + 0.02


def test_choice_needs_two_members_of_each_class():
    x = np.random.default_rng(0).random((20, 2))
    y = np.zeros(20, bool)
    y[0] = True
    with pytest.raises(ConfigurationError, match="1 frozen and 19 unfrozen"):
        choose_classifier(x, y, np.arange(20), ("logistic",), 5, 1, 0.02, 0)


# --- what-if -----------------------------------------------------------------------------
def test_what_if_moves_the_parameter_that_lowers_risk_and_says_when_defaults_are_safe():
    x, y = _bernoulli(lambda u: 10 * (0.5 - u[:, 1]), 100, 3, 3)  # high u1: safe
    emulator = choose_classifier(x, y, np.arange(100), ("logistic",), 5, 1, 0.02, 0)
    emulator.bootstrap(20)
    found = what_if(emulator, np.array([0.5, 0.3, 0.5]), 0.2, 0.9)
    assert not found.already_safe and found.default_p > 0.5
    assert found.best.columns == (1,) and found.best.target[0] > 0.3
    assert found.best.p_freeze < 0.2
    assert what_if(emulator, np.array([0.5, 0.95, 0.5]), 0.2, 0.9).already_safe


# --- the whole analysis on the generator ---------------------------------------------------
def _database(design: str, seed: int, members: int, tmp_path):
    plan = plan_ensemble("freeze-database", "greenland_runoff", members, 30, seed, design)[0]
    sim = simulate_plan(plan, "greenland_runoff", 30, seed)
    cases = [case_name("cesm3", "freeze", i + 1) for i in range(members)]
    table = pd.DataFrame(plan.design["parameter_table"], index=pd.Index(cases, name="member"))
    specs = {p.name: ParameterSpec(p.name, p.low, p.high, p.default) for p in truth.PARAMETERS}
    return feature_table(sim, cases), ParameterInputs(table, specs, {})


FAST = ParametersSettings(
    candidates=("logistic", "logistic_interactions"),
    n_permutations=39,
    n_bootstrap=15,
    cv_repeats=1,
    region_points=256,
    sobol_base=64,
    grid_points=7,
    map_points=7,
)


def test_main_parameter_first_and_significant_no_nuisance_flagged(tmp_path):
    features, inputs = _database("freeze", 2, 60, tmp_path)
    result = analyse_parameters(features, inputs, FAST)
    jsonschema.validate(json.loads(result.model_dump_json(by_alias=True)), SCHEMA)
    rows = {r.parameter: r for r in result.parameters}
    assert result.parameters[0].parameter == truth.MAIN and rows[truth.MAIN].significant
    assert rows[truth.MAIN].direction == "-"  # lower albedo, more freezing
    assert not any(rows[n].significant for n in truth.NUISANCE)
    fractions = result.safe_region.fractions
    assert abs(sum(fractions.values()) - 1) < 1e-9
    best = result.what_if.best
    assert best is not None and truth.MAIN in best.parameters
    assert best.parameters[truth.MAIN].change > 0  # raise the albedo to freeze less


def test_null_database_flags_nothing(tmp_path):
    features, inputs = _database("null", 1, 60, tmp_path)
    result = analyse_parameters(features, inputs, FAST)
    assert not [r.parameter for r in result.parameters if r.significant]
    assert not [r.parameters for r in result.interactions if r.significant]


# --- the CLI on written files ---------------------------------------------------------------
@pytest.mark.slow
def test_cli_analyze_parameters_on_written_files(tmp_path):
    data = synthesize(
        tmp_path / "db",
        kind="freeze-database",
        members=16,
        years=20,
        seed=3,
        size="small",
        layout="tseries",
        packed=True,
        parameters="freeze",
    )
    assert (data / "params.csv").is_file() and (data / "parameters.csv").is_file()
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "analyze",
            "parameters",
            str(data),
            "--out",
            str(out),
            "--permutations",
            "19",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads((out / "result.json").read_text())
    jsonschema.validate(document, SCHEMA)
    assert document["files"]["table"].endswith("params.csv")
    html = (out / "report.html").read_text()
    assert "partial_dependence.png" in html and "safe_fraction.png" in html
    (data / "params.csv").write_text(
        (data / "params.csv").read_text().replace("member,albedo_snow", "member,albedo_snw")
    )
    bad = runner.invoke(
        app,
        ["analyze", "parameters", str(data), "--out", str(out), "--cache-dir", str(tmp_path / "c")],
    )
    assert bad.exit_code == 1 and "unknown parameter column" in bad.output
    assert "Traceback" not in bad.output and str(tmp_path) not in bad.output.split(":")[0]


# --- the generator's parameter designs --------------------------------------------------------
def test_generator_vmix_acts_only_through_albedo_and_the_null_is_flat():
    u = np.random.default_rng(0).random((200_000, len(truth.PARAMETERS)))
    z = truth.logit(u, "freeze")
    vmix_slope = np.polyfit(u[:, 1], z, 1)[0]
    low_albedo = u[:, 0] < 0.2
    assert abs(vmix_slope) < 0.1  # no main effect of vmix
    assert np.polyfit(u[low_albedo, 1], z[low_albedo], 1)[0] > 5  # but steep at low albedo
    assert np.polyfit(u[:, 2], z, 1)[0] == pytest.approx(0, abs=0.1)  # nuisance
    assert np.all(truth.freeze_probability(u[:100], "null") == 0.5)
    assert truth.freeze_probability(truth.scaled({}), "freeze")[0] > 0.5  # unsafe defaults


def test_generator_parameter_design_needs_the_freeze_database():
    with pytest.raises(ConfigurationError, match="needs --kind freeze-database"):
        plan_ensemble("pertlim", "greenland_runoff", 4, 10, 0, "freeze")
