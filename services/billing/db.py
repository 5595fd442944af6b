"""Billing's database connection: which URL, how SQLite is tuned, creating tables.

Under `stepblend up` billing keeps a SQLite file in the data dir; in production
`STEPBLEND_DATABASE_URL` points at PostgreSQL. Nothing here is SQLite-only
except the connection pragmas, which only run on SQLite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel, create_engine

from services.billing.models import Account, LedgerEntry
from services.common.config import Settings

__all__ = ["database_url", "init_db", "make_engine"]


def database_url(settings: Settings) -> str:
    """`settings.database_url`, or a SQLite file `billing.db` in the data dir."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{settings.data_dir.resolve() / 'billing.db'}"


def make_engine(url: str) -> Engine:
    """An engine for `url`; for a SQLite file, creates its directory and enables WAL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pool_pre_ping: a PostgreSQL restart should cost one retry, not a stuck pool.
        return create_engine(url, pool_pre_ping=True)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # DB calls run in worker threads (asyncio.to_thread), so a connection may be used
    # by a thread other than the one that opened it; the pool never shares one at once.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _tune(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers (GetAccount) do not block the ledger writer, nor it them.
        cursor.execute("PRAGMA journal_mode=WAL")
        # synchronous stays FULL: an event is acked after its commit, so a commit
        # must survive a power cut, which NORMAL does not promise under WAL.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


def init_db(engine: Engine) -> None:
    """Create billing's tables that do not exist yet (Alembic will take this over)."""
    # SQLModel.metadata is shared by every service's models imported in the process;
    # name billing's own tables so another service's never land in this database.
    tables = [SQLModel.metadata.tables[model.__tablename__] for model in (Account, LedgerEntry)]
    SQLModel.metadata.create_all(engine, tables=tables)
