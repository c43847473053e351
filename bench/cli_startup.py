"""How long ``esmwatch --help`` takes, against a bare ``import typer`` and an older revision.

Every number is the best of ``--repeat`` fresh interpreter runs, measured in this script, one
after the other, so the ratios hold on a loaded machine.  The older revision is exported with
``git archive`` into a temporary folder and run with the same interpreter and packages.

    python bench/cli_startup.py --baseline-rev 5124749 --repeat 7
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HELP = "import sys; sys.argv = ['esmwatch', '--help']; from service.cli import app; app()"
COMMANDS = {
    "esmwatch --help": HELP,
    "esmwatch features --help": HELP.replace("'--help']", "'features', '--help']"),
    "bare import typer": "import typer",
    "python -c pass": "pass",
}


def best_of(code: str, tree: Path, repeat: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def exported(rev: str, dest: Path) -> Path:
    archive = dest / "tree.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), rev], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "tree", filter="data")
    return dest / "tree"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", default="5124749",
                        help="revision before the lazy-import CLI (default: 5124749)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = exported(args.baseline_rev, Path(tmp))
        for name, code in COMMANDS.items():
            now = best_of(code, REPO, args.repeat)
            before = best_of(code, old, args.repeat) if name.startswith("esmwatch") else None
            rows.append((name, now, before))
    print(f"| command | now (s) | {args.baseline_rev} (s) | now / before |")
    print("|---|---|---|---|")
    for name, now, before in rows:
        ratio = f"{now / before:.2f}" if before else ""
        shown = f"{before:.3f}" if before else ""
        print(f"| `{name}` | {now:.3f} | {shown} | {ratio} |")


if __name__ == "__main__":
    main()
