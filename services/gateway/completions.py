"""Chat completions: validate, route, execute, render — the request path.

One request: parse and validate the body once; compute its features; ask the
router for ranked candidates; ask providers to execute them (it walks the
fallbacks); answer with the HTTP status only once the first chunk (or the whole
completion) of a successful attempt has arrived, so a request whose every
candidate failed gets a real error status. The usage event is queued in the
outbox when the request ends, whatever way it ends.

Providers sends the events that are ready together in one message; a streamed
answer keeps them together: the chunks of one message are one write to the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import grpc
import orjson
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from services.common.events import AttemptRecord, UsageEvent
from stepblend.v1 import providers_pb2, router_pb2

from . import errors
from .admission import admit
from .costs import actual_cost, as_json_number
from .deps import Deps
from .errors import ApiError
from .features import features
from .observe import RequestTelemetry
from .outbox import Outbox
from .rpc import rpc_error
from .schemas import MAX_DEPTH, ChatRequest, nested_deeper_than

log = logging.getLogger(__name__)

_ROUTE_TIMEOUT_S = 5.0


@dataclass
class Exchange:
    """The state of one request as it goes through the path."""

    request_id: str
    account_id: str
    client_request_id: str
    started: float = field(default_factory=time.monotonic)
    admitted_at: float = field(default_factory=time.time)
    stream: bool = False
    include_usage: bool = False
    strategy_used: str = ""
    catalog_version: str = ""
    serving: router_pb2.Candidate | None = None
    attempts: list[providers_pb2.Attempt] = field(default_factory=list)
    usage: providers_pb2.Usage | None = None
    ttft_ms: int = 0
    answered: bool = False
    error_code: str = ""
    rate_headers: dict[str, str] = field(default_factory=dict)
    finished: bool = False
    # For telemetry (observe.py): the cap, how many candidates the router ranked,
    # when the first chunk (or the completion) arrived.
    max_cost_usd: Decimal | None = None
    candidates: int = 0
    answered_at: float = 0.0
    telemetry: RequestTelemetry | None = None

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.request_id}"

    def stepblend(self) -> dict[str, Any]:
        serving = self.serving
        assert serving is not None
        info: dict[str, Any] = {
            "routed_model": serving.model,
            "provider": serving.provider,
            "strategy_used": self.strategy_used,
            "estimated_cost_usd": float(serving.estimated_cost_usd or 0),
            "actual_cost_usd": as_json_number(actual_cost(serving, self.usage)),
        }
        if len(self.attempts) > 1:
            info["attempts"] = [
                {
                    "provider": a.provider,
                    "model": a.model,
                    "outcome": a.outcome,
                    "status": a.status or None,
                    "detail": a.detail or None,
                }
                for a in self.attempts
            ]
        return info

    def headers(self) -> dict[str, str]:
        assert self.serving is not None
        return {
            "x-stepblend-provider": self.serving.provider,
            "x-stepblend-routed-model": self.serving.model,
            **self.rate_headers,
        }

    def finish(self, outbox: Outbox) -> None:
        """Queue the request's usage event, once, whichever way the request ended."""
        if not self.finished:
            self.finished = True
            event = self.usage_event()
            outbox.put(event)
            if self.telemetry is not None:
                self.telemetry.finished(self, event)

    def usage_event(self) -> UsageEvent:
        serving = self.serving
        usage = self.usage
        cost = actual_cost(serving, usage) if serving is not None else None
        return UsageEvent(
            request_id=self.request_id,
            account_id=self.account_id,
            outcome="completed" if self.answered and not self.error_code else "failed",
            admitted_at=self.admitted_at,
            strategy_used=self.strategy_used,
            routed_model=serving.model if serving else "",
            provider=serving.provider if serving else "",
            stream=self.stream,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cached_prompt_tokens=usage.cached_prompt_tokens if usage else 0,
            estimated_cost_usd=serving.estimated_cost_usd if serving and serving.estimated_cost_usd else "0",
            actual_cost_usd=None if cost is None else str(cost),
            catalog_version=self.catalog_version,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            ttft_ms=self.ttft_ms,
            error_code=self.error_code,
            provider_answered=self.answered,
            attempts=[
                AttemptRecord(
                    provider=a.provider,
                    model=a.model,
                    outcome=a.outcome,
                    status=a.status,
                    latency_ms=a.latency_ms,
                    ttft_ms=a.ttft_ms,
                    detail=a.detail,
                )
                for a in self.attempts
            ],
            client_request_id=self.client_request_id,
        )


