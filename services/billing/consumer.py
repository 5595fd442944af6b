"""The usage consumer: settles `usage.v1.*` events from JetStream (settlement.py).

Each fetched batch is settled in one transaction; fetching, answering and
dead-lettering are the shared pull loop's (services/common/pull.py). Delivery
semantics, per message:
- recorded (or already there)    → ack, after the batch's commit;
- not a UsageEvent, or an event
  that can never be recorded     → term: redelivering it cannot help; logged;
- the database failed            → the batch's events are tried one by one, and
                                   each that fails again is nak'd with a delay: it
                                   comes back later, and the others are not held;
- failed `max_deliveries` times
  while others are recorded      → a poison event: published to the dead-letter
                                   subject (`deadletter.` + its subject, kept in the
                                   DEADLETTER stream for an operator) and terminated,
                                   instead of coming back forever. While nothing
                                   records (the database is down) no event is
                                   dead-lettered: they all wait for it.
Anything unexpected is treated like a database failure: retrying an event is
safe (writes are idempotent), dropping one loses a charge.

The consumer is one durable pull consumer ("billing") shared by every billing
replica, so each event is settled by one of them at a time; a lost ack means a
redelivery, which the idempotent settlement absorbs.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import trace
from pydantic import ValidationError
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from services.billing import ledger
from services.billing.settlement import settle
from services.billing.writer import Writer
from services.common import events, telemetry
from services.common.pull import ACK, TERM, PullLoop, PullOptions, Verdict, retry

__all__ = ["ConsumerOptions", "UsageConsumer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerOptions(PullOptions):
    """Where the consumer reads and how it paces itself (the pull loop's options and
    billing's own); the defaults are production's.

    `linger_s`: after a fetch short of a batch, events gather this long. A fetch
    returns as soon as one event is there, and each costs two pull requests and a
    flush of acks: one per event under steady traffic, several times what settling
    the event costs. So an event is settled up to this much later."""

    stream: str = events.USAGE_STREAM
    # Deliveries after which an event that fails while others are recorded is dead-lettered.
    max_deliveries: int = 5
    durable: str = "billing"
    subject: str = "usage.v1.>"
    # Longer than recording a batch ever takes, so a slow batch is not redelivered
    # to another replica while still in hand.
    ack_wait_s: float = 30.0


class UsageConsumer:
    """Pulls usage events and records them until `stop()` or cancellation."""

    def __init__(self, js: JetStreamContext, writer: Writer, options: ConsumerOptions | None = None) -> None:
        self._js = js
        self._writer = writer
        self._options = options = options or ConsumerOptions()
        self._loop = PullLoop(self._settle, options, what="usage events")
        self._tracer = trace.get_tracer(__name__) if telemetry.tracing_enabled() else None

    def stop(self) -> None:
        """Ask `run()` to return once the batch in hand is settled."""
        self._loop.stop()

    async def run(self) -> None:
        """Consume until stopped; NATS and database failures are waited out, never raised."""
        await self._loop.run(self._js, self._config)

    def _config(self) -> ConsumerConfig:
        options = self._options
        return ConsumerConfig(
            durable_name=options.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=options.ack_wait_s,
            # Never give up on an event: a charge must not vanish after N failures.
            max_deliver=-1,
            filter_subject=options.subject,
        )

    async def _settle(self, messages: list[Msg]) -> list[Verdict]:
        """Settle a fetched batch in one transaction; a verdict for each message."""
        verdicts = [TERM] * len(messages)
        batch: list[tuple[int, Msg, dict[str, Any]]] = []
        for i, message in enumerate(messages):
            entry = self._entry(message)
            if entry is not None:
                batch.append((i, message, entry))
        if not batch:
            return verdicts
        # In account order, so that two replicas' batches lock counters in the same order.
        batch.sort(key=lambda item: item[2]["account_id"])
        failed = await self._record(batch)
        if failed is not None and len(batch) > 1:
            # One event the database refuses must not hold back the others: each on its own.
            for one in batch:
                verdicts[one[0]] = _verdict(await self._record([one]))
        else:
            for i, _, _ in batch:
                verdicts[i] = _verdict(failed)
        return verdicts

    async def _record(self, batch: list[tuple[int, Msg, dict[str, Any]]]) -> Exception | None:
        """Settle `batch` in one transaction; the error if that failed."""
        with contextlib.ExitStack() as spans:
            for _, message, _ in batch:
                spans.enter_context(self._span(message))
            try:
                written = await self._writer.run(partial(_settle_all, [entry for _, _, entry in batch]), attempts=3)
            except Exception as exc:
                # Lock timeouts were retried briefly; anything longer is a nak. The
                # events come back later (settling again is harmless).
                expected = isinstance(exc, SQLAlchemyError)
                log.log(
                    logging.WARNING if expected else logging.ERROR,
                    "recording %d usage event(s) failed; they will be redelivered",
                    len(batch),
                    exc_info=True,
                )
                return exc
        for (_, _, entry), new in zip(batch, written, strict=True):
            if not new:
                log.info(
                    "usage event already recorded",
                    extra={"request_id": entry["request_id"], "account_id": entry["account_id"]},
                )
        return None

    def _entry(self, message: Msg) -> dict[str, Any] | None:
        """The ledger row of `message`, or None (logged) for one that can never be recorded."""
        try:
            event = events.UsageEvent.model_validate_json(message.data)
        except ValidationError as exc:
            log.error(
                "terminating a malformed usage event on %s: %s",
                message.subject,
                exc.errors(include_input=False, include_url=False),
            )
            return None
        try:
            return ledger.entry_from_event(event)
        except ledger.InvalidEvent as exc:
            log.error(
                "terminating a usage event that cannot be recorded: %s",
                exc,
                extra={"request_id": event.request_id, "account_id": event.account_id},
            )
            return None

    def _span(self, message: Msg) -> contextlib.AbstractContextManager[object]:
        """Settling one event is a CONSUMER span in its request's trace (from its
        traceparent header), when tracing is on."""
        if self._tracer is None:
            return contextlib.nullcontext()
        return telemetry.consuming(self._tracer, message.subject, message.headers, self._options.durable)


def _verdict(error: Exception | None) -> Verdict:
    return ACK if error is None else retry(f"{type(error).__name__}: {error}")


def _settle_all(entries: list[dict[str, Any]], connection: Connection) -> list[bool]:
    return [settle(connection, entry) for entry in entries]
