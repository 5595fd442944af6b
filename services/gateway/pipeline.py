"""The request path every front door shares: parse with the dialect's codec →
route → admit → execute → render with the codec.

The HTTP status is sent only once the first chunk (or the whole completion) of a
successful attempt has arrived, so a request whose every candidate failed gets a
real error status. A stream whose model thinks longer than the keep-alive interval
is committed to early: keep-alives go out while it waits, and a failure then is
an error event in the stream. Providers sends the events that are ready together
in one message; a streamed answer keeps them together: the chunks of one message
are one write to the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.responses import Response, StreamingResponse

from stepblend.v1 import providers_pb2

from . import errors, offload
from .admission import admit
from .codecs.base import Codec, Parsed, StreamRenderer
from .deps import Deps
from .errors import ApiError
from .execution import Running, abandon, execute, finish_completion, first_answer, relay
from .routing import count, route
from .state import Exchange

__all__ = ["run", "start"]

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def start(deps: Deps, exchange: Exchange, parsed: Parsed, *, large: bool = False) -> Running:
    """Route, admit and start executing: the part of the path every transport shares.
    `large`: a large body, whose tokens are counted off the event loop (offload.py)."""
    request = parsed.request
    exchange.stream = request.stream
    exchange.requested_model = request.model
    exchange.include_usage = bool(request.stream_options and request.stream_options.include_usage)
    exchange.max_cost_usd = request.stepblend_max_cost
    if parsed.count is not None:
        counted = await offload.run(large, parsed.count, deps.encoding)
    else:
        counted = await count(deps, request, parsed.upstream, large=large)
    decision = await route(
        deps,
        request,
        counted,
        exchange.account_id,
        parsed.native_providers,
        parsed.native_only,
        grant=exchange.grant,
        kind=parsed.kind,
    )
    exchange.strategy_used = decision.strategy_used
    exchange.catalog_version = decision.catalog_version
    if deps.outbox.is_full():
        raise errors.unavailable("StepBlend cannot record usage right now (event bus unreachable); try again shortly.")
    # Admission drops the candidates whose worst case no budget has room for.
    exchange.rate_headers = await admit(deps, exchange, decision)
    exchange.candidates = len(decision.candidates)
    # From here the request holds a reservation: every way out settles it (usage.finish).
    return execute(deps, exchange, decision, parsed)


async def run(codec: Codec, deps: Deps, exchange: Exchange, raw: bytes) -> Response:
    """One request of `codec`'s dialect, from its body to the response; an error in
    the dialect's shape."""
    exchange.dialect = codec.dialect
    large = offload.is_large(raw)
    try:
        parsed = await offload.run(large, codec.parse, raw)
        return await _answer(codec, deps, exchange, parsed, large)
    except ApiError as exc:
        return codec.error(exc)


async def _answer(codec: Codec, deps: Deps, exchange: Exchange, parsed: Parsed, large: bool) -> Response:
    running = await start(deps, exchange, parsed, large=large)
    first_task: asyncio.Future[providers_pb2.ExecuteEvent] | None = None
    try:
        if parsed.request.stream and deps.settings.sse_keepalive_s > 0:
            first_task = asyncio.ensure_future(first_answer(running, exchange))
            done, _ = await asyncio.wait({first_task}, timeout=deps.settings.sse_keepalive_s)
            if not done:
                # The model is thinking: commit to the stream and keep the line alive.
                return StreamingResponse(
                    _after_keepalive(codec, deps, exchange, parsed, first_task, running),
                    media_type="text/event-stream",
                    headers={**exchange.rate_headers, **SSE_HEADERS},
                )
            first = first_task.result()
        else:
            first = await first_answer(running, exchange)
    except BaseException:
        if first_task is not None:
            first_task.cancel()
        abandon(deps, exchange, running)
        raise
    if first.WhichOneof("event") == "completion":
        await finish_completion(deps, exchange, running)
        body = codec.completion(first.completion, exchange, parsed)
        return Response(body, 200, exchange.headers(), media_type="application/json")
    return StreamingResponse(
        _stream(codec.stream(exchange, parsed), relay(deps, exchange, running)),
        media_type="text/event-stream",
        headers={**exchange.headers(), **SSE_HEADERS},
    )


async def _stream(renderer: StreamRenderer, pieces: AsyncIterator[list[bytes] | ApiError]) -> AsyncIterator[bytes]:
    """The renderer over `relay`: a write per batch (the dialect's opening in the
    first), then one for the end: the error where the stream broke, else the
    dialect's ending."""
    head = renderer.start()
    broke: ApiError | None = None
    async for piece in pieces:
        if isinstance(piece, ApiError):
            broke = piece  # relay's last piece
        else:
            yield head + renderer.chunks(piece)
            head = b""
    yield head + (renderer.end() if broke is None else renderer.broke(broke))


async def _after_keepalive(
    codec: Codec,
    deps: Deps,
    exchange: Exchange,
    parsed: Parsed,
    first_task: asyncio.Future[providers_pb2.ExecuteEvent],
    running: Running,
) -> AsyncIterator[bytes]:
    waiting = codec.stream(exchange, parsed)  # for keep-alives only; see codecs.base
    try:
        yield waiting.keepalive()
        while True:
            done, _ = await asyncio.wait({first_task}, timeout=deps.settings.sse_keepalive_s)
            if done:
                break
            yield waiting.keepalive()
        try:
            first_task.result()
        except ApiError as exc:
            # Too late for a status code: the error goes in the stream, as OpenAI's does.
            yield waiting.broke(exc)
            return
        async for piece in _stream(codec.stream(exchange, parsed), relay(deps, exchange, running)):
            yield piece
    finally:
        first_task.cancel()
        abandon(deps, exchange, running)
