"""What every ``esmwatch`` command shares: one error style, progress bars, settings defaults.

Kept free of heavy imports: ``esmwatch --help`` and every command import this, so the
science stack (xarray, torch) and the database stack load only inside the commands that
use them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from ensembles.errors import EsmwatchError


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn errors a user can fix into one red line and exit code 1 (never a traceback)."""
    try:
        yield
    except (EsmwatchError, ValueError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    except Exception as err:
        from sqlalchemy.exc import OperationalError  # the database stack only when it failed

        if not isinstance(err, OperationalError):
            raise
        typer.secho(f"error: database unavailable: {err.orig}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None


def cache_dir_or_default(given: Path | None) -> Path | None:
    """The feature cache a command uses: the one given, else ``Settings.cache_dir``, so that
    CLI runs, jobs and scans share one cache of the same files."""
    if given is not None:
        return given
    from service.settings import get_settings

    return get_settings().cache_dir


CACHE_HELP = "Per-file feature cache directory (default: the settings' cache_dir)."


class ProgressBar:
    """A rich progress bar fed by ``(fraction, message)`` callbacks."""

    def __enter__(self) -> Callable[[float, str], None]:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TimeElapsedColumn(), transient=True)
        self._progress.start()
        self._task = self._progress.add_task("starting", total=1.0)
        return self._update

    def _update(self, fraction: float, message: str) -> None:
        self._progress.update(self._task, completed=fraction, description=message)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
