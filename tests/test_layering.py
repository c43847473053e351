"""The layering (docs/architecture.md) is a contract checked by import-linter.

The contracts live in pyproject.toml; this test runs them on the tree, and on a copy of the
tree with one upward import planted, to show the check can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ensembles", "detectors", "service", "workers", "synth")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = ("import sys; from importlinter.cli import lint_imports_command; "
               "sys.argv[0] = 'lint-imports'; sys.exit(lint_imports_command())")
    return subprocess.run([sys.executable, "-c", command, "--config",
                           str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def _copy_tree(dest: Path) -> Path:
    for name in PACKAGES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "data"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_tree_keeps_every_import_contract() -> None:
    run = _lint(REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "broken" in run.stdout and "0 broken" in run.stdout


@pytest.mark.parametrize(("module", "upward"), [
    ("ensembles/timeaxis.py", "import service.settings"),
    ("detectors/skill.py", "import service.report"),
    ("service/report.py", "import workers.tasks"),
    ("synth/table.py", "import detectors.labels"),
    ("ensembles/units.py", "import synth.physics"),
])
def test_a_planted_upward_import_breaks_the_contract(tmp_path: Path, module: str,
                                                     upward: str) -> None:
    tree = _copy_tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{upward}  # planted violation\n")
    run = _lint(tree)
    assert run.returncode != 0
    assert "BROKEN" in run.stdout and module.split("/")[0] in run.stdout
