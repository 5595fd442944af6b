"""Providers' own published examples, replayed through the real adapters.

Every file under `recorded/` (and the Anthropic streams under `streams/`) is a
response a provider published: an example of its API reference, or a response its
official SDK recorded for its tests (`recorded/README.md` names each source, and
what had to change where a page's example was not valid as it stood). A real HTTP
server on loopback answers the real executor with the file's bytes, and each test
asserts what the client of StepBlend then sees: OpenAI's chat completion or chunks
(text, tool calls and their arguments, finish reason), the usage the provider
reported, or the error and fallback its error body leads to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from services.providers.adapters.openai_embeddings import EMBEDDINGS_DIALECT
from services.providers.executor import Executor
from services.providers.upstream import make_client
from services.providers.vendors import load_vendors
from stepblend.v1 import providers_pb2, router_pb2
from tests.providers.conftest import TIMEOUTS, MemoryKeys, candidate, http
from tests.support.procs import free_port

HERE = Path(__file__).parent
RECORDED = HERE / "recorded"
STREAMS = HERE / "streams"
# The vendors replayed, each under its own prefix of the one server.
VENDORS = ("openai", "groq", "anthropic", "gemini", "azure")
AZURE_KEY = "0123456789abcdef0123456789abcdef"
# Bytes per write of a replayed stream: small, so events span reads as on the wire.
SSE_WRITE = 61

GPT = candidate("openai", "gpt-4o", "gpt-4o-2024-08-06")
GROQ = candidate("groq", "llama-3.3-70b", "llama-3.3-70b-versatile")
CLAUDE = candidate("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929")
GEMINI = candidate("gemini", "gemini-2.5-flash", "gemini-2.5-flash")
AZURE = candidate("azure", "gpt-4o", "gpt-4o")
OPENAI_EMBEDDING = candidate("openai", "text-embedding-3-small", "text-embedding-3-small")
GEMINI_EMBEDDING = candidate("gemini", "gemini-embedding-001", "gemini-embedding-001")


@dataclass
class Answer:
    """What the server sends for one vendor: a recorded file, with its status."""

    file: Path
    status: int = 200

    @property
    def content_type(self) -> str:
        return "text/event-stream" if self.file.suffix == ".sse" else "application/json"


@dataclass
class Replay:
    """One server on loopback answering each vendor's prefix with its recorded file."""

    port: int
    answers: dict[str, Answer] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    def url(self, vendor: str) -> str:
        return f"http://127.0.0.1:{self.port}/{vendor}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        answer = self.answers[request.match_info["vendor"]]
        self.seen.append(request.path_qs)
        data = answer.file.read_bytes()
        headers = {"content-type": answer.content_type}
        if answer.file.suffix != ".sse":
            return web.Response(status=answer.status, body=data, headers=headers)
        # A stream goes out in small writes (SSE_WRITE).
        response = web.StreamResponse(status=answer.status, headers=headers)
        await response.prepare(request)
        for start in range(0, len(data), SSE_WRITE):
            await response.write(data[start : start + SSE_WRITE])
        await response.write_eof()
        return response

    def serve(self, vendor: str, file: Path, status: int = 200) -> None:
        self.answers[vendor] = Answer(file, status)


