"""The shared JetStream pull loop against a real nats-server, on a stream of each test's own."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, StreamConfig

from services.common import events
from services.common.pull import ACK, DEAD_LETTER_REASON, PullLoop, PullOptions, Verdict, retry
from tests.support.procs import NatsServer
from tests.support.waiting import eventually


@dataclass
class Lane:
    """A private stream, a durable consumer's config on it, and fast loop options."""

    nc: NATS
    js: JetStreamContext
    prefix: str
    options: PullOptions
    config: ConsumerConfig

    async def publish(self, *bodies: bytes) -> None:
        for body in bodies:
            await self.js.publish(f"{self.prefix}.completed", body)

    async def info(self) -> ConsumerInfo | None:
        try:
            info: ConsumerInfo = await self.js.consumer_info(self.options.stream, self.config.durable_name or "")
        except nats.js.errors.NotFoundError:
            return None
        return info

    async def settled(self) -> bool:
        """Everything delivered and answered for good (acked or terminated)."""
        info = await self.info()
        return info is not None and info.num_pending == 0 and info.num_ack_pending == 0

    async def dead_letters(self, timeout: float = 0.5) -> list[Msg]:
        """What the loop parked on `deadletter.<prefix>.>`, read from the DEADLETTER stream.

        A fetch returns as soon as a message is there, so `timeout` only bounds an
        empty answer: long where a message is expected, short where none is."""
        parked = await self.js.pull_subscribe(
            f"{events.DEAD_LETTER_PREFIX}{self.prefix}.>", stream=events.DEAD_LETTER_STREAM
        )
        try:
            return list(await parked.fetch(10, timeout=timeout))
        except nats.errors.TimeoutError:
            return []
        finally:
            await parked.unsubscribe()


@pytest.fixture
async def lane(nats_server: NatsServer) -> AsyncIterator[Lane]:
    tag = uuid.uuid4().hex[:12]
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await events.ensure_streams(js)  # the DEADLETTER stream, as every service makes it at start
    stream, prefix = f"PULLTEST_{tag}", f"pulltest.{tag}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"]))
    options = PullOptions(stream=stream, batch=16, fetch_timeout_s=0.2, retry_delay_s=0.05, max_deliveries=3)
    config = ConsumerConfig(
        durable_name=f"pull-test-{tag}",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
        max_deliver=-1,
        filter_subject=f"{prefix}.>",
    )
    yield Lane(nc, js, prefix, options, config)
    await js.delete_stream(stream)
    await nc.close()


class Handler:
    """Acks every message but those it is told to refuse; counts what it was handed."""

    def __init__(self, refuse: set[bytes] | None = None) -> None:
        self.refuse = refuse if refuse is not None else {b"poison"}
        self.seen: Counter[bytes] = Counter()

    async def __call__(self, messages: list[Msg]) -> Sequence[Verdict]:
        self.seen.update(m.data for m in messages)
        return [retry("RefusedError: the database refuses it") if m.data in self.refuse else ACK for m in messages]


async def running(loop: PullLoop, lane: Lane) -> asyncio.Task[None]:
    task = asyncio.create_task(loop.run(lane.js, lambda: lane.config))
    await asyncio.wait_for(loop.wait_bound(), 10)
    return task


async def stopped(loop: PullLoop, task: asyncio.Task[None], within: float = 5.0) -> float:
    """Stop the loop; how long `run()` took to return."""
    started = time.monotonic()
    loop.stop()
    await asyncio.wait_for(task, within)
    return time.monotonic() - started


