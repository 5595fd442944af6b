"""Providers.Execute's messages: the events that are ready together travel together,
because a gRPC message costs far more than the events in it; and Providers.Complete,
a non-streaming request's events as one unary answer."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.common import grpcio
from services.common.config import Settings
from services.providers.executor import Executor
from services.providers.servicer import ProvidersServicer
from services.providers.timeouts import Timeouts
from services.providers.upstream import make_client
from services.providers.vendors import load_vendors
from stepblend.mockprovider import RunningMockProvider
from stepblend.v1 import providers_pb2, providers_pb2_grpc
from tests.providers.conftest import (
    INTERNAL_TOKEN,
    TIMEOUTS,
    MemoryKeys,
    Mock,
    Service,
    candidate,
    http,
    key_for,
    running_service,
)
from tests.support.procs import NatsServer
from tests.support.waiting import eventually

OPENAI = candidate("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
GROQ = candidate("groq", "llama-3.1-8b-instant")


def execute(account: str, *candidates: Any, stream: bool = False) -> dict[str, Any]:
    """The fields of an ExecuteRequest."""
    body = {"model": "lowest-cost", "messages": [{"role": "user", "content": "Hello there, how are you?"}]}
    return {
        "request_id": "batches",
        "account_id": account,
        "candidates": list(candidates) or [OPENAI],
        "body": orjson.dumps({**body, "stream": True} if stream else body),
        "stream": stream,
        "created": 1_700_000_000,
    }


def events(messages: Sequence[providers_pb2.ExecuteEvents]) -> list[providers_pb2.ExecuteEvent]:
    return [event for message in messages for event in message.events]


def kinds(events: Sequence[providers_pb2.ExecuteEvent]) -> list[str]:
    return [str(event.WhichOneof("event")) for event in events]


# Hop-by-hop or recomputed: the proxy's own client sets them.
_NOT_FORWARDED = {"host", "content-length", "accept-encoding", "transfer-encoding", "connection"}


@contextlib.asynccontextmanager
async def buffering(upstream_url: str) -> AsyncIterator[str]:
    """A proxy before the mock provider that hands each answer back whole, in one
    write, as a provider that buffers its stream (or a proxy before it) does; yields
    its URL."""
    async with aiohttp.ClientSession() as upstream:

        async def handle(request: web.Request) -> web.Response:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
            url = upstream_url + request.path_qs
            async with upstream.post(url, data=await request.read(), headers=headers) as answer:
                whole = await answer.read()
                content_type = answer.headers["content-type"]
            return web.Response(status=answer.status, headers={"content-type": content_type}, body=whole)

        app = web.Application()
        app.router.add_post("/{path:.*}", handle)
        async with TestServer(app, host="127.0.0.1") as server:
            yield str(server.make_url(""))


@contextlib.asynccontextmanager
async def serving(
    openai_url: str, account: str, timeouts: Timeouts = TIMEOUTS
) -> AsyncIterator[providers_pb2_grpc.ProvidersStub]:
    """The Providers service over real gRPC with `timeouts`, its OpenAI at `openai_url`."""
    keys = MemoryKeys({"openai": key_for("openai", account)})
    async with make_client(timeouts) as client:
        executor = Executor(client, keys, load_vendors({"openai": openai_url}), timeouts)
        server = grpc.aio.server()
        providers_pb2_grpc.add_ProvidersServicer_to_server(ProvidersServicer(executor, timeouts.total), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield providers_pb2_grpc.ProvidersStub(channel)
        finally:
            await server.stop(None)


@pytest.fixture
async def buffered(mock: Mock, account: str) -> AsyncIterator[providers_pb2_grpc.ProvidersStub]:
    """The Providers service over real gRPC, whose upstream answers arrive whole."""
    async with buffering(mock.running.url) as proxy, serving(f"{proxy}/v1", account) as stub:
        yield stub


async def connect(service: Service, account: str) -> None:
    key = key_for("openai", account)
    await service.keys.Put(providers_pb2.PutKeyRequest(account_id=account, provider="openai", api_key=key))


async def test_a_non_stream_answers_in_one_message(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account)
    [message] = await service.messages(**execute(account))
    assert kinds(message.events) == ["attempt", "completion", "usage"]


async def test_a_failed_attempt_travels_with_the_error_that_follows_it(
    service: Service, mock: Mock, account: str
) -> None:
    [message] = await service.messages(**execute(account))
    assert kinds(message.events) == ["attempt", "error"]

    # An attempt followed by another candidate goes out as it ends, before the next one's.
    messages = await service.messages(**execute(account, OPENAI, GROQ))
    assert [kinds(m.events) for m in messages] == [["attempt"], ["attempt", "error"]]


async def test_chunks_read_together_travel_together(
    service: Service, buffered: providers_pb2_grpc.ProvidersStub, mock: Mock, account: str
) -> None:
    read_whole = [m async for m in buffered.Execute(providers_pb2.ExecuteRequest(**execute(account, stream=True)))]
    chunks = [e.chunk for e in events(read_whole) if e.HasField("chunk")]
    assert len(chunks) > 1
    assert len(read_whole) < len(chunks)
    assert kinds(read_whole[0].events)[:2] == ["attempt", "chunk"]

    # Read piece by piece, the same stream brings the same events.
    await connect(service, account)
    read_in_pieces = events(await service.messages(**execute(account, stream=True)))
    assert kinds(read_in_pieces) == kinds(events(read_whole))
    assert [e.chunk for e in read_in_pieces if e.HasField("chunk")] == chunks
    assert [e.usage for e in read_in_pieces if e.HasField("usage")] == [
        e.usage for e in events(read_whole) if e.HasField("usage")
    ]


async def test_complete_answers_with_executes_events_in_one_reply(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account)
    request = providers_pb2.ExecuteRequest(**execute(account))
    metadata = ((grpcio.TOKEN_HEADER, INTERNAL_TOKEN),)
    answer = await service.providers.Complete(request, metadata=metadata)
    assert kinds(answer.events) == ["attempt", "completion", "usage"]
    streamed = await service.execute(**execute(account))
    completions = [orjson.loads(e.completion) for e in (answer.events[1], streamed[1])]
    assert completions[0]["choices"] == completions[1]["choices"]
    assert answer.events[2].usage == streamed[2].usage

    # A failure is an answer too, with its attempts: not a gRPC error.
    failed = await service.providers.Complete(
        providers_pb2.ExecuteRequest(**execute("not-connected-" + account, OPENAI, GROQ)), metadata=metadata
    )
    assert kinds(failed.events) == ["attempt", "attempt", "error"]


async def test_a_cancelled_complete_closes_the_upstream_request(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account)
    await mock.behave(model="*", ttft_ms=5_000)
    request = providers_pb2.ExecuteRequest(**execute(account))
    call = service.providers.Complete(request, metadata=((grpcio.TOKEN_HEADER, INTERNAL_TOKEN),))
    await eventually(mock.requests, what="the upstream request sent")
    call.cancel()
    seen = await eventually(mock.hung_up, what="the upstream request closed")
    assert seen[0]["disconnected"] is True


@pytest.mark.parametrize("stream", [False, True])
async def test_a_request_without_a_caller_deadline_still_ends_at_the_total_timeout(
    mock: Mock, account: str, stream: bool
) -> None:
    # Every candidate is slow; each attempt alone fits its own bounds (0.8 s), but
    # four of them in a row would take 3.2 s: the request as a whole gets 1 s.
    timeouts = Timeouts(connect=2.0, read=0.8, total=1.0, first_token=0.8)
    await mock.behave(model="*", ttft_ms=5000)
    request = providers_pb2.ExecuteRequest(**execute(account, OPENAI, OPENAI, OPENAI, OPENAI, stream=stream))
    async with serving(mock.base_url, account, timeouts) as stub:
        started = time.monotonic()
        if stream:
            got = events([m async for m in stub.Execute(request)])
        else:
            got = list((await stub.Complete(request)).events)
        elapsed = time.monotonic() - started
    error = got[-1].error
    assert (http(error).status, error.code) == (504, "timeout")
    assert error.message == "The request did not finish within its 1s deadline."
    assert elapsed < 5


async def test_a_shorter_caller_deadline_is_the_requests_deadline(mock: Mock, account: str) -> None:
    # The service's own bound is 20 s; the caller gives the request 2 s, and gets a
    # readable 504 half a second before its deadline rather than a bare DEADLINE_EXCEEDED.
    await mock.behave(model="*", ttft_ms=10_000)
    request = providers_pb2.ExecuteRequest(**execute(account, OPENAI, OPENAI))
    async with serving(mock.base_url, account) as stub:
        answer = await stub.Complete(request, timeout=2.0)
    error = answer.events[-1].error
    assert (http(error).status, error.code) == (504, "timeout")
    assert error.message == "The request did not finish within its 1.5s deadline."


async def test_stepblend_max_attempts_bounds_the_candidates_a_request_tries(
    nats_server: NatsServer, mock_provider: RunningMockProvider, mock: Mock, account: str, tmp_path: Path
) -> None:
    assert Settings.from_env({"STEPBLEND_MAX_ATTEMPTS": "2"}).max_attempts == 2
    await mock.behave(model="*", status=500)
    async with running_service(nats_server, mock_provider, tmp_path, max_attempts=2) as two:
        await connect(two, account)
        events = await two.execute(**execute(account, OPENAI, OPENAI, OPENAI, OPENAI))
    assert kinds(events) == ["attempt", "attempt", "error"]
    assert len(await mock.requests()) == 2
