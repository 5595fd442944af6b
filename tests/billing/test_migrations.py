"""Billing's Alembic migrations on SQLite and PostgreSQL: they build exactly the
models' schema, run once however many replicas start together, and refuse a
database made before migrations existed."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlmodel import SQLModel

from services.billing import migrate
from services.billing.db import make_engine
from services.billing.models import TABLES
from tests.billing.conftest import NewDatabase


def _billing_metadata() -> MetaData:
    metadata = MetaData()
    for table in TABLES:
        SQLModel.metadata.tables[table].to_metadata(metadata)
    return metadata


def test_upgrade_builds_the_models_schema(new_database: NewDatabase) -> None:
    engine = make_engine(new_database(migrated=False))
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.HEAD
        assert set(inspect(engine).get_table_names()) == {*TABLES, "alembic_version"}
        with engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}), _billing_metadata()
            )
        assert differences == []
        migrate.upgrade(engine)  # at head already: nothing to do
        assert migrate.current_revision(engine) == migrate.HEAD
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_again(new_database: NewDatabase) -> None:
    engine = make_engine(new_database(migrated=False))
    try:
        migrate.upgrade(engine)
        migrate.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.HEAD
    finally:
        engine.dispose()


def test_replicas_starting_together_migrate_once(new_database: NewDatabase) -> None:
    url = new_database(migrated=False)
    engines = [make_engine(url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(migrate.upgrade, engines))  # none fails on "table already exists"
        assert migrate.current_revision(engines[0]) == migrate.HEAD
    finally:
        for engine in engines:
            engine.dispose()


def test_a_database_from_before_migrations_is_refused(new_database: NewDatabase) -> None:
    engine = make_engine(new_database(migrated=False))
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE accounts (account_id VARCHAR(36) PRIMARY KEY)"))
        with pytest.raises(migrate.MigrationError, match="no migration history"):
            migrate.upgrade(engine)
    finally:
        engine.dispose()


def test_main_migrates_the_database_in_the_environment(
    new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = new_database(migrated=False)
    monkeypatch.setenv("STEPBLEND_DATABASE_URL", url)
    assert migrate.main() == 0
    assert capsys.readouterr().out.strip() == f"billing schema at revision {migrate.HEAD}"
    engine = make_engine(url)
    try:
        assert migrate.current_revision(engine) == migrate.HEAD
    finally:
        engine.dispose()


def test_head_is_the_newest_migration() -> None:
    # Billing's start-up compares the database's revision with HEAD, without Alembic.
    scripts = ScriptDirectory(str(Path(migrate.__file__).parent / "migrations"))
    assert scripts.get_current_head() == migrate.HEAD


def test_start_up_migrates_in_a_child_and_never_loads_alembic(new_database: NewDatabase) -> None:
    url = new_database(migrated=False)
    # What billing's start-up does (main.open_database), in a fresh interpreter.
    probe = (
        "import sys\n"
        "from services.billing.main import open_database\n"
        "engine, writer = open_database(sys.argv[1])\n"
        "writer.close(); engine.dispose()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    for _ in range(2):  # migrating, then finding the schema at head
        done = subprocess.run([sys.executable, "-c", probe, url], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "[]", done.stdout
    engine = make_engine(url)
    try:
        assert migrate.current_revision(engine) == migrate.HEAD
    finally:
        engine.dispose()


def test_start_up_on_a_database_from_before_migrations_says_why(new_database: NewDatabase) -> None:
    url = new_database(migrated=False)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE accounts (account_id VARCHAR(36) PRIMARY KEY)"))
        with pytest.raises(migrate.MigrationError, match=r"^billing's database has tables but no migration history"):
            migrate.to_head(engine, url)
    finally:
        engine.dispose()