async def test_a_message_that_keeps_failing_is_dead_lettered_while_the_others_are_handled(lane: Lane) -> None:
    goods = [f"good-{n}".encode() for n in range(6)]
    await lane.publish(*goods[:3], b"poison", *goods[3:])
    handler = Handler()
    loop = PullLoop(handler, lane.options)
    task = await running(loop, lane)
    try:
        await eventually(lane.settled, what="every message acked or terminated")
    finally:
        await stopped(loop, task)
    # The good ones once each; the poison one on each of its max_deliveries deliveries, then parked.
    assert handler.seen == {**dict.fromkeys(goods, 1), b"poison": lane.options.max_deliveries}
    [parked] = await lane.dead_letters(timeout=5)
    assert parked.subject == f"{events.DEAD_LETTER_PREFIX}{lane.prefix}.completed"
    assert parked.data == b"poison"
    assert (parked.headers or {})[DEAD_LETTER_REASON] == "RefusedError: the database refuses it"


async def test_while_nothing_is_handled_nothing_is_dead_lettered(lane: Lane) -> None:
    """As with a database that is down: every message fails, and waits for it to come back."""
    bodies = [f"event-{n}".encode() for n in range(3)]
    await lane.publish(*bodies)
    handler = Handler(refuse=set(bodies))
    loop = PullLoop(handler, lane.options)
    task = await running(loop, lane)
    try:
        # Well past max_deliveries each, and still nothing parked.
        limit = lane.options.max_deliveries
        await eventually(lambda: all(handler.seen[b] > limit + 1 for b in bodies), what="repeated redeliveries")
        assert await lane.dead_letters() == []
        handler.refuse.clear()  # the dependency is back
        await eventually(lane.settled, what="every message acked")
    finally:
        await stopped(loop, task)
    assert await lane.dead_letters() == []


async def test_a_handler_that_raises_has_its_batch_delivered_again(lane: Lane) -> None:
    await lane.publish(b"one", b"two")
    calls: Counter[bytes] = Counter()

    async def flaky(messages: list[Msg]) -> Sequence[Verdict]:
        calls.update(m.data for m in messages)
        if calls[b"one"] == 1:
            raise RuntimeError("a bug on the first try")
        return [ACK] * len(messages)

    loop = PullLoop(flaky, lane.options)
    task = await running(loop, lane)
    try:
        await eventually(lane.settled, what="both messages acked")
    finally:
        await stopped(loop, task)
    assert calls == {b"one": 2, b"two": 2}


async def test_stop_returns_promptly(lane: Lane, caplog: pytest.LogCaptureFixture) -> None:
    # Idle, in a fetch as long as production's: stop waits for it at most (a loop
    # that went on fetching would not return within 5 s; the slack is for a busy machine).
    options = dataclasses.replace(lane.options, fetch_timeout_s=1.0)
    loop = PullLoop(Handler(), options)
    task = await running(loop, lane)
    assert await stopped(loop, task, within=5) < 3
    # Failing to bind (no such stream), waiting 30 s to retry: stop ends the wait, well
    # short of the 30 s (a stop that waited it out would time out at 10 s).
    missing = dataclasses.replace(options, stream=f"{options.stream}_MISSING", retry_delay_s=30)
    loop = PullLoop(Handler(), missing, what="test messages")
    task = asyncio.create_task(loop.run(lane.js, lambda: lane.config))
    await eventually(
        lambda: any("test messages unavailable" in r.getMessage() for r in caplog.records), what="a failed bind"
    )
    assert await stopped(loop, task, within=10) < 5


async def test_a_consumer_of_the_loops_own_is_deleted_when_it_stops(lane: Lane) -> None:
    """Best-effort readers (AckPolicy NONE): a named consumer, created for the loop and gone after it."""
    await lane.publish(b"one", b"two")
    handler = Handler(refuse=set())
    config = ConsumerConfig(
        name=f"own-{uuid.uuid4().hex[:8]}",
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=f"{lane.prefix}.>",
        inactive_threshold=60,
    )
    loop = PullLoop(handler, lane.options)
    task = asyncio.create_task(loop.consume(lane.js, config))
    await eventually(lambda: sum(handler.seen.values()) == 2, what="both messages handled")
    names = {c.name for c in await lane.js.consumers_info(lane.options.stream)}
    assert config.name in names
    await stopped(loop, task)
    assert config.name not in {c.name for c in await lane.js.consumers_info(lane.options.stream)}
