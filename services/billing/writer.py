"""The hot writes — Admit and settlement — on held connections in billing's own threads.

Every request is one Admit and one settled usage event, so these transactions
are the bulk of billing's work. They run as Core statements (built once) on
connections each writer thread keeps open, not as ORM sessions checked out per
call: the session bookkeeping cost more than the database.

On SQLite a unit of work first runs on the event loop itself, on a connection
that never waits for the write lock: the transaction is a few statements on a
local file with no fsync (db.py), tens of microseconds, cheaper than the hop to
a thread and back. If another connection holds the lock (billing's other
writes, another replica), BEGIN IMMEDIATE fails at once, before any work, and
the unit goes to the one writer thread, which waits its turn. That connection
never checkpoints the WAL by itself (a checkpoint writes and syncs the database
file); the writer thread does, every few hundred units, in TRUNCATE mode: it
waits for the transaction in hand, keeps new writers out while it copies every
frame, and empties the WAL. (A PASSIVE checkpoint beside a steady writer never
catches up with it, so the WAL is never restarted and grows without end: 770 MB
in 90 s of load.) Units arriving meanwhile find the file locked and queue
behind it on the thread. (Two connections of one process both waiting on the
lock would meet SQLite's busy handler, which sleeps in milliseconds.)

On PostgreSQL every statement is a round trip, so the work runs in a few
threads, each with its own connection; row locks are per account, so they
write side by side.

A connection that failed is closed and replaced on the next unit of work (from
the pool, which pings PostgreSQL connections on checkout).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from services.billing.db import is_locked, is_sqlite, retrying, write_options

__all__ = ["Writer"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_POSTGRES_THREADS = 4
# Units of work run on the event loop between two WAL checkpoints.
_CHECKPOINT_EVERY = 500


class Writer:
    """Runs units of work, each in one transaction, on billing's writer threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = write_options(engine)
        threads = 1 if engine.dialect.name == "sqlite" else _POSTGRES_THREADS
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="billing-writer")
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._inline: Connection | None = None
        self._inline_units = 0
        if is_sqlite(engine):
            self._inline = self._engine.connect()
            _pragma(self._inline, "busy_timeout=0")
            _pragma(self._inline, "wal_autocheckpoint=0")
            self._connections.append(self._inline)

    async def run(self, work: Callable[[Connection], T], *, attempts: int = 8) -> T:
        """`work(connection)` in one transaction, committed when it returns; re-run
        on transient lock errors (`db.retrying`), so it must be safe to repeat."""
        if self._inline is not None and not self._inline.closed:
            try:
                with self._inline.begin():
                    done = work(self._inline)
            except OperationalError as exc:
                if not is_locked(exc):
                    raise
            else:
                self._inline_units += 1
                if self._inline_units % _CHECKPOINT_EVERY == 0:
                    self._pool.submit(self._checkpoint)
                return done
        loop = asyncio.get_running_loop()
        unit = functools.partial(retrying, functools.partial(self._transact, work), attempts=attempts)
        return await loop.run_in_executor(self._pool, unit)

    def close(self) -> None:
        """Finish the work queued, then close every held connection."""
        self._pool.shutdown(wait=True)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def _transact(self, work: Callable[[Connection], T]) -> T:
        connection = self._connection()
        try:
            with connection.begin():
                return work(connection)
        except BaseException:
            if connection.invalidated or connection.closed:
                self._drop(connection)
            raise

    def _checkpoint(self) -> None:
        try:
            _pragma(self._connection(), "wal_checkpoint(TRUNCATE)")
        except Exception:
            log.warning("checkpointing billing's SQLite WAL failed; the next one will try again", exc_info=True)

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed:
            connection = self._engine.connect()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _drop(self, connection: Connection) -> None:
        self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)
        connection.close()


def _pragma(connection: Connection, pragma: str) -> None:
    # On the driver's connection, outside any transaction (a checkpoint cannot
    # run inside one; SQLAlchemy would begin one for its own execute).
    connection.connection.driver_connection.execute(f"PRAGMA {pragma}").close()  # type: ignore[union-attr]
