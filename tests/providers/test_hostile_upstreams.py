"""A hostile or broken upstream cannot exhaust the providers service (SPEC §12).

Each case is a real HTTP server on loopback that misbehaves in one way, called by
the real executor; each must end as a provider error on that attempt (so the
request falls back or fails cleanly), never as a crash, an unbounded buffer or a
silently uncounted request.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from services.providers.executor import Executor
from services.providers.upstream import MAX_ANSWER_BYTES, make_client
from services.providers.vendors import load_vendors
from stepblend.v1 import providers_pb2
from tests.providers.conftest import TIMEOUTS, MemoryKeys, candidate
from tests.support.procs import free_port

OPENAI = candidate("openai", "gpt-4o-mini")


def _completion(usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": usage or {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


class Upstream:
    """A one-route server whose handler a test sets; it records request headers."""

    def __init__(self) -> None:
        self.handler: Any = None
        self.seen_headers: list[dict[str, str]] = []
        self.port = free_port()

    async def _route(self, request: web.Request) -> web.StreamResponse:
        self.seen_headers.append({k.lower(): v for k, v in request.headers.items()})
        await request.read()
        response: web.StreamResponse = await self.handler(request)
        return response

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/v1/chat/completions", server._route)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        await runner.cleanup()


async def _attempts(upstream: Upstream, stream: bool) -> list[providers_pb2.ExecuteEvent]:
    client = make_client(TIMEOUTS)
    executor = Executor(
        client, MemoryKeys({"openai": "sk-test"}), load_vendors({"openai": upstream.base_url}), TIMEOUTS
    )
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    request = providers_pb2.ExecuteRequest(
        request_id="r", account_id="a", candidates=[OPENAI], body=body, stream=stream
    )
    try:
        async with asyncio.timeout(30):
            return [event async for batch in executor.execute(request) for event in batch]
    finally:
        await client.close()


def _failed_attempt(events: list[providers_pb2.ExecuteEvent]) -> providers_pb2.Attempt:
    attempts = [e.attempt for e in events if e.WhichOneof("event") == "attempt"]
    assert [a.outcome for a in attempts] == ["provider_error"], attempts
    assert events[-1].WhichOneof("event") == "error"
    return attempts[0]


async def test_a_compression_bomb_is_never_unpacked(upstream: Upstream) -> None:
    bomb = gzip.compress(b" " * (64 * 1024 * 1024) + orjson.dumps(_completion()), compresslevel=9)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"content-type": "application/json", "content-encoding": "gzip"})

    upstream.handler = handler
    events = await _attempts(upstream, stream=False)
    assert upstream.seen_headers[0]["accept-encoding"] == "identity"
    assert "unreadable answer" in _failed_attempt(events).detail


async def test_an_answer_past_the_size_bound_is_cut_off(upstream: Upstream) -> None:
    # Valid JSON, padded past the bound: read whole, it would have been served.
    padded = b" " * (MAX_ANSWER_BYTES + 1) + orjson.dumps(_completion())

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=padded, headers={"content-type": "application/json"})

    upstream.handler = handler
    events = await _attempts(upstream, stream=False)
    assert "was cut off" in _failed_attempt(events).detail


async def test_a_stream_line_that_never_ends_is_cut_off(upstream: Upstream) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(40):  # 2.5 MiB without a newline, then silence
            await response.write(b"a" * 65536)
        await asyncio.sleep(2)
        return response

    upstream.handler = handler
    events = await _attempts(upstream, stream=True)
    assert "without ending" in _failed_attempt(events).detail


@pytest.mark.parametrize("count", [10**12, -3, 2.5, "12", True])
async def test_usage_out_of_range_is_a_provider_error(upstream: Upstream, count: object) -> None:
    answer = orjson.dumps(_completion({"prompt_tokens": count, "completion_tokens": 1, "total_tokens": 4}))

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=answer, headers={"content-type": "application/json"})

    upstream.handler = handler
    events = await _attempts(upstream, stream=False)
    assert "usage count out of range" in _failed_attempt(events).detail
