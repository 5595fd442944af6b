"""Feeds the router's live statistics from the `usage.v1.*` events on JetStream.

Delivery semantics (every router replica has its own consumer and sees every event;
the fetch loop itself is the shared one in services/common/pull.py):
- one ephemeral pull consumer per replica on stream USAGE, subject `usage.v1.>`, with
  no acks (AckPolicy NONE): statistics are best effort, a lost sample only nudges an
  average, and a redelivery would count one twice. The server removes the consumer
  when the replica has been gone for `inactive_threshold_s`.
- start: the events of the last `replay_s` seconds (DeliverPolicy BY_START_TIME), so a
  new or restarted replica's statistics and breakers reflect the last few minutes at
  once, without replaying the stream's month of history.
- it keeps its place: it remembers the last stream sequence it folded and, when the
  consumer is lost (NATS restarted, the connection dropped long enough for the server
  to expire it), recreates it from the next sequence, so an outage loses only what the
  stream itself lost.
- a malformed event is logged and skipped; an event that ended more than `max_age_s`
  ago is skipped (it would weigh almost nothing, and must not open a breaker now).
- NATS unreachable, at start or later: the router keeps serving from what it knows
  (priors, and whatever was folded) while this retries in the background.
- tracing: folding an event is a CONSUMER span `process usage.v1.*`, a child of the
  request whose `traceparent` the event carries.

Time: an event ended at admitted_at + latency_ms (the gateway's wall clock). That is
mapped onto the router's monotonic clock as now - age (age clamped at 0 for clock
skew), so a late event (an outbox flushing after an outage) counts as old, not new.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from pydantic import ValidationError

from services.common import events, telemetry
from services.common.pull import ACK, TERM, PullLoop, PullOptions, Verdict
from services.common.tls import InternalTls
from services.router.stats import StatsBook

__all__ = ["ConsumerOptions", "StatsConsumer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerOptions(PullOptions):
    """Where the consumer reads and how it paces itself (the pull loop's options and
    the router's own); the defaults are production's. `linger_s`: a fetch returns with
    the first event there, at two pull requests each, which under steady traffic costs
    more than folding the event, so events gather that long after a short fetch."""

    stream: str = events.USAGE_STREAM
    batch: int = 256
    retry_delay_s: float = 2.0
    #: Empty fetches in a row after which the consumer's existence is checked.
    idle_fetches_before_check: int = 10
    subject: str = "usage.v1.>"
    #: Seconds of history a fresh consumer starts with.
    replay_s: float = 300.0
    #: Events older than this (by their end time) are not folded.
    max_age_s: float = 600.0
    inactive_threshold_s: float = 60.0
    client_name: str = "router"
    #: STEPBLEND_NATS_STREAM_REPLICAS, for the streams it declares.
    stream_replicas: int = 1
    #: TLS to NATS (services/common/tls.py), when configured.
    tls: InternalTls | None = None


class StatsConsumer:
    """Folds usage events into a `StatsBook` until `stop()` or cancellation."""

    def __init__(
        self,
        nats_url: str,
        book: StatsBook,
        options: ConsumerOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = nats_url
        self._book = book
        self._options = options = options or ConsumerOptions()
        self._clock = clock
        self._wall_clock = wall_clock
        self._loop = PullLoop(self._fold_batch, options, what="usage events for routing statistics")
        self._last_sequence = 0
        self._folded = 0
        # Each fold is a span in the request's trace (its traceparent header), when tracing is on.
        self._tracer = trace.get_tracer(__name__) if telemetry.tracing_enabled() else None

    @property
    def folded(self) -> int:
        """Events folded so far (for logs and tests)."""
        return self._folded

    @property
    def last_sequence(self) -> int:
        """The last stream sequence seen; 0 before the first event."""
        return self._last_sequence

    async def wait_connected(self) -> None:
        """Return once the consumer is bound to the stream (tests and start-up logs)."""
        await self._loop.wait_bound()

    def stop(self) -> None:
        """Ask `run()` to return after the batch in hand."""
        self._loop.stop()

    async def run(self) -> None:
        """Consume until stopped; NATS failures are waited out and retried, never raised.
        Meanwhile the router routes on what it knows."""
        nc = await self._connect()
        if nc is None:
            return
        try:
            js = nc.jetstream()
            await self._loop.run(
                js, self._consumer_config, prepare=partial(events.ensure_streams, js, self._options.stream_replicas)
            )
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    def fold(self, data: bytes) -> bool:
        """Fold one message body; False when it was skipped (malformed or too old)."""
        try:
            event = events.UsageEvent.model_validate_json(data)
        except ValidationError as exc:
            log.warning(
                "skipping a malformed usage event: %s",
                exc.errors(include_input=False, include_url=False),
            )
            return False
        ended = event.admitted_at + event.latency_ms / 1000.0
        age = max(0.0, self._wall_clock() - ended)
        if age > self._options.max_age_s:
            return False
        self._book.observe(event, at=self._clock() - age)
        self._folded += 1
        return True

    async def _connect(self) -> NATS | None:
        """A connection (which then reconnects by itself), or None when stopped first."""
        failing = False
        while not self._loop.stopping:
            try:
                return await events.connect(self._url, self._options.client_name, self._options.tls)
            except Exception as exc:
                # Once per outage at warning level, as the pull loop logs.
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "NATS unreachable (%s); routing on what is known, retrying",
                    type(exc).__name__,
                    exc_info=not failing,
                )
                failing = True
                await self._loop.pause()
        return None

    def _consumer_config(self) -> ConsumerConfig:
        """This replica's consumer: from the next event after the last one seen, or the last `replay_s`."""
        options = self._options
        config = ConsumerConfig(
            name=f"router-{uuid.uuid4().hex[:16]}",
            ack_policy=AckPolicy.NONE,
            filter_subject=options.subject,
            inactive_threshold=options.inactive_threshold_s,
            mem_storage=True,
            num_replicas=1,
        )
        if self._last_sequence:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self._last_sequence + 1
        else:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = datetime.datetime.fromtimestamp(self._wall_clock() - options.replay_s, datetime.UTC)
        return config

    async def _fold_batch(self, messages: list[Msg]) -> list[Verdict]:
        # No acks (AckPolicy NONE): the verdicts only say what became of each event.
        return [self._handle(message) for message in messages]

    def _handle(self, message: Msg) -> Verdict:
        with contextlib.suppress(Exception):
            self._last_sequence = max(self._last_sequence, message.metadata.sequence.stream)
        try:
            if self._tracer is None:
                folded = self.fold(message.data)
            else:
                with telemetry.consuming(self._tracer, message.subject, message.headers):
                    folded = self.fold(message.data)
        except Exception:
            # A bug in folding must not stop the consumer: the next event may be fine.
            log.exception("folding a usage event failed; skipped")
            return TERM
        return ACK if folded else TERM
