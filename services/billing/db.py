"""Billing's database connection: which URL, how SQLite is driven, write sessions, retries.

Under `stepblend up` billing keeps a SQLite file in the data dir; in production
`STEPBLEND_DATABASE_URL` points at PostgreSQL. The schema is Alembic's
(`migrate.py`).

Transactions, per backend:
- PostgreSQL runs at READ COMMITTED. Exactness comes from conditional UPDATEs
  (an UPDATE re-checks its WHERE against the row's latest version once it
  holds the row's lock) and from primary keys (a second insert of the same key
  waits for the first and then conflicts).
- SQLite has one writer at a time. pysqlite's own transaction handling is
  turned off and billing emits BEGIN itself: `write_session` begins with
  BEGIN IMMEDIATE, taking the write lock before the first read, so a
  read-then-write transaction never fails with a stale snapshot (SQLITE_BUSY,
  "database is locked", which the busy timeout cannot wait out); plain
  sessions begin DEFERRED and, under WAL, read without blocking the writer.
`retrying` re-runs a whole unit of work on the transient errors that remain
(lock timeouts, PostgreSQL serialization failures and deadlocks).

Replicas starting together on one SQLite file take turns through a lock file
beside it (`startup_lock`): switching a file to WAL needs an exclusive lock
that SQLite may refuse at once, without waiting out its busy timeout, while
another connection is opening or migrating the same file. The switch is made
once, under that lock, before any pooled connection exists; WAL is a property
of the file, so the connections opened afterwards need not ask for it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.dml import Insert
from sqlmodel import Session, create_engine

from services.common import retry
from services.common.config import Settings
from services.common.sql import conflict_insert

__all__ = [
    "database_url",
    "execute",
    "insert_if_absent",
    "is_locked",
    "is_sqlite",
    "make_engine",
    "retrying",
    "startup_lock",
    "transient",
    "write_options",
    "write_session",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_BEGIN_OPTION = "stepblend_sqlite_begin"
# PostgreSQL SQLSTATEs worth re-running a transaction for.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
# How long a starting replica waits for the others to finish switching and migrating the file.
_STARTUP_LOCK_TIMEOUT_S = 120.0


def database_url(settings: Settings) -> str:
    """`settings.database_url`, or a SQLite file `billing.db` in the data dir."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{settings.data_dir.resolve() / 'billing.db'}"


def is_sqlite(engine: Engine) -> bool:
    """Whether `engine` talks to SQLite (and so has one writer at a time)."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str, synchronous: str = "NORMAL") -> Engine:
    """An engine for `url`; for a SQLite file, creates its directory, enables WAL, takes
    over BEGIN, and syncs as `synchronous` says (STEPBLEND_SQLITE_SYNCHRONOUS)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # pool_pre_ping: a PostgreSQL restart should cost one retry, not a stuck pool.
        # The pool is sized for the worker threads that run billing's queries.
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)

    synchronous = synchronous.upper()
    if synchronous not in ("NORMAL", "FULL", "EXTRA"):
        raise ValueError("STEPBLEND_SQLITE_SYNCHRONOUS must be NORMAL, FULL or EXTRA")
    if parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(path):
            _switch_to_wal(path)
    # DB calls run in worker threads (asyncio.to_thread), so a connection may be used
    # by a thread other than the one that opened it; the pool never shares one at once.
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _tune(dbapi_connection: Any, _record: Any) -> None:
        # Billing emits BEGIN itself (below): pysqlite's implicit BEGIN would come
        # only before the first write, after the reads the write depends on.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        # NORMAL under WAL: a commit survives a crash of the process (kill -9),
        # not a power cut, which would roll back the last commits. That is the
        # same promise as the events' own store (JetStream syncs to disk every
        # few minutes by default), so FULL would buy nothing end to end while
        # costing an fsync per admission and per settled event. Production runs on
        # PostgreSQL; STEPBLEND_SQLITE_SYNCHRONOUS=FULL restores the fsyncs.
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))

    return engine


@contextlib.contextmanager
def startup_lock(engine: Engine) -> Iterator[None]:
    """Held while a replica sets up a SQLite file (WAL, migrations), so replicas
    starting together take turns; nothing for other databases, which have their own."""
    database = engine.url.database
    if not is_sqlite(engine) or not database or database == ":memory:":
        yield
        return
    with _file_lock(Path(database)):
        yield


def _file_lock(path: Path) -> FileLock:
    # The lock file sits beside the database and, like it, is readable by its owner only.
    return FileLock(f"{path}.lock", timeout=_STARTUP_LOCK_TIMEOUT_S, mode=0o600)


