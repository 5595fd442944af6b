"""One way to read a JetStream stream: a pull consumer's fetch loop, shared by
billing's ledger and the router's statistics.

A consumer is bound from its `ConsumerConfig`: a durable one (`durable_name`,
shared by replicas, kept by the server) is created or bound by name; any other
is created here under its `name` and deleted when the loop lets go of it. Then,
until `stop()`:

- fetch up to `batch` messages, waiting at most `fetch_timeout_s` (also the
  longest a stop waits); after a batch short of `batch`, wait `linger_s` for more
  to gather: a fetch returns with the first message there, at two pull requests
  each, which under steady traffic costs more than handling the message;
- hand the batch to the handler, which returns one `Verdict` per message, and
  only then answer each, so an ack follows whatever the handler committed:
    ACK    done, or done before: never delivered again;
    RETRY  failed, may succeed later: nak'd, delivered again after `retry_delay_s`;
    TERM   can never succeed (the handler logged why): never delivered again;
  a handler that raises has every message of its batch RETRY'd;
- poison: a message RETRY'd on its `max_deliveries`-th delivery or later while
  others are acked (one was within `healthy_within_s`) is published to
  `deadletter.` + its subject (the DEADLETTER stream, kept for an operator) with
  the reason in `StepBlend-Dead-Letter-Reason`, then terminated; if that publish
  fails it is nak'd, never dropped. While nothing is acked (the handler's own
  dependency is down) nothing is dead-lettered: every message waits for it;
- with `AckPolicy.NONE` (readers that tolerate a lost message) nothing is
  answered: the verdicts are only the handler's account;
- after `idle_fetches_before_check` empty fetches in a row (0: never), the
  consumer's existence is checked: a server that lost it raises NotFoundError,
  which an idle fetch alone does not always reveal.

`consume()` is one binding: it returns once stopped and raises when binding or
fetching fails (fetch timeouts aside), so a caller that owns more (a connection)
can rebuild it. `run()` repeats `consume()` until stopped, each failure logged
(a warning once per outage, then debug) and retried after `retry_delay_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from services.common.events import DEAD_LETTER_PREFIX

__all__ = ["ACK", "DEAD_LETTER_REASON", "TERM", "Action", "Handler", "PullLoop", "PullOptions", "Verdict", "retry"]

log = logging.getLogger(__name__)

DEAD_LETTER_REASON = "StepBlend-Dead-Letter-Reason"


class Action(enum.Enum):
    ACK = "ack"
    RETRY = "retry"
    TERM = "term"


@dataclass(frozen=True)
class Verdict:
    """What became of one message; `reason` says why a RETRY failed (kept with a dead letter)."""

    action: Action
    reason: str = ""


ACK = Verdict(Action.ACK)
TERM = Verdict(Action.TERM)


def retry(reason: str) -> Verdict:
    return Verdict(Action.RETRY, reason)


Handler = Callable[[list[Msg]], Awaitable[Sequence[Verdict]]]


@dataclass(frozen=True)
class PullOptions:
    """Where a loop reads and how it paces itself."""

    stream: str
    batch: int = 64
    fetch_timeout_s: float = 1.0
    linger_s: float = 0.05
    retry_delay_s: float = 1.0
    #: Deliveries after which a message RETRY'd while others are acked is dead-lettered (0: never).
    max_deliveries: int = 0
    #: "Others are acked": one was within this many seconds.
    healthy_within_s: float = 60.0
    idle_fetches_before_check: int = 0


class PullLoop:
    """Fetches from one consumer at a time and answers for `handle` until `stop()`."""

    def __init__(self, handle: Handler, options: PullOptions, what: str = "messages") -> None:
        self._handle = handle
        self._options = options
        self._what = what
        self._stopping = asyncio.Event()
        self._bound = asyncio.Event()
        self._bindings = 0
        self._acked_at: float | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Ask `run()` / `consume()` to return once the batch in hand is answered."""
        self._stopping.set()

    async def wait_bound(self) -> None:
        """Return once a consumer is bound (start-up logs and tests)."""
        await self._bound.wait()

    async def pause(self, seconds: float | None = None) -> None:
        """Wait `seconds` (default: the retry delay), or until stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self._options.retry_delay_s if seconds is None else seconds)

    async def run(
        self,
        js: JetStreamContext,
        config: Callable[[], ConsumerConfig],
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`consume()` until stopped, with a fresh `config()` (after `prepare()`) each
        time; failures are logged and retried, never raised."""
        failing = False
        while not self.stopping:
            bindings = self._bindings
            try:
                if prepare is not None:
                    await prepare()
                await self.consume(js, config())
            except Exception as exc:
                # Once per outage at warning level: retries every few seconds
                # would otherwise fill the log with the same line.
                quiet = failing and bindings == self._bindings
                log.log(
                    logging.DEBUG if quiet else logging.WARNING,
                    "%s unavailable (%s); retrying",
                    self._what,
                    type(exc).__name__,
                    exc_info=not quiet,
                )
                failing = True
                await self.pause()

    async def consume(self, js: JetStreamContext, config: ConsumerConfig) -> None:
        """Bind `config`'s consumer and fetch from it until stopped; raises on failure."""
        options = self._options
        durable = config.durable_name
        name = durable or config.name
        if not name:
            raise ValueError("a pull consumer needs a durable_name or a name")
        if durable:
            subscription = await js.pull_subscribe(
                config.filter_subject or ">", durable=durable, stream=options.stream, config=config
            )
        else:
            await js.add_consumer(options.stream, config)
            subscription = await js.pull_subscribe_bind(consumer=name, stream=options.stream)
        self._bindings += 1
        self._bound.set()
        log.info("consuming %s from %s (consumer %s)", self._what, options.stream, name)
        answers = config.ack_policy != AckPolicy.NONE
        try:
            idle = 0
            while not self.stopping:
                try:
                    messages = await subscription.fetch(options.batch, timeout=options.fetch_timeout_s)
                except nats.errors.TimeoutError:
                    idle += 1
                    if options.idle_fetches_before_check and idle >= options.idle_fetches_before_check:
                        idle = 0
                        await js.consumer_info(options.stream, name)
                    continue
                idle = 0
                verdicts = await self._verdicts(messages)
                if answers:
                    await self._answer(js, messages, verdicts)
                if len(messages) < options.batch:
                    await self.pause(options.linger_s)
        finally:
            self._bound.clear()
            try:
                await subscription.unsubscribe()
            except Exception:
                # Unanswered messages are redelivered after the ack wait whatever happens here.
                log.debug("unsubscribing from %s failed", options.stream, exc_info=True)
            if not durable:
                # Best effort: the server expires it after its inactive threshold anyway.
                with contextlib.suppress(Exception):
                    await js.delete_consumer(options.stream, name)

    async def _verdicts(self, messages: list[Msg]) -> Sequence[Verdict]:
        try:
            verdicts = await self._handle(messages)
            if len(verdicts) != len(messages):
                raise ValueError(f"{len(verdicts)} verdicts for {len(messages)} messages")
        except Exception as exc:
            log.exception("handling %d %s failed; they will be delivered again", len(messages), self._what)
            return [retry(f"{type(exc).__name__}: {exc}")] * len(messages)
        return verdicts

    async def _answer(self, js: JetStreamContext, messages: list[Msg], verdicts: Sequence[Verdict]) -> None:
        if any(v.action is Action.ACK for v in verdicts):
            self._acked_at = time.monotonic()
        for message, verdict in zip(messages, verdicts, strict=True):
            if verdict.action is Action.ACK:
                await self._reply(message, message.ack)
            elif verdict.action is Action.TERM:
                await self._reply(message, message.term)
            elif self._poison(message):
                await self._dead_letter(js, message, verdict.reason)
            else:
                await self._reply(message, self._nak(message))

    def _poison(self, message: Msg) -> bool:
        """Whether `message` failed often enough, while others are acked."""
        acked = self._acked_at
        healthy = acked is not None and time.monotonic() - acked < self._options.healthy_within_s
        limit = self._options.max_deliveries
        return healthy and limit > 0 and message.metadata.num_delivered >= limit

    async def _dead_letter(self, js: JetStreamContext, message: Msg, reason: str) -> None:
        headers = {**(message.headers or {}), DEAD_LETTER_REASON: reason[:500]}
        try:
            await js.publish(f"{DEAD_LETTER_PREFIX}{message.subject}", message.data, headers=headers)
        except Exception:
            log.warning("dead-lettering a message on %s failed; it will be redelivered", message.subject, exc_info=True)
            await self._reply(message, self._nak(message))
            return
        log.error(
            "a message on %s failed %d times while others were handled: dead-lettered (%s)",
            message.subject,
            message.metadata.num_delivered,
            reason[:200],
        )
        await self._reply(message, message.term)

    def _nak(self, message: Msg) -> Callable[[], Awaitable[None]]:
        return lambda: message.nak(delay=self._options.retry_delay_s)

    async def _reply(self, message: Msg, action: Callable[[], Awaitable[None]]) -> None:
        try:
            await action()
        except Exception:
            # A lost answer means one redelivery after the ack wait, which handlers absorb.
            log.warning("answering a message on %s failed", message.subject, exc_info=True)
