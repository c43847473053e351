"""Alembic environment: migrate the connection handed over by ``service.store``.

``upgrade_schema`` passes an open connection in ``config.attributes["connection"]`` so
migrations run in-process inside its transaction.  Without one (the ``alembic`` command
line with ``-x url=...`` or ``sqlalchemy.url``), an engine is made from that URL, or the
SQL is printed in offline mode.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from service.store import Base, engine_url, make_engine

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url")
    if not url:
        raise RuntimeError("give the database with -x url=... or sqlalchemy.url")
    return engine_url(url)


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    _migrate(config.attributes["connection"])
else:
    engine = make_engine(_url())
    with engine.begin() as own_connection:
        _migrate(own_connection)
    engine.dispose()
