"""Alembic's environment for billing's database.

`migrate.upgrade` runs it with a connection already inside a locked transaction
(`config.attributes["connection"]`), so that replicas starting together migrate
one at a time. Run by hand — `alembic -x` is not needed — it connects to the URL
billing itself would use (STEPBLEND_DATABASE_URL, else the data dir's SQLite
file), e.g. to autogenerate a revision:

    alembic -c services/billing/migrations/alembic.ini revision --autogenerate -m "…"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from services.billing import models
from services.billing.db import database_url, make_engine
from services.billing.options import BillingSettings
from services.common.config import Settings


def _billing_metadata() -> MetaData:
    # SQLModel.metadata holds every service's tables imported in this process;
    # billing's database has only billing's.
    metadata = MetaData()
    for table in models.TABLES:
        SQLModel.metadata.tables[table].to_metadata(metadata)
    return metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=_billing_metadata(),
        # SQLite alters tables by copying them: later revisions need batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise SystemExit("billing's migrations run online only: `stepblend migrate billing`")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(database_url(Settings.from_env()), BillingSettings.from_env().sqlite_synchronous)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


_main()
