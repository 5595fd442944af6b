"""POST /chat/completions: parse, route, admit, execute, render.

One request: parse and validate the body once (parsing.py); ask the router for
ranked candidates (routing.py); admit it and ask providers to execute them — it
walks the fallbacks (execution.py); answer with the HTTP status only once the first
chunk (or the whole completion) of a successful attempt has arrived, so a request
whose every candidate failed gets a real error status (here), streaming through
sse.py. The usage event is queued in the outbox when the request ends, whatever way
it ends (exchange.py).
"""

from __future__ import annotations

import asyncio

import orjson
from starlette.responses import Response, StreamingResponse

from stepblend.v1 import providers_pb2

from .deps import Deps
from .exchange import Exchange
from .execution import abandon, finish_completion, relay, start
from .parsing import parse_off_loop
from .schemas import OFFLOAD_BYTES
from .sse import SSE_HEADERS, stream, stream_after_keepalive

__all__ = ["complete"]


async def complete(deps: Deps, exchange: Exchange, raw: bytes) -> Response:
    """POST /chat/completions."""
    request, upstream = await parse_off_loop(raw)
    running = await start(deps, exchange, request, upstream, offload=len(raw) >= OFFLOAD_BYTES)
    first_task: asyncio.Future[providers_pb2.ExecuteEvent] | None = None
    try:
        if request.stream and deps.settings.sse_keepalive_s > 0:
            first_task = asyncio.ensure_future(running.first_answer(exchange))
            done, _ = await asyncio.wait({first_task}, timeout=deps.settings.sse_keepalive_s)
            if not done:
                # The model is thinking: commit to the stream and keep the line alive.
                return StreamingResponse(
                    stream_after_keepalive(deps, exchange, first_task, running),
                    media_type="text/event-stream",
                    headers={**exchange.rate_headers, **SSE_HEADERS},
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
        stream(exchange, relay(deps, exchange, running)),
        media_type="text/event-stream",
        headers={**exchange.headers(), **SSE_HEADERS},
    )