def _switch_to_wal(path: Path) -> None:
    """Put the SQLite file at `path` in WAL mode (readers, such as GetAccount, do not
    block the writer, nor it them); a no-op for a file already in it."""
    # Created owner-only; SQLite gives its -wal and -shm files the same mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def write_options(engine: Engine) -> Engine:
    """`engine` for units of work that write: on SQLite their transactions hold
    the write lock from their first statement."""
    if is_sqlite(engine):
        return engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
    return engine


def write_session(engine: Engine) -> Session:
    """A session for a unit of work that writes (see `write_options`)."""
    return Session(write_options(engine))


def insert_if_absent(connection: Connection, table: Any, values: dict[str, Any]) -> bool:
    """Insert one row unless its key exists (`ON CONFLICT DO NOTHING`); whether it was inserted.

    The idempotent writes' way to learn "already there" without an exception
    ending the transaction: RETURNING gives the key back only for a new row.
    """
    statement = _insert_statement(connection.dialect.name, table)
    return execute(connection, statement, values).fetchone() is not None


def execute(connection: Connection, statement: Executable, params: dict[str, Any]) -> Any:
    """Run a Core `statement` on `connection`'s DBAPI cursor (in its transaction);
    the cursor, for `fetchone()` and `rowcount`.

    For the statements of every request (admission, settlement): SQLAlchemy
    compiles each once per dialect and set of parameters, with the same type
    conversions it applies itself (timestamps and money on SQLite), and each run
    skips its per-execution machinery, which cost several times the database's
    own work. Rows come back as plain tuples.
    """
    prepared = _prepared(statement, connection.dialect, tuple(params))
    values = {**prepared.defaults, **params}
    for name, process in prepared.processors:
        values[name] = process(values[name])
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(prepared.sql, values if prepared.order is None else tuple(values[n] for n in prepared.order))
    return cursor


@dataclass(frozen=True)
class _Prepared:
    sql: str
    order: tuple[str, ...] | None  # positional paramstyles (SQLite): the parameters' order
    defaults: dict[str, Any]  # values the statement carries itself (literals)
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]


_PREPARED: dict[tuple[int, str, tuple[str, ...]], _Prepared] = {}


def _prepared(statement: Executable, dialect: Dialect, keys: tuple[str, ...]) -> _Prepared:
    cache_key = (id(statement), dialect.name, keys)
    prepared = _PREPARED.get(cache_key)
    if prepared is None:
        # The statements are module constants, so id() is stable and the cache small.
        column_keys = list(keys) if isinstance(statement, Insert) else None
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)  # type: ignore[attr-defined]
        order = compiled.positiontup
        names = order if order is not None else [name for name in compiled.binds if name.isidentifier()]
        binds = {name: compiled.binds[name] for name in names}
        processors = []
        for name, bind in binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((name, process))
        prepared = _Prepared(
            sql=compiled.string,
            order=None if order is None else tuple(order),
            defaults={name: bind.value for name, bind in binds.items() if name not in keys},
            processors=tuple(processors),
        )
        _PREPARED[cache_key] = prepared
    return prepared


@functools.cache
def _insert_statement(dialect: str, table: Any) -> Insert:
    # Built once per table: admission and settlement run this per request.
    insert = conflict_insert(dialect, "billing")
    core = table.__table__
    statement: Insert = insert(core).on_conflict_do_nothing().returning(*core.primary_key.columns)
    return statement


def retrying(work: Callable[[], T], *, attempts: int = 8, first_delay_s: float = 0.01) -> T:
    """`work()`, re-run on transient database errors, with jittered exponential backoff.

    `work` must be a whole transaction that is safe to repeat (every billing write
    is idempotent by request id or sets a value). Other errors, and a transient
    one on the last attempt, propagate.
    """
    return retry.call(
        work,
        attempts=attempts,
        first_delay_s=first_delay_s,
        retry_if=transient,
        on_retry=lambda attempt, exc: log.info(
            "transient database error (attempt %d of %d); retrying: %s", attempt, attempts, exc
        ),
    )


def is_locked(exc: DBAPIError) -> bool:
    """Whether `exc` is SQLite's "database is locked": its busy timeout ran out."""
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower()


def transient(exc: BaseException) -> bool:
    """Whether `exc` is a deadlock, a serialization failure or a lock not granted,
    worth running the transaction again for: raised through SQLAlchemy, or straight
    from the driver, as the statements `execute` runs on its cursor raise them."""
    error = exc.orig if isinstance(exc, DBAPIError) else exc
    if getattr(error, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error).lower()
