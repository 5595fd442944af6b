"""The writer: billing's per-request transactions, on held connections (writer.py)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine

from services.billing import accounts, admission, counters
from services.billing.db import make_engine, write_session
from services.billing.migrate import upgrade
from services.billing.plans import PlanBook
from services.billing.writer import Writer
from tests.billing.pgcluster import PostgresCluster
from tests.support.waiting import eventually

PLANS = PlanBook.from_limits({"trial": 3, "big": None})
NOW = datetime(2025, 3, 10, 12, tzinfo=UTC)


def _account(engine: Engine, plan: str = "trial", email: str = "w@example.com") -> str:
    with write_session(engine) as session:
        return accounts.create_account(session, PLANS, email=email, plan=plan).account_id


async def _admit(writer: Writer, account_id: str, request_id: str) -> admission.Admission:
    return await writer.run(
        lambda connection: admission.admit(
            connection, PLANS, account_id=account_id, request_id=request_id, now=NOW, ttl=timedelta(minutes=5)
        )
    )


async def test_admits_exactly_and_a_failed_unit_leaves_nothing(engine: Engine) -> None:
    account_id = _account(engine)
    writer = Writer(engine)
    try:
        answers = [await _admit(writer, account_id, f"r{i}") for i in range(4)]
        assert [a.allowed for a in answers] == [True, True, True, False]

        def half_done(connection: object) -> None:
            counters.adjust(connection, counters.ACCOUNTS, account_id, "2025-03", used=5)  # type: ignore[arg-type]
            raise RuntimeError("a bug halfway through")

        with contextlib.suppress(RuntimeError):
            await writer.run(half_done)
        assert (
            await writer.run(lambda c: counters.read(c, counters.ACCOUNTS, account_id, "2025-03"))
        ) == counters.Counts(0, 3)
    finally:
        writer.close()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """SQLite alone: its write lock is the whole file's, and its log a file beside it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'billing.db'}")
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


async def test_a_held_write_lock_is_waited_for_and_the_writer_carries_on(sqlite_engine: Engine) -> None:
    engine = sqlite_engine
    account_id = _account(engine)
    writer = Writer(engine)
    other = sqlite3.connect(engine.url.database, isolation_level=None)
    try:
        # Another process (a second replica, a migration) holds SQLite's write lock.
        other.execute("BEGIN IMMEDIATE")
        admitting = asyncio.ensure_future(_admit(writer, account_id, "waits"))
        await asyncio.sleep(0.3)
        assert not admitting.done()  # waiting its turn, not failed
        other.execute("COMMIT")
        assert (await asyncio.wait_for(admitting, 10)).allowed
        # The next unit runs as usual (on the event loop again).
        assert (await _admit(writer, account_id, "after")).allowed
        assert (
            await writer.run(lambda c: counters.read(c, counters.ACCOUNTS, account_id, "2025-03"))
        ) == counters.Counts(0, 2)
    finally:
        other.close()
        writer.close()


async def test_the_sqlite_log_is_emptied_under_steady_writes(sqlite_engine: Engine) -> None:
    # Every unit appends pages to the WAL; checkpoints that never catch up with a
    # steady writer let it grow without end (770 MB in 90 s of load, once).
    account_id = _account(sqlite_engine, "big")
    wal = Path(f"{sqlite_engine.url.database}-wal")
    writer = Writer(sqlite_engine)
    try:
        for i in range(2_600):
            await _admit(writer, account_id, f"r{i}")
        written = 2_600 * 3 * 4096  # three pages a unit at the least: what the log would hold
        # The checkpoint after unit 2,500 runs on the writer thread: wait for it to empty the log.
        await eventually(lambda: wal.stat().st_size < written / 10, what="the WAL checkpointed")
    finally:
        writer.close()


def _read(connection: Connection, account_id: str) -> counters.Counts:
    return counters.read(connection, counters.ACCOUNTS, account_id, "2025-03")


async def test_a_deadlock_on_postgresql_is_run_again_not_returned(pg_cluster: PostgresCluster) -> None:
    """Two units lock two accounts' counters in opposite orders: PostgreSQL aborts
    one with "deadlock detected", raised by the driver itself (the hot statements run
    on its cursor, db.execute). The writer runs that unit again, and both land."""
    url = pg_cluster.url(pg_cluster.create_database())
    engine = make_engine(url)
    upgrade(engine)
    first, second = _account(engine, "big", "one@example.com"), _account(engine, "big", "two@example.com")
    both_hold_one = threading.Barrier(2, timeout=10)
    attempts: list[str] = []

    def unit(name: str, order: tuple[str, str]) -> Callable[[Connection], None]:
        def work(connection: Connection) -> None:
            attempts.append(name)
            counters.adjust(connection, counters.ACCOUNTS, order[0], "2025-03", used=1)
            if attempts.count(name) == 1:
                both_hold_one.wait()  # the first time, each holds one row and wants the other's
            counters.adjust(connection, counters.ACCOUNTS, order[1], "2025-03", used=1)

        return work

    writer = Writer(engine)
    try:
        await asyncio.gather(
            writer.run(unit("a", (first, second))),
            writer.run(unit("b", (second, first))),
        )
        assert len(attempts) == 3  # one of them deadlocked once and ran again
        for account_id in (first, second):
            counts = await writer.run(partial(_read, account_id=account_id))
            assert counts.used == 2
    finally:
        writer.close()
        engine.dispose()
