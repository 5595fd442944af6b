"""The usage consumer against a real nats-server, on a stream of its own.

These tests publish malformed events on purpose, so they use a private stream
and durable rather than the shared USAGE stream other services' tests read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, StreamConfig
from sqlalchemy import Connection, Engine, func
from sqlalchemy.exc import DataError
from sqlmodel import Session, col, select

from services.billing import consumer as consumer_module
from services.billing.consumer import ConsumerOptions, UsageConsumer
from services.billing.db import make_engine
from services.billing.migrate import upgrade
from services.billing.models import LedgerEntry
from services.billing.settlement import settle
from services.billing.writer import Writer
from services.common import events
from tests.billing.conftest import NewDatabase, usage_event
from tests.support.procs import NatsServer


@dataclass
class Lane:
    """A private stream and the options of a consumer reading it."""

    nc: NATS
    js: JetStreamContext
    options: ConsumerOptions

    async def publish(self, data: bytes, msg_id: str | None = None) -> None:
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        await self.js.publish(f"{self.options.subject[:-2]}.completed", data, headers=headers)

    async def info(self) -> ConsumerInfo:
        info: ConsumerInfo = await self.js.consumer_info(self.options.stream, self.options.durable)
        return info

    async def delivered(self) -> int:
        """How many deliveries the consumer has made, redeliveries included."""
        info = await self.info()
        assert info.delivered is not None
        return info.delivered.consumer_seq or 0


@pytest.fixture
async def lane(nats_server: NatsServer) -> AsyncIterator[Lane]:
    tag = uuid.uuid4().hex[:12]
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    stream = f"BILLINGTEST_{tag}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"billingtest.{tag}.>"]))
    options = ConsumerOptions(
        durable=f"billing-test-{tag}",
        stream=stream,
        subject=f"billingtest.{tag}.>",
        fetch_timeout_s=0.2,
        retry_delay_s=0.2,
    )
    yield Lane(nc, js, options)
    await js.delete_stream(stream)
    await nc.close()


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def _rows(engine: Engine, account_id: str) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count()).select_from(LedgerEntry).where(col(LedgerEntry.account_id) == account_id)
        ).one()


async def _settled(lane: Lane) -> bool:
    if not await _consumer_exists(lane):  # run() creates it; it may not have yet
        return False
    info = await lane.info()
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_malformed_events_are_terminated_and_the_loop_goes_on(lane: Lane, engine: Engine) -> None:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    await lane.publish(b"not json")
    await lane.publish(b'{"request_id": "only-an-id"}')
    await lane.publish(b"\xff\xfe")
    await lane.publish(usage_event(account, actual_cost_usd="-1").model_dump_json().encode())
    good = usage_event(account)
    await lane.publish(good.model_dump_json().encode(), msg_id=good.request_id)

    writer = Writer(engine)
    consumer = UsageConsumer(lane.js, writer, lane.options)
    task = asyncio.create_task(consumer.run())
    try:
        await _eventually(lambda: _settled(lane))
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)
        writer.close()
    assert _rows(engine, account) == 1
    info = await lane.info()
    # Terminated, not redelivered: each of the five was delivered exactly once.
    assert await lane.delivered() == 5 and info.num_redelivered == 0


async def test_a_database_failure_is_retried_until_it_records(lane: Lane, new_database: NewDatabase) -> None:
    # A database without its tables fails every insert, like one that is down.
    broken = make_engine(new_database(migrated=False))
    event = usage_event("acct-retry")
    await lane.publish(event.model_dump_json().encode(), msg_id=event.request_id)
    writer = Writer(broken)
    consumer = UsageConsumer(lane.js, writer, lane.options)
    task = asyncio.create_task(consumer.run())
    try:

        async def redelivered() -> bool:
            return await _consumer_exists(lane) and await lane.delivered() >= 2

        await _eventually(redelivered)
        assert (await lane.info()).num_ack_pending == 1  # nak'd, not acked or dropped
        upgrade(broken)  # the database comes back
        await _eventually(lambda: _settled(lane))
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)
        writer.close()
    assert _rows(broken, "acct-retry") == 1
    broken.dispose()


async def test_stop_returns_promptly_when_idle(lane: Lane, engine: Engine) -> None:
    writer = Writer(engine)
    consumer = UsageConsumer(lane.js, writer, lane.options)
    task = asyncio.create_task(consumer.run())
    await _eventually(lambda: _consumer_exists(lane))
    consumer.stop()
    await asyncio.wait_for(task, 10)  # a stop that was ignored never returns
    writer.close()


async def _consumer_exists(lane: Lane) -> bool:
    try:
        await lane.info()
    except nats.js.errors.NotFoundError:
        return False
    return True


async def test_an_event_the_database_refuses_does_not_hold_back_its_batch(
    lane: Lane, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = f"acct-{uuid.uuid4().hex[:8]}"
    good = [usage_event(account) for _ in range(3)]
    refused = usage_event(account)
    for event in [good[0], refused, *good[1:]]:
        await lane.publish(event.model_dump_json().encode(), msg_id=event.request_id)

    def settle_or_refuse(connection: Connection, entry: dict[str, Any]) -> bool:
        if entry["request_id"] == refused.request_id:
            raise DataError("INSERT INTO ledger_entries ...", {}, ValueError("a value the database refuses"))
        return settle(connection, entry)

    monkeypatch.setattr(consumer_module, "settle", settle_or_refuse)
    writer = Writer(engine)
    consumer = UsageConsumer(lane.js, writer, lane.options)
    task = asyncio.create_task(consumer.run())
    try:

        async def only_the_refused_one_is_left() -> bool:
            if not await _consumer_exists(lane):
                return False
            info = await lane.info()
            return _rows(engine, account) == 3 and info.num_ack_pending == 1 and await lane.delivered() >= 5

        await _eventually(only_the_refused_one_is_left)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)
        writer.close()


async def test_a_poison_event_is_dead_lettered_while_the_others_are_recorded(lane: Lane, tmp_path: Path) -> None:
    # The database itself refuses one row (a trigger), as it would a value it cannot store.
    engine = make_engine(f"sqlite:///{tmp_path / 'billing.db'}")
    upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON ledger_entries "
            "WHEN NEW.request_id LIKE 'poison-%' BEGIN SELECT RAISE(ABORT, 'a row the database refuses'); END"
        )
    dead_subject = f"deadletter.{lane.options.subject.removesuffix('>')}>"
    await events.ensure_streams(lane.js)  # the DEADLETTER stream, as every service makes it at start
    account = f"acct-{uuid.uuid4().hex[:8]}"
    poison = usage_event(account, request_id=f"poison-{uuid.uuid4().hex}")
    await lane.publish(poison.model_dump_json().encode(), msg_id=poison.request_id)
    options = dataclasses.replace(lane.options, max_deliveries=3, retry_delay_s=0.1)
    writer = Writer(engine)
    consumer = UsageConsumer(lane.js, writer, options)
    task = asyncio.create_task(consumer.run())
    try:
        # Good events keep arriving and are recorded while the poison one comes back.
        good = []
        for _ in range(6):
            event = usage_event(account)
            good.append(event)
            await lane.publish(event.model_dump_json().encode(), msg_id=event.request_id)
            await asyncio.sleep(0.1)
        await _eventually(lambda: _settled(lane))
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)
        writer.close()
    assert _rows(engine, account) == len(good)
    parked = await lane.js.pull_subscribe(dead_subject, durable=f"dead-{uuid.uuid4().hex[:8]}")
    [message] = await parked.fetch(1, timeout=5)
    assert message.data == poison.model_dump_json().encode()
    assert "a row the database refuses" in (message.headers or {})["StepBlend-Dead-Letter-Reason"]
    # Delivered at least max_deliveries times (more while nothing else had been recorded yet), then parked.
    assert await lane.delivered() - len(good) >= options.max_deliveries
    engine.dispose()
