"""The gRPC Chat API through `stepblend up`, with a real grpc.aio client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from stepblend.v1 import chat_pb2, chat_pb2_grpc
from tests.e2e.conftest import Account, System, make_account


def hello(model: str = "gpt-4o-mini", text: str = "Hello over gRPC", **fields: object) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(model=model, messages=[chat_pb2.ChatMessage(role="user", content=text)], **fields)


@pytest.fixture
async def stub(system: System) -> AsyncIterator[chat_pb2_grpc.ChatStub]:
    async with grpc.aio.insecure_channel(system.chat_addr) as channel:
        yield chat_pb2_grpc.ChatStub(channel)


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


async def test_unary_completion(stub: chat_pb2_grpc.ChatStub, account: Account) -> None:
    call = stub.Complete(hello(), metadata=auth(account.token))
    completion = await call
    assert "Hello over gRPC" in completion.choices[0].message.content
    assert completion.model == "gpt-4o-mini"
    assert completion.usage.total_tokens > 0
    routing = completion.stepblend
    assert (routing.routed_model, routing.provider, routing.strategy_used) == ("gpt-4o-mini", "openai", "force_model")
    assert routing.estimated_cost_usd > 0 and routing.HasField("actual_cost_usd")
    request_id = dict(await call.initial_metadata())["x-request-id"]
    assert completion.id == f"chatcmpl-{request_id}" and routing.request_id == request_id


async def test_streaming_with_a_tool_call(stub: chat_pb2_grpc.ChatStub, account: Account) -> None:
    parameters = struct_pb2.Struct()
    parameters.update({"type": "object", "properties": {"location": {"type": "string"}}})
    request = hello(
        model="gpt-4o",
        text="Weather in Paris?",
        tools=[chat_pb2.Tool(name="get_weather", parameters=parameters)],
        include_usage=True,
    )
    chunks = [c async for c in stub.CompleteStream(request, metadata=auth(account.token))]
    arguments = "".join(t.arguments for c in chunks for ch in c.choices for t in ch.delta.tool_calls)
    names = {t.name for c in chunks for ch in c.choices for t in ch.delta.tool_calls if t.name}
    assert names == {"get_weather"}
    assert isinstance(json.loads(arguments), dict)
    assert any(ch.finish_reason == "tool_calls" for c in chunks for ch in c.choices)
    last = chunks[-1]
    assert not last.choices and last.usage.completion_tokens > 0
    assert last.stepblend.routed_model == "gpt-4o"


async def test_errors_are_status_codes_with_details(
    stub: chat_pb2_grpc.ChatStub, system: System, account: Account
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Complete(hello(), metadata=auth("not-a-token"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Complete(hello(model="no-such-model"), metadata=auth(account.token))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "model_not_found"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Complete(chat_pb2.ChatRequest(model="gpt-4o"), metadata=auth(account.token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).metadata["param"] == "messages"
    bare = system.cli("account", "create", f"grpc-nokeys-{time.time_ns()}@example.com")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Complete(hello(), metadata=auth(bare))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_plan_limit_is_resource_exhausted(stub: chat_pb2_grpc.ChatStub, system: System) -> None:
    account = make_account(system, plan="tiny")
    for _ in range(3):
        await stub.Complete(hello(), metadata=auth(account.token))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Complete(hello(), metadata=auth(account.token))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(caught.value)
    assert info.reason == "plan_limit_exceeded" and info.metadata["type"] == "rate_limit_error"


async def test_cancelling_a_stream_cancels_the_upstream_call(
    stub: chat_pb2_grpc.ChatStub, system: System, account: Account
) -> None:
    marker = f"cancel-me-{time.time_ns()}"
    async with httpx.AsyncClient() as http:
        await http.post(f"{system.mock_url}/_mock/behaviour", json={"model": "gpt-4.1-mini", "chunk_delay_ms": 300})
        try:
            call = stub.CompleteStream(hello(model="gpt-4.1-mini", text=marker), metadata=auth(account.token))
            async for _ in call:
                break  # one chunk, then the client goes away
            call.cancel()
            deadline = time.monotonic() + 5
            while True:
                seen = [
                    r
                    for r in (await http.get(f"{system.mock_url}/_mock/requests")).json()
                    if marker in json.dumps(r["body"])
                ]
                if seen and seen[0]["disconnected"]:
                    break
                assert time.monotonic() < deadline, "the provider call was not cancelled"
                await asyncio.sleep(0.05)
        finally:
            await http.delete(f"{system.mock_url}/_mock/behaviour")


async def test_embed_returns_typed_vectors_and_refuses_a_strategy(
    stub: chat_pb2_grpc.ChatStub, account: Account
) -> None:
    request = chat_pb2.EmbedRequest(model="text-embedding-3-large", input=["a cat", "a dog"], dimensions=64)
    answer = await stub.Embed(request, metadata=auth(account.token))
    assert [(e.index, len(e.vector)) for e in answer.data] == [(0, 64), (1, 64)]
    assert answer.model == "text-embedding-3-large" and answer.usage.prompt_tokens == 4
    assert (answer.stepblend.provider, answer.stepblend.routed_model) == ("openai", "text-embedding-3-large")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Embed(chat_pb2.EmbedRequest(model="balanced", input=["x"]), metadata=auth(account.token))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(refused.value).reason == "strategy_not_supported"
