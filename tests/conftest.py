"""Suite-wide set-up: the built-in job types are registered, as every entry point does.

Registered at import (before collection), because some tests are parametrised over the
registry.
"""

from __future__ import annotations

from service.job_types import register_all

register_all()
