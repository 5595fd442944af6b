"""Execution: providers' event stream for one admitted request.

Providers walks the candidates and sends attempts, then the answer (chunks, or a
whole completion), usage and late attempts; the events that are ready together
come in one message. Here that stream is read in three phases: up to the first
answer (`first_answer`, which raises the error when every candidate failed), the
rest of a whole completion (`finish_completion`), or the rest of a stream
(`relay`, a message's chunks at a time). Every way out settles the request
(`usage.finish`), and cancels upstream if it is still running (`abandon`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import orjson

from services.common.vocab import Outcome
from stepblend.v1 import providers_pb2, router_pb2

from . import errors, usage
from .codecs.base import Parsed
from .deps import Deps
from .errors import ApiError
from .rpc import rpc_error
from .state import Exchange

__all__ = ["Running", "abandon", "execute", "finish_completion", "first_answer", "relay"]

log = logging.getLogger(__name__)


@dataclass
class Running:
    """An admitted request whose Execute (streamed) or Complete call is under way."""

    call: Any
    messages: AsyncIterator[providers_pb2.ExecuteEvents]
    candidates: dict[tuple[str, str], router_pb2.Candidate]
    # What `first_answer` left of the message the answer came in: the answer on.
    unread: Sequence[providers_pb2.ExecuteEvent] = ()

    async def batches(self) -> AsyncIterator[Sequence[providers_pb2.ExecuteEvent]]:
        """The events from the first answer on, a message's worth at a time."""
        yield self.unread
        async for message in self.messages:
            yield message.events


def execute(deps: Deps, exchange: Exchange, decision: router_pb2.RouteDecision, parsed: Parsed) -> Running:
    """Start providers' call for the routed candidates. The client's own body goes
    too when a candidate's provider speaks its dialect (it is then passed through)."""
    request = providers_pb2.ExecuteRequest(
        request_id=exchange.request_id,
        account_id=exchange.account_id,
        candidates=decision.candidates,
        body=orjson.dumps(parsed.upstream),
        stream=exchange.stream,
        include_usage=exchange.include_usage,
        created=exchange.created,
    )
    if parsed.native and any(c.provider in parsed.native_providers for c in decision.candidates):
        request.native_body = parsed.native
        request.native_dialect = exchange.dialect
        request.native_headers.update(exchange.native_headers)
    candidates = {(c.provider, c.model): c for c in decision.candidates}
    # Providers bounds each attempt itself; the deadline is the backstop (rpc.py).
    deadline_s = deps.gateway.providers_deadline_s(len(decision.candidates))
    if exchange.stream:
        stream = deps.providers.Execute(request, timeout=deadline_s, metadata=deps.metadata)
        return Running(stream, stream.__aiter__(), candidates)
    # A whole answer is one message: a message on the call stream, or a unary call
    # (either costs half of what an Execute stream of its own would).
    if deps.complete_calls is not None:
        task = asyncio.ensure_future(deps.complete_calls.call(request, deadline_s))
        task.add_done_callback(_retrieved)
        return Running(task, _one(task), candidates)
    unary = deps.providers.Complete(request, timeout=deadline_s, metadata=deps.metadata)
    return Running(unary, _one(unary), candidates)


def _retrieved(task: asyncio.Future[providers_pb2.ExecuteEvents]) -> None:
    # Read by `first_answer` unless the request was abandoned first: then it is dropped here.
    if not task.cancelled():
        task.exception()


async def _one(call: Awaitable[providers_pb2.ExecuteEvents]) -> AsyncIterator[providers_pb2.ExecuteEvents]:
    yield await call


def abandon(deps: Deps, exchange: Exchange, running: Running) -> None:
    """The request ended before (or after) an answer was relayed: cancel upstream, settle."""
    running.call.cancel()
    usage.finish(deps, exchange)


async def first_answer(running: Running, exchange: Exchange) -> providers_pb2.ExecuteEvent:
    """Consume attempts until a chunk or completion arrives; raise the error if none
    does. The answer and the events that came with it stay unread (`Running.batches`)."""
    try:
        async for message in running.messages:
            for i, event in enumerate(message.events):
                kind = event.WhichOneof("event")
                if kind == "attempt":
                    _record_attempt(exchange, event.attempt, running.candidates)
                elif kind in ("chunk", "completion"):
                    exchange.answered = True
                    exchange.answered_at = time.monotonic()
                    running.unread = message.events[i:]
                    return event
                elif kind == "error":
                    exchange.error_code = event.error.code or "provider_error"
                    raise errors.from_domain(event.error, exchange.rate_headers)
                elif kind == "usage":
                    exchange.usage = event.usage
    except grpc.aio.AioRpcError as exc:
        exchange.error_code = "providers_unreachable"
        raise rpc_error("providers", exc) from exc
    exchange.error_code = "no_answer"
    raise errors.unavailable("The provider ended the request without an answer.", "no_answer")


def _record_attempt(
    exchange: Exchange, attempt: providers_pb2.Attempt, candidates: dict[tuple[str, str], router_pb2.Candidate]
) -> None:
    exchange.attempts.append(attempt)
    if attempt.outcome == Outcome.OK:
        exchange.serving = candidates.get((attempt.provider, attempt.model))
        exchange.ttft_ms = attempt.ttft_ms


async def finish_completion(deps: Deps, exchange: Exchange, running: Running) -> None:
    """After a whole completion: read the usage and any late attempt, then settle."""
    try:
        async for events in running.batches():
            for event in events:
                kind = event.WhichOneof("event")
                if kind == "usage":
                    exchange.usage = event.usage
                elif kind == "attempt":
                    exchange.attempts.append(event.attempt)
    except grpc.aio.AioRpcError:
        # The answer is complete; a lost trailer costs only the usage figures.
        log.warning("usage of a completed request was lost", extra={"request_id": exchange.request_id})
    usage.finish(deps, exchange)
    if exchange.serving is None:
        raise errors.unavailable("The providers service answered without naming the attempt.", "no_answer")


async def relay(deps: Deps, exchange: Exchange, running: Running) -> AsyncIterator[list[bytes] | ApiError]:
    """A streamed answer from its first chunk: the chunks (JSON bytes) of each message
    from providers together, and an ApiError last where the stream broke after it
    started; when it ends without one, the dialect's ending is the caller's to
    send. Settles when done."""
    try:
        async for events in running.batches():
            chunks: list[bytes] = []
            broke: ApiError | None = None
            for event in events:
                kind = event.WhichOneof("event")
                if kind == "chunk":
                    chunks.append(event.chunk)
                elif kind == "usage":
                    exchange.usage = event.usage
                elif kind == "attempt":
                    exchange.attempts.append(event.attempt)
                elif kind == "error":
                    exchange.error_code = event.error.code or "stream_error"
                    broke = errors.from_domain(event.error)
                    break
            if chunks:
                yield chunks
            if broke is not None:
                yield broke
                return
    except grpc.aio.AioRpcError as exc:
        exchange.error_code = "providers_unreachable"
        yield rpc_error("providers", exc)
    finally:
        abandon(deps, exchange, running)
