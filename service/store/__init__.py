"""The service database: records, how to reach it, and the operations the service performs.

:mod:`.tables` (ORM tables, specs, errors), :mod:`.engine` (engines, migrations, retries,
safe messages) and :mod:`.database` (the :class:`Store` and its compare-and-set job
lifecycle).  The names the rest of the service uses are re-exported here, so callers say
``from service.store import Store, get_store``.
"""

from service.store.database import Store, get_store
from service.store.engine import (
    MIGRATIONS,
    engine_url,
    init_db,
    make_engine,
    public_message,
    retry_db,
    unavailable,
    upgrade_schema,
)
from service.store.tables import (
    Alert,
    ApiToken,
    Base,
    Conflict,
    Ensemble,
    EnsembleSpec,
    EnsembleUpdate,
    Job,
    Member,
    ModelVersion,
    NotFound,
    hash_token,
    utcnow,
)

__all__ = [
    "MIGRATIONS", "Alert", "ApiToken", "Base", "Conflict", "Ensemble", "EnsembleSpec",
    "EnsembleUpdate", "Job", "Member", "ModelVersion", "NotFound", "Store", "engine_url",
    "get_store", "hash_token", "init_db", "make_engine", "public_message", "retry_db",
    "unavailable", "upgrade_schema", "utcnow",
]
