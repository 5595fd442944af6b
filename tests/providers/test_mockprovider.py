"""The mock provider is read by the real OpenAI SDK exactly as OpenAI is."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import httpx
import openai
import orjson
import pytest

from stepblend.mockprovider import serve
from tests.providers.conftest import REJECTED_KEY, Mock
from tests.support.procs import free_port, wait_port

MESSAGES: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the weather?"}]
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        },
    }
]


def client(mock: Mock, key: str = "sk-test-0000000000000000") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=mock.base_url, api_key=key, max_retries=0)


async def test_completion(mock: Mock) -> None:
    async with client(mock) as sdk:
        response = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert response.object == "chat.completion"
    assert response.model == "gpt-4o-mini"
    assert response.choices[0].message.content == "Hello! You said: What is the weather?"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    assert response.usage.completion_tokens == 7
    assert response.usage.total_tokens == response.usage.prompt_tokens + 7


async def test_stream_with_usage(mock: Mock) -> None:
    async with client(mock) as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == "Hello! You said: What is the weather?"
    )
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


async def test_stream_without_usage_has_no_usage_chunk_and_no_usage_key(mock: Mock) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            mock.base_url + "/chat/completions",
            json={"model": "m", "messages": MESSAGES, "stream": True},
            headers={"authorization": "Bearer sk-x"},
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert all(c["choices"] and "usage" not in c for c in chunks)


async def test_streamed_tool_call(mock: Mock) -> None:
    async with client(mock) as sdk:
        stream = await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS, stream=True)
        chunks = [chunk async for chunk in stream]
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    first = calls[0][0]
    assert (first.index, first.type, first.function and first.function.name) == (0, "function", "get_weather")
    assert first.id and first.id.startswith("call_")
    assert all(call[0].index == 0 and call[0].id is None for call in calls[1:])
    arguments = "".join(call[0].function.arguments or "" for call in calls if call[0].function)
    assert orjson.loads(arguments) == {"location": "Paris"}
    assert len(calls) > 2
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_tool_choice_none_answers_in_text(mock: Mock) -> None:
    async with client(mock) as sdk:
        response = await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS, tool_choice="none")
    assert response.choices[0].message.tool_calls is None
    assert response.choices[0].message.content


async def test_max_tokens_truncates(mock: Mock) -> None:
    async with client(mock) as sdk:
        response = await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=2)
    assert response.choices[0].message.content == "Hello! You "
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None and response.usage.completion_tokens == 2


async def test_rejected_key_is_a_401_in_openai_shape(mock: Mock) -> None:
    async with client(mock, REJECTED_KEY) as sdk:
        with pytest.raises(openai.AuthenticationError) as rejected:
            await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert rejected.value.status_code == 401
    assert rejected.value.code == "invalid_api_key"
    assert isinstance(rejected.value.body, dict) and rejected.value.body["type"] == "invalid_request_error"


async def test_behaviour_status_per_model_then_reset(mock: Mock) -> None:
    await mock.behave(model="gpt-4o", status=503)
    async with client(mock) as sdk:
        with pytest.raises(openai.InternalServerError) as failed:
            await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert failed.value.status_code == 503
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        await mock.behave(model="*", status=429, times=1)
        with pytest.raises(openai.RateLimitError):
            await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


async def test_requests_are_recorded(mock: Mock) -> None:
    async with client(mock, "sk-recorded-000000000000") as sdk:
        await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.5)
    [seen] = await mock.requests()
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == "Bearer sk-recorded-000000000000"
    assert seen["body"]["temperature"] == 0.5
    assert seen["disconnected"] is False


async def test_bad_behaviour_is_refused(mock: Mock) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        await mock.behave(model="*", teleport=True)


async def test_cerebras_flavour_refuses_what_cerebras_refuses(mock: Mock) -> None:
    body = {"model": "gpt-oss-120b", "messages": MESSAGES}
    async with httpx.AsyncClient(base_url=mock.running.url, headers={"authorization": "Bearer sk-x"}) as http:
        refused = await http.post("/cerebras/v1/chat/completions", json={**body, "presence_penalty": 0.5})
        served = await http.post("/cerebras/v1/chat/completions", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "presence_penalty"
    assert served.status_code == 200


async def test_perplexity_and_openrouter_flavours_add_their_fields(mock: Mock) -> None:
    for flavour, fields in (("perplexity", {"citations", "search_results"}), ("openrouter", {"provider"})):
        sdk = openai.AsyncOpenAI(base_url=f"{mock.running.url}/{flavour}/v1", api_key="sk-x", max_retries=0)
        async with sdk:
            response = await sdk.chat.completions.create(model="m", messages=MESSAGES)
            stream = await sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            chunks = [chunk async for chunk in stream]
        assert fields <= set(response.model_extra or {}), flavour
        assert all(fields <= set(chunk.model_extra or {}) for chunk in chunks), flavour


def test_command_line_listens_and_prints_nothing() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stepblend.mockprovider", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port)
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            headers={"authorization": "Bearer sk-x"},
        )
        assert response.status_code == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert (out, err) == (b"", b"")


async def test_serve_in_the_running_loop_until_cancelled() -> None:
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(port=0, prefix="/openai/v1", ready=ready.set_result))
    port = await asyncio.wait_for(ready, 10)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"http://127.0.0.1:{port}/openai/v1/chat/completions",
            json={"model": "m", "messages": MESSAGES, "stream": True},
            headers={"authorization": "Bearer sk-x"},
        )
    assert response.text.endswith("data: [DONE]\n\n")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
