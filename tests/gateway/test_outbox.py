"""The outbox against a real nats-server: every event is published once, in
order, and survives an outage of the server."""

from __future__ import annotations

import uuid
from pathlib import Path

import nats
import pytest

from services.common import events
from services.common.events import UsageEvent
from services.gateway.outbox import Outbox
from tests.support.procs import NatsServer
from tests.support.waiting import eventually


def event(outcome: str = "completed") -> UsageEvent:
    return UsageEvent(request_id=uuid.uuid4().hex, account_id="a", outcome=outcome, admitted_at=0.0)  # type: ignore[arg-type]


async def stream_ids(js: nats.js.JetStreamContext, ids: set[str]) -> set[str]:
    seen: set[str] = set()
    sub = await js.subscribe("usage.v1.>", ordered_consumer=True)
    try:
        while seen != ids:
            msg = await sub.next_msg(timeout=5)
            rid = UsageEvent.model_validate_json(msg.data).request_id
            if rid in ids:
                seen.add(rid)
    finally:
        await sub.unsubscribe()
    return seen


async def test_events_are_published_with_their_id(nats_server: NatsServer) -> None:
    nc = await events.connect(nats_server.url, "test")
    js = nc.jetstream()
    await events.ensure_streams(js)
    outbox = Outbox(js)
    outbox.start()
    sent = [event(), event("failed"), event()]
    for e in sent:
        outbox.put(e)
    sent.append(sent[0])  # a retry of the same request is dropped by the stream
    outbox.put(sent[0])
    await outbox.drain(5)
    assert len(outbox) == 0
    assert await stream_ids(js, {e.request_id for e in sent}) == {e.request_id for e in sent}
    await nc.close()


async def test_events_wait_out_a_nats_outage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = NatsServer(tmp_path / "store").start()
    nc = await events.connect(server.url, "test")
    js = nc.jetstream()
    await events.ensure_streams(js)
    outbox = Outbox(js)
    outbox.start()
    server.stop()
    queued = [event() for _ in range(20)]
    for e in queued:
        outbox.put(e)

    def failed_publishes() -> int:
        return sum("usage publish failed" in r.getMessage() for r in caplog.records)

    # Two rounds of publishing have failed, the second after a backoff: the outbox
    # has tried and is retrying, and still holds every event.
    await eventually(lambda: failed_publishes() >= 2, timeout=30, what="two failed rounds of publishing")
    assert len(outbox) == 20 and outbox.published == 0  # nothing is acked while the server is down, nothing dropped
    restarted = NatsServer(server.store, port=server.port).start()
    try:
        await outbox.drain(15)
        assert len(outbox) == 0
        assert await stream_ids(js, {e.request_id for e in queued}) == {e.request_id for e in queued}
        await nc.close()
    finally:
        restarted.stop()
