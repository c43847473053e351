"""Bounds on what a user may send: finite numbers, bounded nesting, lists and metadata.

Every request body, job parameter set and ensemble registration passes here before it is
validated or stored.  The bounds exist because an unbounded value did lasting damage:
``NaN``/``Infinity`` are not JSON (a stored one came back as ``null``, an echoed one made
the error handler fail), metadata nested 256 levels deep was stored and then broke every
listing of ensembles, a NUL character cannot be stored by PostgreSQL, and a list of 20,000
roots produced a 3.9 MB error response.  Checks are iterative, so no input can exhaust the
interpreter's stack here.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

MAX_BODY_DEPTH = 40  # a request body: the metadata's depth plus the few levels around it
MAX_METADATA_DEPTH = 32
MAX_METADATA_BYTES = 64 * 1024
MAX_LIST_ITEMS = 256  # any list in a request body
MAX_ROOTS = 64  # roots of a job or an ensemble
MAX_ENSEMBLES = 256  # ensembles named by one scan
ENSEMBLE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
ENSEMBLE_NAME_CHARS = 200

EnsembleName = Annotated[
    str,
    Field(
        pattern=ENSEMBLE_NAME,
        max_length=ENSEMBLE_NAME_CHARS,
        description="A registered ensemble's name.",
    ),
]


def check_json_value(value: Any, *, max_depth: int = MAX_BODY_DEPTH, what: str = "value") -> None:
    """Require ``value`` (parsed JSON) to be storable and bounded.

    Raises
    ------
    ValueError
        Naming the first problem: a non-finite number, a NUL character, a list longer than
        :data:`MAX_LIST_ITEMS` or nesting deeper than ``max_depth``.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{what} holds {item!r}: only finite numbers are accepted")
        if isinstance(item, str) and "\x00" in item:
            raise ValueError(f"{what} holds a string with a NUL character")
        if not isinstance(item, dict | list | tuple):
            continue
        if depth > max_depth:
            raise ValueError(f"{what} is nested more than {max_depth} levels deep")
        if isinstance(item, dict):
            if any("\x00" in str(key) for key in item):
                raise ValueError(f"{what} holds a key with a NUL character")
            children = list(item.values())
        else:
            if len(item) > MAX_LIST_ITEMS:
                raise ValueError(
                    f"{what} holds a list of {len(item)} items; at most "
                    f"{MAX_LIST_ITEMS} are accepted"
                )
            children = list(item)
        stack.extend((child, depth + 1) for child in children)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number: only finite numbers are accepted")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is too large: only finite numbers are accepted")
    return number


def parse_json(text: str | bytes, *, what: str = "body") -> Any:
    """Parse strict JSON (no ``NaN``, ``Infinity``, overflowing numbers) and bound it.

    Raises
    ------
    json.JSONDecodeError
        For text that is not JSON at all.
    ValueError
        For JSON that breaks a bound (:func:`check_json_value`).
    """
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    check_json_value(value, what=what)
    return value


def bounded_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form ensemble metadata within the bounds, with ``reference`` a plain name.

    That the reference is *registered* is checked by the store, which can look it up.
    """
    check_json_value(value, max_depth=MAX_METADATA_DEPTH, what="metadata")
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(
            f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are accepted"
        )
    reference = value.get("reference")
    if reference is not None and not (
        isinstance(reference, str)
        and len(reference) <= ENSEMBLE_NAME_CHARS
        and re.fullmatch(ENSEMBLE_NAME, reference) is not None
    ):
        raise ValueError("metadata.reference must be the name of a registered ensemble (a string)")
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(bounded_metadata)]
"""Free-form metadata: depth <= 32, <= 64 KB as JSON, finite numbers, a typed reference."""
