"""Admitting a routed request and running it on providers: the part of the path
every transport (HTTP and the gRPC chat API) shares.

`start` admits and starts providers' Execute (streamed) or Complete call;
`Running.first_answer` consumes failed attempts until a chunk or a completion
arrives (or raises the error if none does); `finish_completion` and `relay` read
the rest; `abandon` cancels upstream and settles. From `start` on the request
holds a reservation, and every way out settles it (Exchange.finish).

Providers sends the events that are ready together in one message; a streamed
answer keeps them together: the chunks of one message are one write to the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import orjson

from stepblend.v1 import providers_pb2, router_pb2

from . import errors
from .admission import admit
from .deps import Deps
from .errors import ApiError
from .exchange import Exchange
from .routing import route
from .rpc import rpc_error
from .schemas import ChatRequest

__all__ = ["Running", "abandon", "finish_completion", "relay", "start"]

log = logging.getLogger(__name__)


def _error_from(event: providers_pb2.Error, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(
        event.status or 502, event.message, event.type or "api_error", event.code or None, event.param or None, headers
    )


@dataclass
class Running:
    """An admitted request whose Execute (streamed) or Complete call is under way."""

    call: Any
    messages: AsyncIterator[providers_pb2.ExecuteEvents]
    candidates: dict[tuple[str, str], router_pb2.Candidate]
    # What `first_answer` left of the message the answer came in: the answer on.
    unread: Sequence[providers_pb2.ExecuteEvent] = ()

    def first_answer(self, exchange: Exchange) -> Awaitable[providers_pb2.ExecuteEvent]:
        return _first_answer(self, exchange)

    async def batches(self) -> AsyncIterator[Sequence[providers_pb2.ExecuteEvent]]:
        """The events from the first answer on, a message's worth at a time."""
        yield self.unread
        async for message in self.messages:
            yield message.events


async def start(
    deps: Deps, exchange: Exchange, request: ChatRequest, upstream: dict[str, Any], *, offload: bool = False
) -> Running:
    """Route, admit and start executing: the part of the path every transport shares.
    `offload`: a large request, whose tokens are counted off the event loop."""
    exchange.stream = request.stream
    exchange.requested_model = request.model
    exchange.include_usage = bool(request.stream_options and request.stream_options.include_usage)
    exchange.telemetry = deps.telemetry
    exchange.max_cost_usd = request.stepblend_max_cost
    decision = await route(deps, request, upstream, exchange.account_id, offload=offload)
    exchange.strategy_used = decision.strategy_used
    exchange.catalog_version = decision.catalog_version
    exchange.candidates = len(decision.candidates)
    if deps.outbox.is_full():
        raise errors.unavailable("StepBlend cannot record usage right now (event bus unreachable); try again shortly.")
    exchange.rate_headers = await admit(deps, exchange.account_id, exchange.request_id)
    # From here the request holds a reservation: every way out settles it (Exchange.finish).
    execute = providers_pb2.ExecuteRequest(
        request_id=exchange.request_id,
        account_id=exchange.account_id,
        candidates=decision.candidates,
        body=orjson.dumps(upstream),
        stream=request.stream,
        include_usage=exchange.include_usage,
        created=int(exchange.admitted_at),
    )
    candidates = {(c.provider, c.model): c for c in decision.candidates}
    if request.stream:
        stream = deps.providers.Execute(execute, metadata=deps.metadata)
        return Running(stream, stream.__aiter__(), candidates)
    # A whole answer is one message: a unary call, which costs half a stream's.
    unary = deps.providers.Complete(execute, metadata=deps.metadata)
    return Running(unary, _one(unary), candidates)


async def _one(call: Awaitable[providers_pb2.ExecuteEvents]) -> AsyncIterator[providers_pb2.ExecuteEvents]:
    yield await call


def abandon(deps: Deps, exchange: Exchange, running: Running) -> None:
    """The request ended before an answer was relayed: cancel upstream, settle."""
    running.call.cancel()
    exchange.finish(deps.outbox)


async def _first_answer(running: Running, exchange: Exchange) -> providers_pb2.ExecuteEvent:
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
                    exchange.error_code = event.error.code or event.error.type
                    raise _error_from(event.error, exchange.rate_headers)
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
    if attempt.outcome == "ok":
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
    exchange.finish(deps.outbox)
    if exchange.serving is None:
        raise errors.unavailable("The providers service answered without naming the attempt.", "no_answer")


async def relay(deps: Deps, exchange: Exchange, running: Running) -> AsyncIterator[list[bytes] | ApiError]:
    """A streamed answer from its first chunk: the chunks (JSON bytes) of each message
    from providers together, and an ApiError last where the stream broke after it
    started; when it ends without one, StepBlend's `final_chunk` is the caller's to
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
                    exchange.error_code = event.error.code or event.error.type or "stream_error"
                    broke = _error_from(event.error)
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
