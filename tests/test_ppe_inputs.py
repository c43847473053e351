"""PPE file contracts: parameter tables, parameters.csv, crosswalks, designs and pairing."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ensembles.errors import ConfigurationError, InputFileError
from ensembles.filenames import split_case
from ensembles.ppe import (
    find_default_files,
    load_ppe_inputs,
    match_members,
    read_crosswalk,
    read_parameter_table,
    read_parameters,
)
from synth.ensemble import simulate_ppe, write_ppe_tables

FILES = ("coupled_params.csv", "offline_params.csv", "parameters.csv", "crosswalk.csv")


@pytest.fixture(scope="module")
def oaat(tmp_path_factory):
    """A one-at-a-time PPE's members and the tables the generator writes (1 year, in memory)."""
    sim = simulate_ppe("oaat", 2, 1, seed=3)
    root = tmp_path_factory.mktemp("oaat")
    write_ppe_tables(root, sim)
    return sim, root


def _rows(path: Path) -> list[list[str]]:
    with path.open() as handle:
        return list(csv.reader(handle))


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_generator_tables_give_an_oaat_design_paired_by_the_crosswalk(oaat):
    sim, root = oaat
    inputs = load_ppe_inputs(sim.cases, root / "coupled_params.csv", root / "offline_params.csv",
                             root / "parameters.csv", root / "crosswalk.csv")
    assert inputs.design == "oaat" and inputs.pairing == "crosswalk"
    assert len(inputs.pairs) == len(sim.design)
    # numbers differ across setups: pairing by number would have been wrong for every pair
    assert all(split_case(c)[1][4:] != split_case(o)[1][4:] for c, o in inputs.pairs)
    for setup in ("coupled", "offline"):
        design = inputs.setups[setup]
        assert len(design.replicates) == 2
        assert all(len(members) == 2 for members in design.perturbed.values())
    assert inputs.parameters["medlynslope"].units == "kPa0.5"


def test_offline_table_and_crosswalk_alone_give_the_coupled_parameters(oaat, tmp_path):
    sim, root = oaat
    rows = _rows(root / "crosswalk.csv")
    rng = np.random.default_rng(0)
    shuffled = [rows[0], *(rows[1:][i] for i in rng.permutation(len(rows) - 1))]
    crosswalk = _write(tmp_path / "crosswalk.csv", shuffled)
    inputs = load_ppe_inputs(sim.cases, root / "offline_params.csv", None,
                             root / "parameters.csv", crosswalk)
    expected = load_ppe_inputs(sim.cases, root / "coupled_params.csv", None,
                               root / "parameters.csv", root / "crosswalk.csv")
    got = inputs.setups["coupled"].values
    assert np.array_equal(got.to_numpy(), expected.setups["coupled"].values.loc[got.index]
                          .to_numpy())
    assert "via" in inputs.setups["coupled"].source


def test_members_may_be_named_by_suffix(oaat, tmp_path):
    sim, root = oaat
    rows = _rows(root / "offline_params.csv")
    suffixed = [rows[0], *([split_case(r[0])[1], *r[1:]] for r in rows[1:])]
    table = _write(tmp_path / "suffix.csv", suffixed)
    inputs = load_ppe_inputs(sim.cases, root / "coupled_params.csv", table,
                             root / "parameters.csv")
    assert inputs.pairing == "parameter values"
    assert list(inputs.setups["offline"].values.index) == sim.cases["offline"]
    matched, unmatched = match_members(["OFFL0001", "0001", sim.cases["offline"][3]],
                                       sim.cases["offline"])
    assert matched == {"OFFL0001": sim.cases["offline"][1],
                       sim.cases["offline"][3]: sim.cases["offline"][3]}
    assert unmatched == ["0001"]  # a suffix is what follows the last dot, not part of it


def test_sampled_tables_are_recognised_as_sampled(tmp_path):
    sim = simulate_ppe("sampled", 12, 1, seed=0)
    write_ppe_tables(tmp_path, sim)
    inputs = load_ppe_inputs(sim.cases, tmp_path / "coupled_params.csv",
                             tmp_path / "offline_params.csv", tmp_path / "parameters.csv",
                             tmp_path / "crosswalk.csv")
    assert inputs.design == "sampled" and not inputs.setups["coupled"].perturbed


