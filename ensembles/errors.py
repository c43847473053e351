"""One small error hierarchy for everything esmwatch reports to a user.

The CLI maps these to one-line messages and the API to HTTP 4xx, so every
subclass carries a message that already names the file and the problem.
"""

from __future__ import annotations

from pathlib import Path


class EsmwatchError(Exception):
    """Base of every error esmwatch raises on purpose."""


class ConfigurationError(EsmwatchError):
    """A setting, registry entry or argument is inconsistent."""


class InputFileError(EsmwatchError):
    """A specific input file cannot be used; the message names it and says why."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class UnrecognisedFileName(InputFileError):
    """A file under a data root does not follow any known CESM naming pattern."""


class UnitError(EsmwatchError):
    """A variable's units are missing or cannot be converted to the canonical units."""