def parse(raw: bytes) -> tuple[ChatRequest, dict[str, Any]]:
    """Validate the body once; return the model and the dict to pass upstream."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid(f"We could not parse the JSON body of your request: {exc}.") from exc
    if not isinstance(body, dict):
        raise errors.invalid("The request body must be a JSON object.")
    return validate(body)


def validate(body: dict[str, Any]) -> tuple[ChatRequest, dict[str, Any]]:
    """Validate a chat body (from JSON or from the gRPC API)."""
    if nested_deeper_than(body):
        raise errors.invalid(f"The request body is nested more than {MAX_DEPTH} levels deep.")
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise errors.invalid(f"Invalid value for '{param}': {first['msg']}.", param=param) from exc
    upstream = {k: v for k, v in body.items() if not k.startswith("stepblend_")}
    return request, upstream


async def route(
    deps: Deps, request: ChatRequest, upstream: dict[str, Any], account_id: str, explain: bool = False
) -> router_pb2.RouteDecision:
    """Ask the router for ranked candidates; a refusal becomes its HTTP error."""
    connected = await deps.connected.get(account_id)
    route_request = router_pb2.RouteRequest(
        model=request.model,
        strategy=request.stepblend_strategy or "",
        features=features(request, deps.encoding, upstream),
        max_cost_usd=str(request.stepblend_max_cost) if request.stepblend_max_cost is not None else "",
        connected_providers=connected,
        explain=explain,
    )
    try:
        response = await deps.router.Route(route_request, timeout=_ROUTE_TIMEOUT_S, metadata=deps.metadata)
    except grpc.aio.AioRpcError as exc:
        raise rpc_error("router", exc) from exc
    if response.WhichOneof("result") == "refusal":
        refusal = response.refusal
        status = errors.REFUSAL_STATUS.get(refusal.code, 400)
        code = None if refusal.code == "invalid_request" else refusal.code
        raise ApiError(status, refusal.message, "invalid_request_error", code, refusal.param or None)
    decision: router_pb2.RouteDecision = response.decision
    return decision


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


async def start(deps: Deps, exchange: Exchange, request: ChatRequest, upstream: dict[str, Any]) -> Running:
    """Route, admit and start executing: the part of the path every transport shares."""
    exchange.stream = request.stream
    exchange.include_usage = bool(request.stream_options and request.stream_options.include_usage)
    exchange.telemetry = deps.telemetry
    exchange.max_cost_usd = request.stepblend_max_cost
    decision = await route(deps, request, upstream, exchange.account_id)
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


async def complete(deps: Deps, exchange: Exchange, raw: bytes) -> Response:
    """POST /chat/completions."""
    request, upstream = parse(raw)
    running = await start(deps, exchange, request, upstream)
    first_task: asyncio.Future[providers_pb2.ExecuteEvent] | None = None
    try:
        if request.stream and deps.settings.sse_keepalive_s > 0:
            first_task = asyncio.ensure_future(running.first_answer(exchange))
            done, _ = await asyncio.wait({first_task}, timeout=deps.settings.sse_keepalive_s)
            if not done:
                # The model is thinking: commit to the stream and keep the line alive.
                return StreamingResponse(
                    _stream_after_keepalive(deps, exchange, first_task, running),
                    media_type="text/event-stream",
                    headers={**exchange.rate_headers, **_SSE_HEADERS},
                )
            first = first_task.result()
        else:
            first = await running.first_answer(exchange)
    except BaseException:
        if first_task is not None:
            first_task.cancel()
        abandon(deps, exchange, running)
        raise
    if first.WhichOneof("event") == "completion":
        await finish_completion(deps, exchange, running)
        # The completion is a JSON object made by orjson: splice our key in instead
        # of parsing and re-serialising the whole answer.
        body = first.completion.rstrip()
        body = body[:-1] + b',"stepblend":' + orjson.dumps(exchange.stepblend()) + b"}"
        return Response(body, 200, exchange.headers(), media_type="application/json")
    return StreamingResponse(
        _stream(exchange, relay(deps, exchange, running)),
        media_type="text/event-stream",
        headers={**exchange.headers(), **_SSE_HEADERS},
    )


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


_KEEPALIVE = b": keep-alive\n\n"
_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _sse(*data: bytes) -> bytes:
    """One SSE event per piece of data, as one write."""
    return b"data: " + b"\n\ndata: ".join(data) + b"\n\n"


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


async def _stream(exchange: Exchange, pieces: AsyncIterator[list[bytes] | ApiError]) -> AsyncIterator[bytes]:
    """SSE framing of `relay`, a write per batch, then one for the end: the error
    where the stream broke (an event too, as in OpenAI's streams), else StepBlend's
    final chunk."""
    broke: ApiError | None = None
    async for piece in pieces:
        if isinstance(piece, ApiError):
            broke = piece  # relay's last piece
        else:
            yield _sse(*piece)
    last = final_chunk(exchange) if broke is None else broke.body()
    yield _sse(orjson.dumps(last)) + _DONE


async def _stream_after_keepalive(
    deps: Deps, exchange: Exchange, first_task: asyncio.Future[providers_pb2.ExecuteEvent], running: Running
) -> AsyncIterator[bytes]:
    try:
        yield _KEEPALIVE
        while True:
            done, _ = await asyncio.wait({first_task}, timeout=deps.settings.sse_keepalive_s)
            if done:
                break
            yield _KEEPALIVE
        try:
            first_task.result()
        except ApiError as exc:
            # Too late for a status code: the error goes in the stream, as OpenAI's does.
            yield _sse(orjson.dumps(exc.body())) + _DONE
            return
        async for piece in _stream(exchange, relay(deps, exchange, running)):
            yield piece
    finally:
        first_task.cancel()
        abandon(deps, exchange, running)


def final_chunk(exchange: Exchange) -> dict[str, Any]:
    """StepBlend's last chunk of a stream: no choices, the usage when the client asked
    for it, and the `stepblend` routing report."""
    assert exchange.serving is not None
    chunk: dict[str, Any] = {
        "id": exchange.completion_id,
        "object": "chat.completion.chunk",
        "created": int(exchange.admitted_at),
        "model": exchange.serving.model,
        "choices": [],
    }
    if exchange.include_usage:
        usage = exchange.usage
        chunk["usage"] = (
            {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
            }
            if usage is not None
            else None
        )
    chunk["stepblend"] = exchange.stepblend()
    return chunk
