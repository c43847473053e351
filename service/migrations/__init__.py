"""Alembic migrations of the service database (run by ``service.store.upgrade_schema``)."""
