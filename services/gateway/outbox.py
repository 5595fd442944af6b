"""The usage-event outbox: events leave the client's critical path here, and are
never dropped while the gateway lives.

`put` only appends to a bounded in-memory queue; one task publishes to JetStream
in order, in batches (a first event waits `LINGER_S` for company), waiting for
the stream's acks, and keeps an event until it is acked. A
NATS outage just grows the queue; when it is full the gateway refuses new
requests (`is_full`) rather than lose a charge. On shutdown `drain` publishes what
is left before the process exits. Retries are safe: `Nats-Msg-Id` is the request
id, so the stream drops a duplicate within its window. `traceparent` goes beside
it, so billing's and the router's handling of the event join the request's trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from nats.js import JetStreamContext

from services.common import telemetry
from services.common.events import USAGE_COMPLETED, USAGE_FAILED, UsageEvent

log = logging.getLogger(__name__)

BATCH = 64
# How long a first event waits for others before they are published together:
# one flush and one round of acks for the lot instead of one per event. Billing
# and the router fetch in batches after a pause of their own, so the events reach
# them no later for it.
LINGER_S = 0.02


class Outbox:
    def __init__(self, js: JetStreamContext, capacity: int = 100_000) -> None:
        self._js = js
        self._capacity = capacity
        self._queue: deque[tuple[str, bytes, dict[str, str]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    def __len__(self) -> int:
        return len(self._queue)

    def is_full(self) -> bool:
        return len(self._queue) >= self._capacity

    def put(self, event: UsageEvent) -> None:
        subject = USAGE_COMPLETED if event.outcome == "completed" else USAGE_FAILED
        # Made here, in the request's context: the event carries the request's trace.
        headers = telemetry.message_headers(event.request_id, subject)
        self._queue.append((subject, event.model_dump_json().encode(), headers))
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-outbox")

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._queue) < BATCH:
                await asyncio.sleep(LINGER_S)
            batch = [self._queue[i] for i in range(min(BATCH, len(self._queue)))]
            results = await asyncio.gather(
                *(
                    self._js.publish(subject, payload, timeout=2, headers=headers)
                    for subject, payload, headers in batch
                ),
                return_exceptions=True,
            )
            # Keep order and every unacked event: drop only the acked prefix.
            acked = 0
            for result in results:
                if isinstance(result, BaseException):
                    break
                acked += 1
            for _ in range(acked):
                self._queue.popleft()
            self.published += acked
            if acked < len(batch):
                failed = results[acked]
                log.warning("usage publish failed, %d queued: %s", len(self._queue), failed)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            else:
                backoff = 0.1

    async def drain(self, timeout: float) -> None:
        """Publish what is queued (up to `timeout` seconds), then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._queue and loop.time() < deadline:  # noqa: ASYNC110 - the publisher empties it as it goes
            await asyncio.sleep(0.05)
        if self._queue:
            log.error("shutting down with %d usage events unpublished", len(self._queue))
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