def test_a_table_that_does_not_match_the_members_names_the_file_and_members(oaat, tmp_path):
    sim, root = oaat
    rows = _rows(root / "coupled_params.csv")
    short = _write(tmp_path / "short.csv", rows[:-2])
    with pytest.raises(InputFileError, match=r"short\.csv: no parameter row for 2 coupled"):
        load_ppe_inputs(sim.cases, short, root / "offline_params.csv")
    foreign = _write(tmp_path / "foreign.csv", [rows[0], ["b.e30.other.COUP0099", *rows[1][1:]],
                                                *rows[1:]])
    with pytest.raises(InputFileError, match=r"foreign\.csv: row\(s\) for member\(s\) not "
                                             r"found.*COUP0099"):
        load_ppe_inputs(sim.cases, foreign, root / "offline_params.csv")
    wrong = _write(tmp_path / "wrong.csv", [rows[0], ["x.y.ABC0001", *rows[1][1:]]])
    with pytest.raises(InputFileError, match=r"wrong\.csv: no row names a coupled or offline"):
        load_ppe_inputs(sim.cases, wrong, root / "offline_params.csv")


def test_a_crosswalk_with_missing_pairs_is_an_error(oaat, tmp_path):
    sim, root = oaat
    rows = _rows(root / "crosswalk.csv")
    blank = _write(tmp_path / "blank.csv", [rows[0], [rows[1][0], ""], *rows[2:]])
    with pytest.raises(InputFileError, match=r"blank\.csv: 1 row\(s\) with a missing pair"):
        read_crosswalk(blank)
    short = _write(tmp_path / "short.csv", rows[:-1])
    with pytest.raises(InputFileError, match=r"short\.csv: missing pairs: no offline twin for "
                                             r"1 coupled member"):
        load_ppe_inputs(sim.cases, root / "offline_params.csv", None, None, short)
    unknown = _write(tmp_path / "unknown.csv", [rows[0], ["COUP0999", rows[1][1]], *rows[2:]])
    with pytest.raises(InputFileError, match=r"coupled member.*not found.*COUP0999"):
        load_ppe_inputs(sim.cases, root / "offline_params.csv", None, None, unknown)


def test_paired_runs_with_different_parameters_are_an_error(oaat, tmp_path):
    sim, root = oaat
    rows = _rows(root / "crosswalk.csv")
    swapped = [rows[0], [rows[1][0], rows[-1][1]], *rows[2:-1], [rows[-1][0], rows[1][1]]]
    crosswalk = _write(tmp_path / "swapped.csv", swapped)
    with pytest.raises(InputFileError, match="parameter values differ"):
        load_ppe_inputs(sim.cases, root / "coupled_params.csv", root / "offline_params.csv",
                        None, crosswalk)


def test_without_any_way_to_get_offline_parameters_the_error_says_what_to_give(oaat):
    sim, root = oaat
    with pytest.raises(ConfigurationError, match="offline members have no parameters"):
        load_ppe_inputs(sim.cases, root / "coupled_params.csv")


@pytest.mark.parametrize(("content", "problem"), [
    ("member,a\nx,1\nx,2\n", "listed twice: x"),
    ("member,a\nx,abc\n", "member 'x', column 'a': 'abc' is not a finite number"),
    ("name,a\nx,1\n", "missing column(s) member"),
    ("member\nx\n", "no parameter columns"),
])
def test_parameter_table_errors(tmp_path, content, problem):
    path = tmp_path / "table.csv"
    path.write_text(content)
    with pytest.raises(InputFileError, match=r"table\.csv") as err:
        read_parameter_table(path)
    assert problem in str(err.value)


def test_parameters_csv_errors_and_missing_files(tmp_path):
    path = tmp_path / "parameters.csv"
    path.write_text("parameter,default,min,max\na,5,0,1\n")
    with pytest.raises(InputFileError, match="min <= default <= max"):
        read_parameters(path)
    with pytest.raises(InputFileError, match="file not found"):
        read_parameter_table(tmp_path / "absent.csv")


def test_default_files_are_found_beside_the_roots(oaat):
    _, root = oaat
    found = find_default_files([root / "coupled"], [root / "offline"])
    assert {p.name for p in found.values()} == set(FILES)
    assert found["params"].name == "coupled_params.csv"
