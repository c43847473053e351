"""The one check every user-named path passes: job inputs, ensemble roots, job artifacts.

A path is resolved (symlinks followed, ``..`` removed) and must then lie inside one of the
allowed directories, *before* anything is opened.  The check is total: whatever the file
system raises while resolving or probing a name (a name too long, a symlink loop, a
``/proc`` link the server may not read) becomes a ``ValueError`` whose message quotes only
what the user typed.  It never states where a path resolved to nor where the allowed
directories are: answers of the form "X resolves to Y" let any client look up server paths
(``/proc/self/fd/1`` named the log file, ``/proc/self/cwd`` the database, ``~`` the home
directory).  ``~`` is therefore not expanded either; it is an ordinary name.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
SHOWN_CHARS = 120  # how much of a user's input a message quotes


def shown(text: str) -> str:
    """The user's input, quoted for a message and cut to :data:`SHOWN_CHARS`."""
    return repr(text) if len(text) <= SHOWN_CHARS else repr(text[:SHOWN_CHARS]) + "..."


def confined_path(
    value: str | Path,
    allowed: Sequence[Path],
    *,
    where: str,
    require: Literal["exists", "file"] = "exists",
) -> Path:
    """Resolve ``value`` and require it inside one of ``allowed``, existing.

    Parameters
    ----------
    value
        What the user named; a relative path is taken relative to ``allowed[0]``.
    allowed
        Directories the path must resolve into (configured, trusted).
    where
        How messages name ``allowed``, e.g. ``"the data roots"`` (never their paths).
    require
        ``exists``: any existing file or directory; ``file``: a regular file.

    Raises
    ------
    ValueError
        With a message quoting ``value`` and the problem, for pydantic or the API to report.
    """
    text = str(value)
    quoted = shown(text)
    if not text or "\x00" in text:
        raise ValueError(f"{quoted} is empty or contains a NUL character")
    if len(text) > MAX_PATH_CHARS:
        raise ValueError(f"{quoted} is longer than {MAX_PATH_CHARS} characters")
    try:
        path = Path(text)
        resolved = (path if path.is_absolute() else allowed[0] / path).resolve()
        inside = any(resolved.is_relative_to(root.resolve()) for root in allowed)
        present = inside and (resolved.is_file() if require == "file" else resolved.exists())
    except OSError as err:  # the reason only: err's own text would name the resolved path
        reason = os.strerror(err.errno) if err.errno else type(err).__name__
        if err.errno == errno.ENAMETOOLONG:
            reason = "a name in it is too long"
        raise ValueError(f"{quoted} cannot be used: {reason.lower()}") from None
    except RuntimeError:  # pathlib's "Symlink loop from <resolved path>"
        raise ValueError(f"{quoted} cannot be used: it contains a symbolic link loop") from None
    except ValueError:
        raise ValueError(f"{quoted} is not a valid path") from None
    if not inside:
        raise ValueError(f"{quoted} is outside {where}")
    if not present:
        raise ValueError(
            f"{quoted} does not exist" if require == "exists" else f"{quoted} is not a file"
        )
    return resolved
