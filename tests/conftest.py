"""Suite-wide set-up: the built-in job types are registered, as every entry point does.

Registered at import (before collection), because some tests are parametrised over the
registry.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.job_types import register_all
from service.jobs import drain_embedded

register_all()


@pytest.fixture(autouse=True)
def _no_job_thread_outlives_its_test() -> Iterator[None]:
    """Embedded jobs a test submitted (API and fuzz tests do) finish before the next test:
    HDF5 is not thread-safe, and the next test's fixtures write netCDF files (a leftover scan
    job reading files beside them crashed the interpreter: a segfault, once a bus error)."""
    yield
    drain_embedded(timeout_s=600)
