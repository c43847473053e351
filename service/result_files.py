"""How results become files: ``result.json`` from its contract, every file atomically.

Kept apart from the report writer (matplotlib) so that the job runner and the CLI can write
a result without importing a plotting stack.
"""

from __future__ import annotations

from pathlib import Path

from detectors.contracts import ResultContract

RESULT_FILE = "result.json"


def write_result(outdir: Path, result: ResultContract) -> Path:
    """Write ``result.json``: the one place a result contract becomes a file."""
    outdir.mkdir(parents=True, exist_ok=True)
    return write_atomically(outdir / RESULT_FILE,
                            result.model_dump_json(by_alias=True, indent=2))


def write_atomically(target: Path, text: str) -> Path:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return target