@pytest.fixture
async def replay() -> AsyncIterator[Replay]:
    server = Replay(free_port())
    app = web.Application()
    app.router.add_post("/{vendor}/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_client(TIMEOUTS) as shared:
        yield shared


@pytest.fixture
def executor(replay: Replay, client: aiohttp.ClientSession) -> Executor:
    urls = {name: replay.url(name) for name in VENDORS}
    urls["openai"] += "/v1"
    urls["groq"] += "/v1"
    azure = {"api_key": AZURE_KEY, "endpoint": replay.url("azure"), "deployments": {"gpt-4o": "contoso-4o"}}
    keys = MemoryKeys(
        {name: f"sk-{name}-0123456789abcdef" for name in VENDORS} | {"azure": orjson.dumps(azure).decode()}
    )
    return Executor(client, keys, load_vendors(urls), TIMEOUTS)


async def run(
    executor: Executor, *candidates: router_pb2.Candidate, stream: bool = False, **fields: Any
) -> list[providers_pb2.ExecuteEvent]:
    body = {"model": "m", "messages": [{"role": "user", "content": "Hello"}], **({"stream": True} if stream else {})}
    request = providers_pb2.ExecuteRequest(
        request_id="rec",
        account_id="acct",
        candidates=candidates,
        body=orjson.dumps(body),
        stream=stream,
        created=1_700_000_000,
        **fields,
    )
    async with asyncio.timeout(30):
        return [event async for batch in executor.execute(request) for event in batch]


def attempts(events: list[providers_pb2.ExecuteEvent]) -> list[tuple[str, str, int]]:
    return [(e.attempt.provider, e.attempt.outcome, e.attempt.status) for e in events if e.HasField("attempt")]


def completion(events: list[providers_pb2.ExecuteEvent]) -> dict[str, Any]:
    [answer] = [orjson.loads(e.completion) for e in events if e.HasField("completion")]
    result: dict[str, Any] = answer
    return result


def chunks(events: list[providers_pb2.ExecuteEvent]) -> list[dict[str, Any]]:
    return [orjson.loads(e.chunk) for e in events if e.HasField("chunk")]


def usage(events: list[providers_pb2.ExecuteEvent]) -> tuple[int, int, int, int] | None:
    found = [e.usage for e in events if e.HasField("usage")]
    if not found:
        return None
    [u] = found
    return (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_prompt_tokens)


def text(streamed: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed if c["choices"])


def finishes(streamed: list[dict[str, Any]]) -> list[str]:
    return [c["choices"][0]["finish_reason"] for c in streamed if c["choices"] and c["choices"][0]["finish_reason"]]


def tool_calls(streamed: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """The streamed tool calls as a client assembles them, by index."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in streamed:
        for delta in chunk["choices"][0]["delta"].get("tool_calls") or []:
            call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.get("id") or ""
            call["name"] += (delta.get("function") or {}).get("name") or ""
            call["arguments"] += (delta.get("function") or {}).get("arguments") or ""
    return calls


# OpenAI: the API reference's examples and the streams openai-python recorded.


async def test_openai_reference_answer(replay: Replay, executor: Executor) -> None:
    replay.serve("openai", RECORDED / "openai_chat.json")
    events = await run(executor, GPT)
    assert attempts(events) == [("openai", "ok", 200)]
    answer = completion(events)
    assert (answer["id"], answer["object"], answer["model"]) == ("chatcmpl-rec", "chat.completion", "gpt-4o")
    [choice] = answer["choices"]
    assert choice["message"]["content"] == "Hello! How can I assist you today?"
    assert choice["finish_reason"] == "stop"
    assert usage(events) == (19, 10, 29, 0)
    assert replay.seen == ["/openai/v1/chat/completions"]


async def test_openai_reference_tool_call(replay: Replay, executor: Executor) -> None:
    replay.serve("openai", RECORDED / "openai_chat_tool_calls.json")
    events = await run(executor, GPT)
    [choice] = completion(events)["choices"]
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_abc123",
            "type": "function",
            "function": {"name": "get_current_weather", "arguments": '{\n"location": "Boston, MA"\n}'},
        }
    ]
    assert choice["finish_reason"] == "tool_calls"
    assert usage(events) == (82, 17, 99, 0)


async def test_openai_recorded_stream(replay: Replay, executor: Executor) -> None:
    replay.serve("openai", RECORDED / "openai_stream.sse")
    events = await run(executor, GPT, stream=True)
    streamed = chunks(events)
    assert text(streamed) == (
        "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, "
        "I recommend checking a reliable weather website or a weather app."
    )
    assert finishes(streamed) == ["stop"]
    assert {(c["id"], c["model"]) for c in streamed} == {("chatcmpl-rec", "gpt-4o")}
    # The usage chunk (empty choices) is the gateway's to send: it arrives as the Usage event.
    assert all(c["choices"] and "usage" not in c for c in streamed)
    assert usage(events) == (14, 30, 44, 0)


async def test_openai_recorded_parallel_tool_call_stream(replay: Replay, executor: Executor) -> None:
    replay.serve("openai", RECORDED / "openai_tool_stream.sse")
    events = await run(executor, GPT, stream=True)
    streamed = chunks(events)
    assert tool_calls(streamed) == {
        0: {
            "id": "call_JMW1whyEaYG438VE1OIflxA2",
            "name": "GetWeatherArgs",
            "arguments": '{"city": "Edinburgh", "country": "GB", "units": "c"}',
        },
        1: {
            "id": "call_DNYTawLBoN8fj3KN6qU9N1Ou",
            "name": "get_stock_price",
            "arguments": '{"ticker": "AAPL", "exchange": "NASDAQ"}',
        },
    }
    assert finishes(streamed) == ["tool_calls"]
    assert usage(events) == (149, 60, 209, 0)


async def test_openai_reference_embeddings(replay: Replay, executor: Executor) -> None:
    replay.serve("openai", RECORDED / "openai_embeddings.json")
    native = orjson.dumps({"model": "text-embedding-3-small", "input": "The food was delicious and the waiter..."})
    events = await run(executor, OPENAI_EMBEDDING, native_dialect=EMBEDDINGS_DIALECT, native_body=native)
    answer = completion(events)
    assert answer["object"] == "list" and answer["model"] == "text-embedding-3-small"
    assert [item["embedding"] for item in answer["data"]] == [[0.0023064255, -0.009327292, -0.0028842222]]
    assert answer["usage"] == {"prompt_tokens": 8, "total_tokens": 8}
    assert usage(events) == (8, 0, 8, 0)
    assert replay.seen == ["/openai/v1/embeddings"]


async def test_openai_quota_429_falls_back_and_alone_is_a_429(replay: Replay, executor: Executor) -> None:
    replay.serve("openai", RECORDED / "openai_429_insufficient_quota.json", status=429)
    replay.serve("groq", RECORDED / "openai_chat.json")
    events = await run(executor, GPT, GROQ)
    assert attempts(events) == [("openai", "rate_limited", 429), ("groq", "ok", 200)]
    assert events[0].attempt.detail.startswith("HTTP 429 insufficient_quota: You exceeded your current quota")
    assert completion(events)["choices"][0]["message"]["content"] == "Hello! How can I assist you today?"

    events = await run(executor, GPT)
    error = http(events[-1].error)
    assert (error.status, error.type, events[-1].error.code) == (429, "rate_limit_error", "rate_limit_exceeded")


# Azure OpenAI: the content-filtering documentation's examples.


async def test_azure_filtered_stream_ends_as_openai_content_filter(replay: Replay, executor: Executor) -> None:
    replay.serve("azure", RECORDED / "azure_content_filter_stream.sse")
    events = await run(executor, AZURE, stream=True)
    assert attempts(events) == [("azure", "ok", 200)]
    streamed = chunks(events)
    assert text(streamed) == "Hey Jude, better"
    # Azure's annotation chunks (empty id, no delta) are not forwarded; every chunk is OpenAI's shape.
    for chunk in streamed:
        assert (chunk["id"], chunk["object"], chunk["model"]) == ("chatcmpl-rec", "chat.completion.chunk", "gpt-4o")
        [choice] = chunk["choices"]
        assert "delta" in choice
        assert not any(name.startswith("content_filter_") for name in choice)
        assert "prompt_filter_results" not in chunk
    assert streamed[-1]["choices"][0] == {"index": 0, "finish_reason": "content_filter", "delta": {}}
    assert finishes(streamed) == ["content_filter"]
    assert replay.seen == ["/azure/openai/deployments/contoso-4o/chat/completions?api-version=2024-10-21"]


async def test_azure_filtered_prompt_is_openai_400_content_filter_not_a_fallback(
    replay: Replay, executor: Executor
) -> None:
    replay.serve("azure", RECORDED / "azure_content_filter_400.json", status=400)
    replay.serve("openai", RECORDED / "openai_chat.json")
    events = await run(executor, AZURE, GPT)
    assert attempts(events) == [("azure", "bad_request", 400)]
    refusal = events[-1].error
    error = http(refusal)
    assert (error.status, error.type) == (400, "invalid_request_error")
    assert (refusal.code, refusal.param, refusal.message) == ("content_filter", "prompt", "The response was filtered")
    assert len(replay.seen) == 1


# Anthropic: a response anthropic-sdk-python recorded, the Streaming Messages
# documentation's streams, and the overloaded error the SDK's tests send.


async def test_anthropic_recorded_message(replay: Replay, executor: Executor) -> None:
    replay.serve("anthropic", RECORDED / "anthropic_message.json")
    events = await run(executor, CLAUDE)
    assert attempts(events) == [("anthropic", "ok", 200)]
    answer = completion(events)
    assert answer["model"] == "claude-sonnet-4-5"
    [choice] = answer["choices"]
    assert choice["message"]["content"] == '{"product_name": "Green Tea", "price": 5.50, "quantity": 2}'
    assert choice["finish_reason"] == "stop"
    assert usage(events) == (249, 26, 275, 0)
    assert replay.seen == ["/anthropic/v1/messages"]


async def test_anthropic_documented_stream(replay: Replay, executor: Executor) -> None:
    replay.serve("anthropic", STREAMS / "anthropic_text.sse")
    events = await run(executor, CLAUDE, stream=True)
    streamed = chunks(events)
    assert text(streamed) == "Hello!"
    assert finishes(streamed) == ["stop"]
    assert usage(events) == (25, 15, 40, 0)


async def test_anthropic_recorded_tool_use_stream(replay: Replay, executor: Executor) -> None:
    replay.serve("anthropic", RECORDED / "anthropic_tool_use_stream.sse")
    events = await run(executor, CLAUDE, stream=True)
    streamed = chunks(events)
    assert text(streamed) == "I'll check the current weather in Paris for you."
    # The text block is Anthropic's content block 0; OpenAI counts tool calls only.
    assert tool_calls(streamed) == {
        0: {"id": "toolu_01NRLabsLyVHZPKxbKvkfSMn", "name": "get_weather", "arguments": '{"location": "Paris"}'}
    }
    assert finishes(streamed) == ["tool_calls"]
    # The stream ends without a blank line after message_stop: its usage still counts.
    assert usage(events) == (377, 65, 442, 0)


@pytest.mark.parametrize(
    ("name", "status", "stream"),
    [("anthropic_overloaded_529.json", 529, False), ("anthropic_overloaded.sse", 200, True)],
    ids=["529-body", "error-event"],
)
async def test_anthropic_overloaded_falls_back(
    replay: Replay, executor: Executor, name: str, status: int, stream: bool
) -> None:
    replay.serve("anthropic", RECORDED / name, status=status)
    replay.serve("openai", RECORDED / ("openai_stream.sse" if stream else "openai_chat.json"))
    events = await run(executor, CLAUDE, GPT, stream=stream)
    assert attempts(events) == [("anthropic", "provider_error", status), ("openai", "ok", 200)]
    assert "overloaded_error" in events[0].attempt.detail and "Overloaded" in events[0].attempt.detail
    if stream:
        assert text(chunks(events)).startswith("I'm unable to provide real-time weather updates.")
    else:
        assert completion(events)["choices"][0]["message"]["content"] == "Hello! How can I assist you today?"


# Gemini: answers Google's cookbook recorded, the streams of Google's JS SDK fixtures,
# and Google's documented RESOURCE_EXHAUSTED error.


async def test_gemini_recorded_answer(replay: Replay, executor: Executor) -> None:
    replay.serve("gemini", RECORDED / "gemini_generate_content.json")
    events = await run(executor, GEMINI)
    assert attempts(events) == [("gemini", "ok", 200)]
    [choice] = completion(events)["choices"]
    assert choice["message"]["content"].startswith("```python\n# Example list to be sorted\nmy_list = [5, 3, 1, 2, 4]")
    assert choice["message"]["content"].endswith("[1, 2, 3, 4, 5]\n```")
    assert choice["finish_reason"] == "stop"
    assert usage(events) == (9, 87, 96, 0)
    assert replay.seen == ["/gemini/v1beta/models/gemini-2.5-flash:generateContent"]


async def test_gemini_recorded_function_call(replay: Replay, executor: Executor) -> None:
    replay.serve("gemini", RECORDED / "gemini_function_call.json")
    events = await run(executor, GEMINI)
    [choice] = completion(events)["choices"]
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "find_theaters"
    assert orjson.loads(call["function"]["arguments"]) == {"movie": "Barbie", "location": "Mountain View, CA"}
    # Gemini says STOP for an answer that calls a function: OpenAI's client expects tool_calls.
    assert choice["finish_reason"] == "tool_calls"
    # The recorded answer reports no usageMetadata: no usage is made up.
    assert usage(events) is None


async def test_gemini_stream_saying_stop_on_every_chunk_is_forwarded_whole(replay: Replay, executor: Executor) -> None:
    replay.serve("gemini", RECORDED / "gemini_stream.sse")
    events = await run(executor, GEMINI, stream=True)
    assert attempts(events) == [("gemini", "ok", 200)]
    streamed = chunks(events)
    story = text(streamed)
    assert story.startswith("In the quaint, sunlit cottage nestled amidst a lush meadow, resided two feline companions")
    assert story.endswith("their love for each other and for adventure stronger than ever.")
    assert '"冒险伙伴" (Adventure Buddies)' in story
    # One finish, after all of the text: a client that stops at it has the whole story.
    assert finishes(streamed) == ["stop"]
    assert streamed[-1]["choices"][0]["finish_reason"] == "stop"
    assert replay.seen == ["/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"]


async def test_gemini_function_call_stream(replay: Replay, executor: Executor) -> None:
    replay.serve("gemini", RECORDED / "gemini_function_call_stream.sse")
    events = await run(executor, GEMINI, stream=True)
    streamed = chunks(events)
    [call] = tool_calls(streamed).values()
    assert call["name"] == "getTemperature" and orjson.loads(call["arguments"]) == {"city": "San Jose"}
    assert call["id"]
    assert finishes(streamed) == ["tool_calls"]


async def test_gemini_recorded_batch_embeddings(replay: Replay, executor: Executor) -> None:
    replay.serve("gemini", RECORDED / "gemini_batch_embed.json")
    questions = ["What is the meaning of life?", "How much wood would a woodchuck chuck?", "How does the brain work?"]
    native = orjson.dumps({"model": "gemini-embedding-001", "input": questions})
    events = await run(executor, GEMINI_EMBEDDING, native_dialect=EMBEDDINGS_DIALECT, native_body=native)
    answer = completion(events)
    vectors = [item["embedding"] for item in answer["data"]]
    assert [item["index"] for item in answer["data"]] == [0, 1, 2]
    assert [len(v) for v in vectors] == [7, 7, 5]
    assert vectors[0][:2] == [-0.022374554, -0.004560777] and vectors[2][-1] == -0.02952513
    assert replay.seen == ["/gemini/v1beta/models/gemini-embedding-001:batchEmbedContents"]


async def test_gemini_resource_exhausted_falls_back_and_alone_is_a_429(replay: Replay, executor: Executor) -> None:
    replay.serve("gemini", RECORDED / "gemini_resource_exhausted.json", status=429)
    replay.serve("openai", RECORDED / "openai_chat.json")
    events = await run(executor, GEMINI, GPT)
    assert attempts(events) == [("gemini", "rate_limited", 429), ("openai", "ok", 200)]
    assert events[0].attempt.detail.startswith("HTTP 429 RESOURCE_EXHAUSTED: The zone 'us-east1-a' does not have")

    events = await run(executor, GEMINI, stream=True)
    error = http(events[-1].error)
    assert (error.status, error.type) == (429, "rate_limit_error")
