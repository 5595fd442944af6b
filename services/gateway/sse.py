"""OpenAI's streaming framing: chunks as `data:` events, keep-alive comments while
a model thinks, StepBlend's final chunk (usage and the `stepblend` report), `[DONE]`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from stepblend.v1 import providers_pb2

from .deps import Deps
from .errors import ApiError
from .exchange import Exchange
from .execution import Running, abandon, relay

__all__ = ["SSE_HEADERS", "final_chunk", "stream", "stream_after_keepalive"]


_KEEPALIVE = b": keep-alive\n\n"
_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _sse(*data: bytes) -> bytes:
    """One SSE event per piece of data, as one write."""
    return b"data: " + b"\n\ndata: ".join(data) + b"\n\n"


async def stream(exchange: Exchange, pieces: AsyncIterator[list[bytes] | ApiError]) -> AsyncIterator[bytes]:
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


async def stream_after_keepalive(
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
        async for piece in stream(exchange, relay(deps, exchange, running)):
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
