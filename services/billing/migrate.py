"""Billing's schema migrations: applied at start-up, and by `stepblend migrate billing`.

The Alembic config is built here in code (no alembic.ini is read at run time).
Replicas starting together must not race to create the same tables, so the
upgrade runs inside one transaction that first takes a lock: a PostgreSQL
advisory lock, or SQLite's write lock (BEGIN IMMEDIATE). The second replica
waits, then finds the schema at head and does nothing. On SQLite the replicas
also take turns through the lock file beside the database (`db.startup_lock`). Both databases have
transactional DDL, so a failed migration leaves the schema as it was.

At start-up billing asks the database its revision with one query (`to_head`),
and only when it is behind runs the upgrade, in a child process: Alembic and
Mako (11 MB) never load into the long-running service.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import Connection

from services.billing.db import database_url, make_engine, retrying, startup_lock, write_session
from services.billing.options import BillingSettings
from services.common.config import Settings

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD", "MigrationError", "current_revision", "downgrade", "main", "to_head", "upgrade"]

log = logging.getLogger(__name__)

#: The newest migration's revision (tests/billing/test_migrations.py keeps it in step).
HEAD = "0006"

_SCRIPTS = Path(__file__).parent / "migrations"
# Any fixed number: "billing's migrations" among the database's advisory locks.
_PG_LOCK_KEY = 0x5B11_1A6


class MigrationError(RuntimeError):
    """The database cannot be brought to billing's schema."""


def to_head(engine: Engine, url: str) -> None:
    """Billing's start-up: nothing when the schema at `url` (`engine`'s) is at HEAD;
    else `stepblend migrate billing` on it, in a child process."""
    if _stamped(engine) == HEAD:
        return
    done = subprocess.run(
        [sys.executable, "-m", "services.billing.migrate"],
        env={**os.environ, "STEPBLEND_DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise MigrationError(said[-1].removeprefix("stepblend: ") if said else f"exit {done.returncode}")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring billing's schema in `engine`'s database up to `revision` (default: the newest)."""
    from alembic import command

    _locked(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Take billing's schema back to `revision` ("base": no tables). Loses the data of what it drops."""
    from alembic import command

    _locked(engine, lambda config: command.downgrade(config, revision))


def _locked(engine: Engine, action: Callable[[Config], None]) -> None:
    # Replicas starting together on one SQLite file can see "database is locked"
    # while another one switches the file to WAL or holds the write lock; the
    # migration is one transaction, so it is simply tried again.
    retrying(lambda: _locked_once(engine, action))


def _locked_once(engine: Engine, action: Callable[[Config], None]) -> None:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    with startup_lock(engine), write_session(engine) as session:
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        _refuse_unversioned(connection)
        config.attributes["connection"] = connection
        action(config)
        session.commit()


def current_revision(engine: Engine) -> str | None:
    """The revision billing's schema is at, or None for a database never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _stamped(engine: Engine) -> str | None:
    """`current_revision` read without Alembic: billing has one line of history."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def main(argv: list[str] | None = None) -> int:
    """Apply billing's migrations to the database its settings name; for the CLI.

    Prints the revision the schema is at afterwards. Returns the exit code.
    """
    del argv  # no options yet; the database comes from the environment as for `serve`
    engine = make_engine(database_url(Settings.from_env()), BillingSettings.from_env().sqlite_synchronous)
    try:
        upgrade(engine)
        print(f"billing schema at revision {current_revision(engine)}")
    except MigrationError as exc:
        print(f"stepblend: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _refuse_unversioned(connection: Connection) -> None:
    # A billing database made before migrations existed (by create_all) has the
    # tables but no alembic_version: upgrading would fail on "table exists" deep
    # inside Alembic. Say what is wrong instead.
    names = set(inspect(connection).get_table_names())
    if "alembic_version" not in names and names & {"accounts", "ledger_entries"}:
        raise MigrationError(
            "billing's database has tables but no migration history (it predates migrations): "
            "start from an empty database"
        )


if __name__ == "__main__":
    sys.exit(main())
