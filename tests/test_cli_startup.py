"""Commands that do not train never import torch, and ``--help`` imports no science stack.

Each command runs in a fresh interpreter (the test process has long imported everything),
which then reports which heavy packages it loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys
from typer.testing import CliRunner
from service.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = ("torch", "sklearn", "xarray", "sqlalchemy", "matplotlib")
print(json.dumps({"exit": result.exit_code, "output": result.output,
                  "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _run(tmp_path: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "ESMWATCH_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_help_loads_no_science_or_database_stack(tmp_path: Path) -> None:
    probe = _run(tmp_path, "--help")
    assert probe["exit"] == 0 and "analyze" in probe["output"]
    assert probe["loaded"] == []


@pytest.mark.parametrize("args", [
    ("schema", "precursors"),
    ("catalog", "."),
    ("jobs", "list"),
    ("ensemble", "list"),
    ("model", "list"),
    ("features", "--help"),
    ("analyze", "precursors", "--help"),
])
def test_commands_that_do_not_train_never_import_torch(tmp_path: Path, args: tuple) -> None:
    probe = _run(tmp_path, *args)
    assert probe["exit"] in (0, 1), probe["output"]
    assert "torch" not in probe["loaded"], (args, probe["loaded"])
