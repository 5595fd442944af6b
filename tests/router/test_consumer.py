"""The usage-event consumer against a real nats-server, and the router reacting to it
through its real gRPC server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from services.common import events
from services.common.config import Settings
from services.common.events import AttemptRecord, UsageEvent
from services.common.grpcio import channel
from services.router.catalog import Catalog
from services.router.consumer import ConsumerOptions, StatsConsumer
from services.router.main import RouterOptions, serve, start
from services.router.stats import StatsBook
from stepblend.v1 import router_pb2, router_pb2_grpc
from tests.support.procs import NatsServer, free_port, wait_port
from tests.support.waiting import eventually

TOKEN = "router-consumer-test"
CONNECTED = ["openai", "anthropic", "groq", "deepseek", "mistral", "together", "xai"]


@dataclass
class Bus:
    """A connection and a stream of this test's own, so no other test's events mix in."""

    nc: NATS
    js: JetStreamContext
    options: ConsumerOptions

    async def publish(self, event: UsageEvent | bytes) -> None:
        data = event if isinstance(event, bytes) else event.model_dump_json().encode()
        subject = self.options.subject.replace(">", "completed")
        msg_id = uuid.uuid4().hex if isinstance(event, bytes) else event.request_id
        await self.js.publish(subject, data, headers={events.MSG_ID: msg_id})


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    nc = await events.connect(nats_server.url, "router-test")
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"USAGE_{tag}", f"t{tag}.usage.v1"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"]))
    options = ConsumerOptions(
        stream=stream, subject=f"{prefix}.>", replay_s=300, fetch_timeout_s=0.2, retry_delay_s=0.2
    )
    yield Bus(nc, js, options)
    await js.delete_stream(stream)
    await nc.close()


@pytest.fixture
async def running(
    bus: Bus, nats_server: NatsServer, catalog: Catalog
) -> AsyncIterator[tuple[StatsConsumer, StatsBook]]:
    book = StatsBook(catalog)
    consumer = StatsConsumer(nats_server.url, book, bus.options)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(consumer.wait_connected(), 10)
    yield consumer, book
    consumer.stop()
    await asyncio.wait_for(task, 10)


def usage(
    n: int,
    attempts: list[AttemptRecord],
    *,
    latency_ms: int = 1000,
    completion_tokens: int = 200,
    ended_ago_s: float = 0.0,
) -> UsageEvent:
    served = any(a.outcome == "ok" for a in attempts)
    return UsageEvent(
        request_id=f"req-{uuid.uuid4().hex[:8]}-{n}",
        # Each request another account's: a breaker opens only on failures from several.
        account_id=f"acct-{n}",
        outcome="completed" if served else "failed",
        admitted_at=time.time() - ended_ago_s - latency_ms / 1000,
        stream=True,
        completion_tokens=completion_tokens if served else 0,
        latency_ms=latency_ms,
        provider_answered=served,
        attempts=attempts,
    )


async def test_events_are_folded(bus: Bus, running: tuple[StatsConsumer, StatsBook], catalog: Catalog) -> None:
    consumer, book = running
    (gpt4o,) = catalog.resolve("openai:gpt-4o")
    for n in range(3):
        await bus.publish(usage(n, [AttemptRecord(provider="openai", model="gpt-4o", outcome="ok", ttft_ms=2000)]))
    await eventually(lambda: consumer.folded == 3)
    assert book.ttft_ms(gpt4o) > 1000


async def test_a_malformed_event_is_skipped(
    bus: Bus, running: tuple[StatsConsumer, StatsBook], caplog: pytest.LogCaptureFixture
) -> None:
    consumer, _ = running
    await bus.publish(b"not json at all")
    await bus.publish(b'{"request_id": "x"}')
    await bus.publish(usage(1, [AttemptRecord(provider="openai", model="gpt-4o", outcome="ok")]))
    await eventually(lambda: consumer.folded == 1)
    await eventually(lambda: consumer.last_sequence == 3)
    assert sum("malformed usage event" in r.message for r in caplog.records) == 2


async def test_a_new_replica_replays_the_last_minutes_only(bus: Bus, nats_server: NatsServer, catalog: Catalog) -> None:
    ok = [AttemptRecord(provider="openai", model="gpt-4o", outcome="ok", ttft_ms=3000)]
    await bus.publish(usage(1, ok, ended_ago_s=5))  # recent: folded
    await bus.publish(usage(2, ok, ended_ago_s=3600))  # an outbox flushing an old event: not
    book = StatsBook(catalog)
    consumer = StatsConsumer(nats_server.url, book, bus.options)
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: consumer.last_sequence == 2)
        assert consumer.folded == 1
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


async def test_a_lost_consumer_is_recreated_where_it_left_off(
    bus: Bus, running: tuple[StatsConsumer, StatsBook]
) -> None:
    consumer, _ = running
    ok = [AttemptRecord(provider="openai", model="gpt-4o", outcome="ok")]
    await bus.publish(usage(1, ok))
    await eventually(lambda: consumer.folded == 1)
    # As after a NATS restart: the server no longer knows the consumer.
    for name in await bus.js.consumers_info(bus.options.stream):
        await bus.js.delete_consumer(bus.options.stream, name.name)
    await bus.publish(usage(2, ok))
    await bus.publish(usage(3, ok))
    await eventually(lambda: consumer.folded == 3)
    # A replay of events 1-3 would come before event 4, which is delivered in stream order:
    # once it is folded, nothing earlier can still arrive.
    await bus.publish(usage(4, ok))
    await eventually(lambda: consumer.last_sequence == 4)
    assert consumer.folded == 4  # nothing replayed twice


async def test_the_router_serves_while_nats_is_down(catalog: Catalog) -> None:
    book = StatsBook(catalog)
    consumer = StatsConsumer(f"nats://127.0.0.1:{free_port()}", book, ConsumerOptions(retry_delay_s=0.1))
    task = asyncio.create_task(consumer.run())
    server, port = await start(settings(), catalog, book)
    try:
        async with channel(f"127.0.0.1:{port}", TOKEN) as ch:
            response = await router_pb2_grpc.RouterStub(ch).Route(
                router_pb2.RouteRequest(model="fastest", connected_providers=CONNECTED), timeout=5
            )
        assert response.decision.candidates
    finally:
        consumer.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.stop(None)


# --- end to end: events in, different decisions out, over gRPC -----------------------


def settings() -> Settings:
    return Settings.from_env().model_copy(update=dict(host="127.0.0.1", port=0, internal_token=TOKEN))


async def first_choice(stub: router_pb2_grpc.RouterStub, strategy: str) -> router_pb2.Candidate:
    response = await stub.Route(
        router_pb2.RouteRequest(
            model=strategy,
            features=router_pb2.RequestFeatures(prompt_tokens=500, max_output_tokens=300),
            connected_providers=CONNECTED,
        ),
        timeout=5,
    )
    candidate: router_pb2.Candidate = response.decision.candidates[0]
    return candidate


async def test_fastest_and_max_reliability_move_away_within_a_few_events(
    bus: Bus, running: tuple[StatsConsumer, StatsBook], catalog: Catalog
) -> None:
    consumer, book = running
    server, port = await start(settings(), catalog, book)
    try:
        async with channel(f"127.0.0.1:{port}", TOKEN) as ch:
            stub = router_pb2_grpc.RouterStub(ch)
            fast = await first_choice(stub, "fastest")
            steady = await first_choice(stub, "max-reliability")
            assert (fast.provider, steady.provider) == ("groq", "openai")

            # The fastest model turns slow (9 s to its first token); the most reliable
            # one starts timing out, each request then served by its fallback.
            published = 0
            moved_fast = moved_steady = 0
            while published < 10 and not (moved_fast and moved_steady):
                published += 1
                slow = AttemptRecord(
                    provider=fast.provider,
                    model=fast.model,
                    outcome="ok",
                    ttft_ms=9000,
                    latency_ms=9000,
                )
                await bus.publish(usage(published, [slow], latency_ms=10_000))
                failed = AttemptRecord(provider=steady.provider, model=steady.model, outcome="timeout", latency_ms=5000)
                backup = AttemptRecord(provider="openai", model="gpt-4.1", outcome="ok", ttft_ms=400)
                await bus.publish(usage(published, [failed, backup], latency_ms=6000))
                await eventually(lambda: consumer.folded == 2 * published)  # noqa: B023 - awaited here
                if not moved_fast and (await first_choice(stub, "fastest")).model != fast.model:
                    moved_fast = published
                now_steady = await first_choice(stub, "max-reliability")
                if not moved_steady and (now_steady.provider, now_steady.model) != (
                    steady.provider,
                    steady.model,
                ):
                    moved_steady = published
            assert 0 < moved_fast <= 3
            assert 0 < moved_steady <= 3

            # Five timeouts in a row open the failing model's circuit: excluded, explained.
            while published < 5:
                published += 1
                failed = AttemptRecord(provider=steady.provider, model=steady.model, outcome="timeout", latency_ms=5000)
                await bus.publish(usage(published, [failed]))
            await eventually(lambda: consumer.folded >= 2 * moved_steady + (5 - moved_steady))
            response = await stub.Route(
                router_pb2.RouteRequest(model="max-reliability", connected_providers=CONNECTED, explain=True),
                timeout=5,
            )
            excluded = {(e.provider, e.model): e for e in response.decision.excluded}
            assert excluded[(steady.provider, steady.model)].reason == "circuit_open"
            assert all(c.model != steady.model for c in response.decision.candidates)
    finally:
        await server.stop(None)


async def test_serve_folds_the_production_subject(nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` as `stepblend serve router` runs it: USAGE stream, `usage.v1.>`."""
    monkeypatch.delenv("STEPBLEND_CATALOG_FILE", raising=False)
    port = free_port()
    config = settings().model_copy(update=dict(port=port, nats_url=nats_server.url))
    task = asyncio.create_task(serve(config, RouterOptions()))
    nc = await events.connect(nats_server.url, "router-serve-test")
    try:
        await asyncio.to_thread(wait_port, port)
        js = nc.jetstream()
        await events.ensure_streams(js)
        # A model no other test uses, so that events replayed from them cannot interfere.
        timeouts = [AttemptRecord(provider="xai", model="grok-3-mini", outcome="timeout")]
        request = router_pb2.RouteRequest(
            model="grok-3-mini", strategy="", connected_providers=["xai", "openai"], explain=True
        )
        async with channel(f"127.0.0.1:{port}", TOKEN) as ch:
            stub = router_pb2_grpc.RouterStub(ch)
            for n in range(5):
                event = usage(n, timeouts)
                await js.publish(
                    events.USAGE_FAILED,
                    event.model_dump_json().encode(),
                    headers={events.MSG_ID: event.request_id},
                )

            async def circuit_open() -> bool:
                reply = await stub.Route(
                    router_pb2.RouteRequest(model="lowest-cost", connected_providers=["xai"], explain=True),
                    timeout=5,
                )
                reasons = {(e.model, e.reason) for e in reply.decision.excluded}
                return ("grok-3-mini", "circuit_open") in reasons

            await eventually(circuit_open, what="the events opened the model's circuit")
            # Named directly, the model stays routable: its only host is the one failing.
            named = await stub.Route(request, timeout=5)
            assert [c.model for c in named.decision.candidates] == ["grok-3-mini"]
    finally:
        await nc.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
