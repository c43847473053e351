"""The CLI end to end: synth -> catalog -> features on both flavours, clear one-line errors."""

from __future__ import annotations

import json

import pytest
import xarray as xr
from typer.testing import CliRunner

from service.cli import app

runner = CliRunner()


@pytest.mark.parametrize("flavour", ["cesm2", "cesm3"])
def test_synth_catalog_features(tmp_path, flavour: str) -> None:
    data = tmp_path / "data"
    result = runner.invoke(app, ["synth", str(data), "--members", "2", "--years", "1",
                                 "--size", "small", "--flavour", flavour])
    assert result.exit_code == 0, result.output
    assert json.loads((data / "truth.json").read_text())["flavour"] == flavour

    result = runner.invoke(app, ["catalog", str(data), "-o", "demo", "--outdir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "catalogued" in result.output and (tmp_path / "demo.json").exists()

    out = tmp_path / "features.nc"
    result = runner.invoke(app, ["features", str(data), "-o", str(out), "--cache-dir",
                                 str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    with xr.open_dataset(out, decode_times=xr.coders.CFDatetimeCoder(use_cftime=True)) as ds:
        assert ds.sizes["member"] == 2 and ds.sizes["time"] == 12
        assert ds["so_upper_labsea"].attrs["process"] == "ocean_stratification"
    again = runner.invoke(app, ["features", str(data), "-o", str(out), "--cache-dir",
                                str(tmp_path / "cache")])
    assert "0 files read" in again.output


def test_errors_are_one_line_without_traceback(tmp_path) -> None:
    result = runner.invoke(app, ["synth", str(tmp_path), "--kind", "nonsense"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error:") and "Traceback" not in result.output


def test_schema_is_valid_json() -> None:
    result = runner.invoke(app, ["schema", "precursors"])
    assert result.exit_code == 0
    schema = json.loads(result.output)["precursors"]
    assert "processes" in schema["properties"] and "skill" in schema["properties"]


def test_operations_commands_fail_with_one_line(tmp_path) -> None:
    from service.settings import Settings, override_settings

    with override_settings(Settings(data_dir=tmp_path)):
        scan = runner.invoke(app, ["scan"])
        promote = runner.invoke(app, ["model", "promote", "risk", "5"])
        listed = runner.invoke(app, ["model", "list"])
        report = runner.invoke(app, ["report", "00000000-0000-0000-0000-000000000000"])
    assert scan.exit_code == 1 and "no ensemble is registered" in scan.output
    assert promote.exit_code == 1 and "has no version 5" in promote.output
    assert listed.exit_code == 0 and "no models yet" in listed.output
    assert report.exit_code == 1 and len(report.output.strip().splitlines()) == 1
