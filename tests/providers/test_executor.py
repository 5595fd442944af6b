"""Providers.Execute over real gRPC, against the real mock provider."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import SecretStr

from services.providers.executor import Executor
from services.providers.timeouts import Timeouts
from services.providers.upstream import environment_proxy, make_client
from services.providers.vendors import load_vendors
from stepblend.v1 import providers_pb2, providers_pb2_grpc
from tests.providers.conftest import (
    REJECTED_KEY,
    TIMEOUTS,
    Mock,
    Service,
    candidate,
    http,
    key_for,
)
from tests.support.procs import free_port
from tests.support.waiting import eventually

MESSAGES = [{"role": "user", "content": "Hello there"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
]
OPENAI = candidate("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", output_budget=128)
GROQ = candidate("groq", "llama-3.1-8b-instant")
DEEPSEEK = candidate("deepseek", "deepseek-chat")


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "lowest-cost", "messages": MESSAGES, **fields})


async def connect(service: Service, account: str, *providers: str) -> None:
    for provider in providers:
        await service.keys.Put(
            providers_pb2.PutKeyRequest(account_id=account, provider=provider, api_key=key_for(provider, account))
        )


def kinds(events: Sequence[providers_pb2.ExecuteEvent]) -> list[str]:
    return [str(event.WhichOneof("event")) for event in events]


def chunks(events: list[providers_pb2.ExecuteEvent]) -> list[dict[str, Any]]:
    return [orjson.loads(event.chunk) for event in events if event.WhichOneof("event") == "chunk"]


def attempts(events: list[providers_pb2.ExecuteEvent]) -> list[tuple[str, str, int]]:
    return [
        (e.attempt.provider, e.attempt.outcome, e.attempt.status) for e in events if e.WhichOneof("event") == "attempt"
    ]


async def test_non_stream(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai")
    events = await service.execute(
        request_id="req-ns", account_id=account, candidates=[OPENAI], body=body(), created=1_700_000_000
    )
    assert kinds(events) == ["attempt", "completion", "usage"]
    assert attempts(events) == [("openai", "ok", 200)]
    assert events[0].attempt.model == "gpt-4o-mini"
    completion = orjson.loads(events[1].completion)
    assert completion["id"] == "chatcmpl-req-ns"
    assert completion["model"] == "gpt-4o-mini"
    assert completion["created"] == 1_700_000_000
    assert completion["choices"][0]["message"]["content"] == "Hello! You said: Hello there"
    usage = events[2].usage
    assert usage.completion_tokens == completion["usage"]["completion_tokens"] == 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    [seen] = await mock.requests()
    assert seen["headers"]["authorization"] == f"Bearer {key_for('openai', account)}"
    assert seen["body"]["model"] == "gpt-4o-mini-2024-07-18"
    assert seen["body"]["max_tokens"] == 128
    assert "stream" not in seen["body"] and "stream_options" not in seen["body"]


async def test_stream(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai")
    events = await service.execute(
        request_id="req-s", account_id=account, candidates=[OPENAI], body=body(stream=True), stream=True
    )
    assert kinds(events) == ["attempt"] + ["chunk"] * (len(events) - 2) + ["usage"]
    assert attempts(events) == [("openai", "ok", 200)]
    assert events[0].attempt.ttft_ms <= events[0].attempt.latency_ms + 1
    got = chunks(events)
    assert got[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in got) == "Hello! You said: Hello there"
    assert got[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"] for c in got), "the upstream usage chunk is never forwarded"
    assert all(c["id"] == "chatcmpl-req-s" and c["model"] == "gpt-4o-mini" for c in got)
    assert all("usage" not in c for c in got)
    assert events[-1].usage.completion_tokens == 5
    [seen] = await mock.requests()
    assert seen["body"]["stream"] is True
    assert seen["body"]["stream_options"] == {"include_usage": True}


async def test_stream_keeps_usage_null_when_client_asked_for_usage(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai")
    events = await service.execute(
        request_id="r", account_id=account, candidates=[OPENAI], body=body(stream=True), stream=True, include_usage=True
    )
    assert all("usage" in c and c["usage"] is None for c in chunks(events))


async def test_streamed_tool_call_deltas_carry_their_index(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai")
    events = await service.execute(
        request_id="r", account_id=account, candidates=[OPENAI], body=body(stream=True, tools=TOOLS), stream=True
    )
    deltas = [
        c["choices"][0]["delta"]["tool_calls"][0] for c in chunks(events) if c["choices"][0]["delta"].get("tool_calls")
    ]
    assert deltas[0]["index"] == 0 and deltas[0]["type"] == "function" and deltas[0]["id"]
    assert deltas[0]["function"]["name"] == "get_weather"
    assert all(d["index"] == 0 for d in deltas)
    assert orjson.loads("".join(d["function"]["arguments"] for d in deltas)) == {"location": "Paris"}
    assert chunks(events)[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_fallback_from_a_503_to_the_next_candidate(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai", "groq")
    await mock.behave(model="gpt-4o-mini-2024-07-18", status=503)
    events = await service.execute(
        request_id="r", account_id=account, candidates=[OPENAI, GROQ], body=body(stream=True), stream=True
    )
    assert attempts(events) == [("openai", "provider_error", 503), ("groq", "ok", 200)]
    assert kinds(events)[:3] == ["attempt", "attempt", "chunk"]
    assert {c["model"] for c in chunks(events)} == {"llama-3.1-8b-instant"}
    first, second = await mock.requests()
    assert first["headers"]["authorization"] == f"Bearer {key_for('openai', account)}"
    assert second["headers"]["authorization"] == f"Bearer {key_for('groq', account)}"


async def test_candidate_without_a_key_is_skipped(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "groq")
    events = await service.execute(request_id="r", account_id=account, candidates=[DEEPSEEK, GROQ], body=body())
    assert attempts(events) == [("deepseek", "provider_not_connected", 0), ("groq", "ok", 200)]
    assert len(await mock.requests()) == 1


async def test_rejected_stored_key_is_provider_key_invalid(service: Service, mock: Mock, account: str) -> None:
    await service.keys.Put(providers_pb2.PutKeyRequest(account_id=account, provider="openai", api_key=REJECTED_KEY))
    await connect(service, account, "groq")
    events = await service.execute(request_id="r", account_id=account, candidates=[OPENAI, GROQ], body=body())
    assert attempts(events) == [("openai", "provider_key_invalid", 401), ("groq", "ok", 200)]

    events = await service.execute(request_id="r", account_id=account, candidates=[OPENAI], body=body())
    assert kinds(events) == ["attempt", "error"]
    error = events[-1].error
    assert (http(error).status, http(error).type, error.code) == (502, "api_error", "provider_key_invalid")
    assert REJECTED_KEY not in error.message and REJECTED_KEY[-4:] not in error.message


async def test_a_rejected_key_is_not_tried_again_for_its_other_models(
    service: Service, mock: Mock, account: str
) -> None:
    await service.keys.Put(providers_pb2.PutKeyRequest(account_id=account, provider="openai", api_key=REJECTED_KEY))
    await connect(service, account, "groq")
    other_openai = candidate("openai", "gpt-4o", "gpt-4o-2024-08-06")
    events = await service.execute(
        request_id="r", account_id=account, candidates=[OPENAI, other_openai, GROQ], body=body()
    )
    assert attempts(events) == [("openai", "provider_key_invalid", 401), ("groq", "ok", 200)]
    assert [r["headers"]["authorization"] for r in await mock.requests()] == [
        f"Bearer {REJECTED_KEY}",
        f"Bearer {key_for('groq', account)}",
    ]


async def test_an_unreachable_provider_is_named_and_not_tried_again(mock: Mock) -> None:
    port = free_port()
    vendors = load_vendors({"openai": f"http://127.0.0.1:{port}/v1"})
    client = make_client(TIMEOUTS)
    executor = Executor(client, Keys({"openai": "sk-a"}), vendors, TIMEOUTS)
    other_openai = candidate("openai", "gpt-4o", "gpt-4o-2024-08-06")
    request = providers_pb2.ExecuteRequest(
        request_id="r", account_id="a", candidates=[OPENAI, other_openai], body=body()
    )
    try:
        events = [event async for batch in executor.execute(request) for event in batch]
    finally:
        await client.close()
    assert attempts(events) == [("openai", "connect_error", 0)]
    assert f"could not connect to 127.0.0.1:{port}" in events[-1].error.message


async def test_a_request_calls_at_most_max_attempts_candidates(mock: Mock) -> None:
    await mock.behave(model="*", status=500)
    names = ["openai", "groq", "deepseek"]
    vendors = load_vendors({name: mock.base_url for name in names})
    client = make_client(TIMEOUTS)
    executor = Executor(client, Keys(dict.fromkeys(names, "sk-a")), vendors, TIMEOUTS, max_attempts=2)
    request = providers_pb2.ExecuteRequest(
        request_id="r", account_id="a", candidates=[OPENAI, GROQ, DEEPSEEK], body=body()
    )
    try:
        events = [event async for batch in executor.execute(request) for event in batch]
    finally:
        await client.close()
    assert [a[0] for a in attempts(events)] == ["openai", "groq"]
    assert len(await mock.requests()) == 2


async def test_every_candidate_failing_is_an_error(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai", "groq")
    await mock.behave(model="*", status=500)
    events = await service.execute(request_id="r", account_id=account, candidates=[OPENAI, GROQ], body=body())
    assert kinds(events) == ["attempt", "attempt", "error"]
    error = events[-1].error
    assert (http(error).status, http(error).type, error.code) == (503, "api_error", "all_providers_failed")
    assert "openai" in error.message and "groq" in error.message

    events = await service.execute(request_id="r", account_id=account, candidates=[OPENAI], body=body(), stream=True)
    assert (http(events[-1].error).status, events[-1].error.code) == (502, "provider_error")


async def test_rate_limited_everywhere_is_a_429(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai", "groq")
    await mock.behave(model="*", status=429)
    events = await service.execute(request_id="r", account_id=account, candidates=[OPENAI, GROQ], body=body())
    assert attempts(events) == [("openai", "rate_limited", 429), ("groq", "rate_limited", 429)]
    assert (http(events[-1].error).status, http(events[-1].error).type) == (429, "rate_limit_error")


async def test_no_key_anywhere_is_provider_not_connected(service: Service, mock: Mock, account: str) -> None:
    events = await service.execute(request_id="r", account_id=account, candidates=[OPENAI], body=body())
    assert (http(events[-1].error).status, events[-1].error.code) == (409, "provider_not_connected")
    assert await mock.requests() == []


async def test_no_first_token_in_time_falls_back_then_is_a_504(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai", "groq")
    await mock.behave(model="gpt-4o-mini-2024-07-18", ttft_ms=5000)
    started = time.monotonic()
    events = await service.execute(
        request_id="r", account_id=account, candidates=[OPENAI, GROQ], body=body(stream=True), stream=True
    )
    assert attempts(events) == [("openai", "timeout", 200), ("groq", "ok", 200)]
    assert events[0].attempt.detail == "no first token within 2s"
    assert time.monotonic() - started < 4.5

    events = await service.execute(
        request_id="r", account_id=account, candidates=[OPENAI], body=body(stream=True), stream=True
    )
    assert attempts(events) == [("openai", "timeout", 200)]
    assert (http(events[-1].error).status, events[-1].error.code) == (504, "timeout")


async def test_silence_mid_stream_ends_it_with_a_timeout_error(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai", "groq")
    await mock.behave(model="gpt-4o-mini-2024-07-18", chunk_delay_ms=4000)
    events = await service.execute(
        request_id="r", account_id=account, candidates=[OPENAI, GROQ], body=body(stream=True), stream=True
    )
    assert kinds(events) == ["attempt", "chunk", "error"]
    assert attempts(events) == [("openai", "ok", 200)]
    assert (http(events[-1].error).status, events[-1].error.code) == (504, "timeout")


async def openai_then_groq(timeouts: Timeouts, openai_url: str, groq_url: str) -> list[providers_pb2.ExecuteEvent]:
    """The events of a non-streamed request to OpenAI then Groq, on an executor of its own."""
    vendors = load_vendors({"openai": openai_url, "groq": groq_url})
    client = make_client(timeouts)
    executor = Executor(client, Keys({"openai": "sk-a", "groq": "sk-b"}), vendors, timeouts)
    request = providers_pb2.ExecuteRequest(request_id="r", account_id="a", candidates=[OPENAI, GROQ], body=body())
    try:
        return [event async for batch in executor.execute(request) for event in batch]
    finally:
        await client.close()


async def test_non_stream_is_bounded_by_the_total_timeout_and_falls_back(mock: Mock) -> None:
    # A non-streamed answer arrives whole, so only the total deadline bounds it.
    timeouts = Timeouts(connect=2.0, read=0.2, total=3.0, first_token=0.2)
    await mock.behave(model="gpt-4o-mini-2024-07-18", ttft_ms=8000)
    await mock.behave(model="llama-3.1-8b-instant", ttft_ms=500)
    events = await openai_then_groq(timeouts, mock.base_url, mock.base_url)
    assert attempts(events) == [("openai", "timeout", 0), ("groq", "ok", 200)]
    assert events[0].attempt.detail == "no answer within the 3s total timeout"


async def test_provider_refusing_the_request_is_a_400_without_fallback(
    service: Service, mock: Mock, account: str
) -> None:
    await connect(service, account, "openai", "groq")
    await mock.behave(model="gpt-4o-mini-2024-07-18", status=400, message="Invalid 'messages[0].content': too long.")
    events = await service.execute(request_id="r", account_id=account, candidates=[OPENAI, GROQ], body=body())
    assert attempts(events) == [("openai", "bad_request", 400)]
    error = events[-1].error
    assert (http(error).status, http(error).type) == (400, "invalid_request_error")
    assert error.message == "Invalid 'messages[0].content': too long."
    assert len(await mock.requests()) == 1


async def test_unsupported_parameter_is_refused_before_any_call(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai")
    o1 = candidate("openai", "o1", unsupported_params=["temperature"])
    events = await service.execute(request_id="r", account_id=account, candidates=[o1], body=body(temperature=0.3))
    assert attempts(events) == [("openai", "bad_request", 0)]
    error = events[-1].error
    assert (http(error).status, http(error).type, error.param) == (400, "invalid_request_error", "temperature")
    assert await mock.requests() == []


async def test_a_candidate_whose_translation_refuses_the_request_passes_it_to_the_next(
    service: Service, mock: Mock, account: str
) -> None:
    # A parameter one model does not take says nothing against the request: the next
    # candidate serves it, and only the one that takes it is called.
    await connect(service, account, "openai", "groq")
    o1 = candidate("openai", "o1", unsupported_params=["temperature"])
    events = await service.execute(
        request_id="r", account_id=account, candidates=[o1, GROQ], body=body(temperature=0.3)
    )
    assert attempts(events) == [("openai", "bad_request", 0), ("groq", "ok", 200)]
    assert "completion" in kinds(events) and "error" not in kinds(events)
    assert [seen["body"]["model"] for seen in await mock.requests()] == ["llama-3.1-8b-instant"]


async def test_when_every_candidate_refuses_the_request_the_first_refusal_is_the_answer(
    service: Service, mock: Mock, account: str
) -> None:
    await connect(service, account, "openai")
    o1 = candidate("openai", "o1", unsupported_params=["temperature"])
    o3 = candidate("openai", "o3-mini", unsupported_params=["temperature", "seed"])
    events = await service.execute(
        request_id="r", account_id=account, candidates=[o1, o3], body=body(temperature=0.3, seed=1)
    )
    assert attempts(events) == [("openai", "bad_request", 0), ("openai", "bad_request", 0)]
    error = events[-1].error
    assert (http(error).status, error.param) == (400, "temperature")
    assert "o1" in error.message
    assert await mock.requests() == []


async def test_renamed_parameter_reaches_the_provider(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai")
    o3 = candidate("openai", "o3-mini", param_renames={"max_tokens": "max_completion_tokens"})
    events = await service.execute(request_id="r", account_id=account, candidates=[o3], body=body(max_tokens=2))
    assert orjson.loads(events[1].completion)["choices"][0]["finish_reason"] == "length"
    [seen] = await mock.requests()
    assert seen["body"]["max_completion_tokens"] == 2 and "max_tokens" not in seen["body"]


async def test_stream_breaking_after_it_started_ends_with_an_error(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai", "groq")
    await mock.behave(model="gpt-4o-mini-2024-07-18", break_after_chunks=3)
    events = await service.execute(
        request_id="r", account_id=account, candidates=[OPENAI, GROQ], body=body(stream=True), stream=True
    )
    assert kinds(events) == ["attempt", "chunk", "chunk", "chunk", "error"]
    assert attempts(events) == [("openai", "ok", 200)]
    assert (http(events[-1].error).status, events[-1].error.code) == (502, "stream_interrupted")
    assert len(await mock.requests()) == 1


async def test_stream_breaking_before_its_first_chunk_falls_back(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai", "groq")
    await mock.behave(model="gpt-4o-mini-2024-07-18", break_after_chunks=0)
    events = await service.execute(
        request_id="r", account_id=account, candidates=[OPENAI, GROQ], body=body(stream=True), stream=True
    )
    assert attempts(events) == [("openai", "provider_error", 200), ("groq", "ok", 200)]
    assert kinds(events)[-1] == "usage"


async def test_cancelled_call_closes_the_upstream_stream(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "openai")
    await mock.behave(model="*", chunk_delay_ms=200)
    call = service.call(request_id="r", account_id=account, candidates=[OPENAI], body=body(stream=True), stream=True)
    assert kinds((await call.read()).events) == ["attempt", "chunk"]
    call.cancel()
    seen = await eventually(mock.hung_up, what="the upstream request closed")
    assert seen[0]["disconnected"] is True


async def test_cancelled_call_closes_an_anthropic_stream_too(service: Service, mock: Mock, account: str) -> None:
    await connect(service, account, "anthropic")
    await mock.behave(model="*", chunk_delay_ms=200)
    claude = candidate("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022")
    call = service.call(request_id="r", account_id=account, candidates=[claude], body=body(stream=True), stream=True)
    assert kinds((await call.read()).events) == ["attempt", "chunk"]
    call.cancel()
    seen = await eventually(mock.hung_up, what="the upstream request closed")
    assert seen[0]["path"] == "/v1/messages" and seen[0]["disconnected"] is True


async def test_invalid_body_is_a_400(service: Service, account: str) -> None:
    events = await service.execute(request_id="r", account_id=account, candidates=[OPENAI], body=b"[]")
    assert kinds(events) == ["error"]
    assert (http(events[0].error).status, http(events[0].error).type) == (400, "invalid_request_error")


async def test_calls_without_the_internal_token_are_refused(service: Service) -> None:
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = providers_pb2_grpc.KeysStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Connected(providers_pb2.ConnectedRequest(account_id="a"))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


class Keys:
    """A key source holding keys in memory (the vault's interface)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = keys

    async def plaintext(self, account_id: str, provider: str) -> SecretStr | None:
        key = self._keys.get(provider)
        return None if key is None else SecretStr(key)


async def test_unreachable_provider_is_a_connect_error_and_falls_back(mock: Mock) -> None:
    vendors = load_vendors({"openai": f"http://127.0.0.1:{free_port()}/v1", "groq": mock.base_url})
    client = make_client(TIMEOUTS)
    executor = Executor(client, Keys({"openai": "sk-a", "groq": "sk-b"}), vendors, TIMEOUTS)
    request = providers_pb2.ExecuteRequest(request_id="r", account_id="a", candidates=[OPENAI, GROQ], body=body())
    try:
        events = [event async for batch in executor.execute(request) for event in batch]
        assert attempts(events) == [("openai", "connect_error", 0), ("groq", "ok", 200)]
        request.candidates.pop()
        events = [event async for batch in executor.execute(request) for event in batch]
        assert (http(events[-1].error).status, events[-1].error.code) == (502, "provider_error")
    finally:
        await client.close()


@contextlib.contextmanager
def never_accepting() -> Iterator[int]:
    """A port whose listener never accepts and whose queue is full, so that a
    connection to it is never made (a provider's host that drops the SYN)."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):
            filler = stack.enter_context(socket.socket())
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        yield port


async def test_no_connection_in_time_is_a_timeout_and_falls_back(mock: Mock) -> None:
    timeouts = Timeouts(connect=1.0, read=2.0, total=20.0, first_token=2.0)
    with never_accepting() as port:
        events = await openai_then_groq(timeouts, f"http://127.0.0.1:{port}/v1", mock.base_url)
    assert attempts(events) == [("openai", "timeout", 0), ("groq", "ok", 200)]
    assert events[0].attempt.detail == "no connection within 1s"


def test_environment_proxies_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert environment_proxy("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("ALL_PROXY", "http://all.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.corp.example")
    assert environment_proxy("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert environment_proxy("http://llm.example/v1") == "http://all.internal:3128"
    assert environment_proxy("https://llm.corp.example/v1") is None
    assert environment_proxy("http://localhost:8000/v1") is None


async def test_health_is_served_for_both_services(service: Service) -> None:
    stub = health_pb2_grpc.HealthStub(service.channel)
    for name in ("stepblend.v1.Providers", "stepblend.v1.Keys"):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
