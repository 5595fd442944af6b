"""One suite, every vendor: each row of vendors.toml against the mock provider
speaking that vendor's wire format (OpenAI's, its vendor variants, Anthropic's,
Gemini's, Azure's, Bedrock's).

A new vendor is a row of vendors.toml, a flavour of the mock when it departs from
its wire format, and one line in `ROWS` below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import orjson
import pytest

from services.providers.executor import Executor
from services.providers.timeouts import Timeouts
from services.providers.upstream import make_client
from services.providers.vendors import load_vendors
from stepblend.mockprovider.sigv4 import EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY
from stepblend.v1 import providers_pb2, router_pb2
from tests.providers.conftest import REJECTED_KEY, MemoryKeys, Mock, candidate, http


@dataclass(frozen=True)
class Row:
    provider: str
    model: str
    # where the mock serves this vendor, after its root URL
    path: str
    # whether the adapter translates response_format json_schema (Anthropic's does not)
    json_schema: bool = True

    @property
    def candidate(self) -> router_pb2.Candidate:
        return candidate(self.provider, f"{self.provider}-model", self.model)

    @property
    def backup(self) -> router_pb2.Candidate:
        """The next candidate when this one fails: another vendor's."""
        other = "groq" if self.provider == "openai" else "openai"
        return candidate(other, "backup", "backup-upstream")


ROWS = [
    Row("openai", "gpt-4o-mini-2024-07-18", "/v1"),
    Row("groq", "llama-3.1-8b-instant", "/groq/v1"),
    Row("deepseek", "deepseek-chat", "/deepseek/v1"),
    Row("mistral", "mistral-small-2503", "/mistral/v1"),
    Row("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "/together/v1"),
    Row("xai", "grok-3-mini", "/xai/v1"),
    Row("fireworks", "accounts/fireworks/models/gpt-oss-120b", "/fireworks/v1"),
    Row("cerebras", "gpt-oss-120b", "/cerebras/v1"),
    Row("openrouter", "openai/gpt-oss-120b", "/openrouter/v1"),
    Row("perplexity", "sonar", "/perplexity/v1"),
    Row("local", "llama3.1:8b", "/local/v1"),
    Row("demo", "gpt-4o-mini", "/v1"),
    Row("anthropic", "claude-3-5-haiku-20241022", "", json_schema=False),
    Row("gemini", "gemini-2.5-flash", ""),
    # The demo's Anthropic- and Gemini-shaped vendors: the same adapters at the mock's root.
    Row("demo_anthropic", "claude-3-5-haiku-20241022", "", json_schema=False),
    Row("demo_gemini", "gemini-2.5-flash", ""),
    # The account's resource at the mock's /azure; the model is the deployment's name.
    Row("azure", "gpt-4o-mini-deployment", "/azure"),
    # Bedrock's Converse at the mock's /bedrock (SigV4 checked); JSON through a forced tool.
    Row("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0", "/bedrock"),
]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        },
    }
]
# A 1x1 PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "sky": {"type": "string"}},
    "required": ["city", "sky"],
    "additionalProperties": False,
}
# Generous, so that a loaded machine never turns an answer into a timeout; the tests of
# the first-token timeout use an executor of their own (`impatient`), whose 1 s the
# mock's delays exceed threefold.
TIMEOUTS = Timeouts(connect=5.0, read=5.0, total=30.0, first_token=5.0)
IMPATIENT = Timeouts(connect=5.0, read=5.0, total=30.0, first_token=1.0)

rows = pytest.mark.parametrize("row", ROWS, ids=[row.provider for row in ROWS])
# Gemini answers an invalid key with a 400 INVALID_ARGUMENT (reason API_KEY_INVALID), not
# a 401: outcomes.http_failure reads the reason, so it is provider_key_invalid too.
REJECTED_STATUS = {"gemini": 400, "demo_gemini": 400, "bedrock": 403}


def key_of(provider: str) -> str:
    return f"sk-{provider}-conformance-0123456789abcdef"


def stored(row: Row, key: str, root: str) -> str:
    """What the vault holds for `row`: the key, or Azure's object of fields around it
    (its endpoint the mock, which only the vault's Put refuses, being no Azure host),
    or Bedrock's AWS credentials: the mock's known pair, its secret replaced by a
    rejected key (the signature the mock recomputes then differs: a 403)."""
    if row.provider == "bedrock":
        secret = key if key == REJECTED_KEY else EXAMPLE_SECRET_ACCESS_KEY
        fields = {"access_key_id": EXAMPLE_ACCESS_KEY_ID, "secret_access_key": secret, "region": "us-east-1"}
        return orjson.dumps(fields).decode()
    if row.provider != "azure":
        return key
    fields = {"api_key": key, "endpoint": root + row.path, "deployments": {row.candidate.model: row.model}}
    return orjson.dumps(fields).decode()


@pytest.fixture
def keys(mock: Mock) -> MemoryKeys:
    return MemoryKeys({row.provider: stored(row, key_of(row.provider), mock.running.url) for row in ROWS})


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    # One pooled session, as in the service.
    async with make_client(TIMEOUTS) as shared:
        yield shared


@pytest.fixture
def executor(mock: Mock, keys: MemoryKeys, client: aiohttp.ClientSession) -> Executor:
    vendors = load_vendors({row.provider: mock.running.url + row.path for row in ROWS})
    return Executor(client, keys, vendors, TIMEOUTS)


@pytest.fixture
def impatient(mock: Mock, keys: MemoryKeys, client: aiohttp.ClientSession) -> Executor:
    """An executor that waits 1 s for a first token."""
    vendors = load_vendors({row.provider: mock.running.url + row.path for row in ROWS})
    return Executor(client, keys, vendors, IMPATIENT)


async def run(
    executor: Executor,
    *candidates: router_pb2.Candidate,
    stream: bool = False,
    include_usage: bool = False,
    **body: Any,
) -> list[providers_pb2.ExecuteEvent]:
    request = providers_pb2.ExecuteRequest(
        request_id="conf",
        account_id="acct",
        candidates=candidates,
        body=orjson.dumps({"model": "m", "messages": MESSAGES, **({"stream": True} if stream else {}), **body}),
        stream=stream,
        include_usage=include_usage,
        created=1_700_000_000,
    )
    return [event async for batch in executor.execute(request) for event in batch]


def kinds(events: list[providers_pb2.ExecuteEvent]) -> list[str]:
    return [str(event.WhichOneof("event")) for event in events]


def outcomes(events: list[providers_pb2.ExecuteEvent]) -> list[tuple[str, str, int]]:
    return [(e.attempt.provider, e.attempt.outcome, e.attempt.status) for e in events if e.HasField("attempt")]


def chunks(events: list[providers_pb2.ExecuteEvent]) -> list[dict[str, Any]]:
    return [orjson.loads(e.chunk) for e in events if e.HasField("chunk")]


def usage(events: list[providers_pb2.ExecuteEvent]) -> providers_pb2.Usage:
    [found] = [e.usage for e in events if e.HasField("usage")]
    return found


def text(got: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in got)


def tool_calls(got: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """Streamed tool calls reassembled by their OpenAI index, as SDKs do."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in got:
        for delta in chunk["choices"][0]["delta"].get("tool_calls") or []:
            call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.get("id") or ""
            function = delta.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""
    return calls


def test_every_vendor_has_a_row() -> None:
    assert {row.provider for row in ROWS} == set(load_vendors())


@rows
async def test_non_stream(executor: Executor, mock: Mock, row: Row) -> None:
    events = await run(executor, row.candidate)
    assert kinds(events) == ["attempt", "completion", "usage"]
    assert outcomes(events) == [(row.provider, "ok", 200)]
    completion = orjson.loads(events[1].completion)
    assert (completion["id"], completion["model"], completion["created"]) == (
        "chatcmpl-conf",
        f"{row.provider}-model",
        1_700_000_000,
    )
    assert completion["choices"][0]["message"]["content"] == "Hello! You said: Hello there"
    assert completion["choices"][0]["finish_reason"] == "stop"
    counted = usage(events)
    assert counted.completion_tokens == completion["usage"]["completion_tokens"] == 5
    assert counted.prompt_tokens == completion["usage"]["prompt_tokens"] > 0
    assert counted.total_tokens == counted.prompt_tokens + counted.completion_tokens
    [seen] = await mock.requests()
    assert not seen["stream"]


@rows
@pytest.mark.parametrize("include_usage", [False, True], ids=["usage-unasked", "usage-asked"])
async def test_stream(executor: Executor, mock: Mock, row: Row, include_usage: bool) -> None:
    events = await run(executor, row.candidate, stream=True, include_usage=include_usage)
    assert kinds(events) == ["attempt", *["chunk"] * (len(events) - 2), "usage"]
    got = chunks(events)
    assert got[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text(got) == "Hello! You said: Hello there"
    assert got[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["id"] == "chatcmpl-conf" and c["model"] == f"{row.provider}-model" for c in got)
    # The client sees usage only in the gateway's last chunk, and only when it asked.
    assert all(c["choices"] for c in got)
    assert all(c["usage"] is None for c in got) if include_usage else all("usage" not in c for c in got)
    assert not any("x_groq" in c for c in got)
    # StepBlend always obtains usage for billing.
    assert usage(events).completion_tokens == 5 and usage(events).prompt_tokens > 0
    [seen] = await mock.requests()
    assert seen["stream"] is True


@rows
async def test_tool_call(executor: Executor, mock: Mock, row: Row) -> None:
    events = await run(executor, row.candidate, tools=TOOLS)
    message = orjson.loads(events[1].completion)["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    [call] = message["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"] and call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "Paris"}
    assert usage(events).completion_tokens > 0


@rows
async def test_an_image_reaches_the_provider(executor: Executor, mock: Mock, row: Row) -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    question = {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]}
    events = await run(executor, row.candidate, messages=[question])
    assert outcomes(events) == [(row.provider, "ok", 200)]
    message = orjson.loads(events[1].completion)["choices"][0]["message"]
    assert message["content"] == "Hello! You said: What is this?"
    [seen] = await mock.requests()
    assert PNG in orjson.dumps(seen["body"]).decode()


@rows
@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_json_schema_shapes_the_answer_or_is_refused(
    executor: Executor, mock: Mock, row: Row, stream: bool
) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": WEATHER_SCHEMA}}
    events = await run(executor, row.candidate, stream=stream, response_format=schema)
    if not row.json_schema:
        assert kinds(events) == ["attempt", "error"]
        assert (http(events[-1].error).status, events[-1].error.param) == (400, "response_format")
        assert await mock.requests() == []
        return
    got = text(chunks(events)) if stream else orjson.loads(events[1].completion)["choices"][0]["message"]["content"]
    # The mock answers JSON with the properties of the schema it was sent.
    assert orjson.loads(got) == {"city": "Paris", "sky": "London"}


@rows
async def test_streamed_tool_calls_reassemble_under_their_index(executor: Executor, mock: Mock, row: Row) -> None:
    await mock.behave(model=row.model, tool_calls=2)
    events = await run(executor, row.candidate, stream=True, tools=TOOLS)
    got = chunks(events)
    calls = tool_calls(got)
    assert sorted(calls) == [0, 1]
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_weather"]
    assert calls[0]["id"] and calls[1]["id"] and calls[0]["id"] != calls[1]["id"]
    assert orjson.loads(calls[0]["arguments"]) == {"location": "Paris"}
    assert orjson.loads(calls[1]["arguments"]) == {"location": "London"}
    assert got[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert usage(events).completion_tokens > 0


@rows
async def test_rejected_key_is_provider_key_invalid_and_falls_back(
    executor: Executor, keys: MemoryKeys, mock: Mock, row: Row
) -> None:
    keys.keys[row.provider] = stored(row, REJECTED_KEY, mock.running.url)
    events = await run(executor, row.candidate, row.backup)
    status = REJECTED_STATUS.get(row.provider, 401)
    assert outcomes(events) == [(row.provider, "provider_key_invalid", status), (row.backup.provider, "ok", 200)]
    events = await run(executor, row.candidate)
    error = events[-1].error
    assert (http(error).status, http(error).type, error.code) == (502, "api_error", "provider_key_invalid")
    for event in events:
        assert REJECTED_KEY not in str(event) and REJECTED_KEY[-4:] not in str(event)


async def test_a_key_gemini_rejects_never_shows(executor: Executor, keys: MemoryKeys) -> None:
    gemini = next(row for row in ROWS if row.provider == "gemini")
    keys.keys["gemini"] = REJECTED_KEY
    events = await run(executor, gemini.candidate)
    assert kinds(events) == ["attempt", "error"] and events[0].attempt.status == 400
    assert events[0].attempt.outcome == "provider_key_invalid"
    for event in events:
        assert REJECTED_KEY not in str(event) and REJECTED_KEY[-4:] not in str(event)


@rows
@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_rate_limited_falls_back_then_is_a_429(executor: Executor, mock: Mock, row: Row, stream: bool) -> None:
    await mock.behave(model=row.model, status=429)
    events = await run(executor, row.candidate, row.backup, stream=stream)
    assert outcomes(events) == [(row.provider, "rate_limited", 429), (row.backup.provider, "ok", 200)]
    events = await run(executor, row.candidate, stream=stream)
    assert (http(events[-1].error).status, http(events[-1].error).type) == (429, "rate_limit_error")


@rows
@pytest.mark.parametrize("status", [500, 503, 529])
async def test_server_errors_fall_back(executor: Executor, mock: Mock, row: Row, status: int) -> None:
    await mock.behave(model=row.model, status=status)
    events = await run(executor, row.candidate, row.backup, stream=True)
    assert outcomes(events) == [(row.provider, "provider_error", status), (row.backup.provider, "ok", 200)]
    assert events[0].attempt.detail.startswith(f"HTTP {status}")
    assert text(chunks(events)) == "Hello! You said: Hello there"


@rows
async def test_bad_request_is_answered_without_fallback(executor: Executor, mock: Mock, row: Row) -> None:
    await mock.behave(model=row.model, status=400, message="messages: roles must alternate")
    events = await run(executor, row.candidate, row.backup)
    assert kinds(events) == ["attempt", "error"]
    assert outcomes(events) == [(row.provider, "bad_request", 400)]
    error = events[-1].error
    assert (http(error).status, http(error).type, error.message) == (
        400,
        "invalid_request_error",
        "messages: roles must alternate",
    )
    assert len(await mock.requests()) == 1


@rows
async def test_error_event_before_the_first_chunk_falls_back(executor: Executor, mock: Mock, row: Row) -> None:
    await mock.behave(model=row.model, stream_error="overloaded_error")
    events = await run(executor, row.candidate, row.backup, stream=True)
    assert outcomes(events) == [(row.provider, "provider_error", 200), (row.backup.provider, "ok", 200)]
    assert "overloaded_error" in events[0].attempt.detail


@rows
async def test_stream_breaking_after_its_first_chunk_ends_with_an_error(
    executor: Executor, mock: Mock, row: Row
) -> None:
    # Anthropic's first chunk comes with its 2nd event (content_block_start), OpenAI's with the 1st.
    await mock.behave(model=row.model, break_after_chunks=5)
    events = await run(executor, row.candidate, row.backup, stream=True)
    assert outcomes(events) == [(row.provider, "ok", 200)]
    assert kinds(events)[-1] == "error" and "chunk" in kinds(events)
    assert (http(events[-1].error).status, events[-1].error.code) == (502, "stream_interrupted")
    assert len(await mock.requests()) == 1


@rows
@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_cached_prompt_tokens_are_counted(executor: Executor, mock: Mock, row: Row, stream: bool) -> None:
    await mock.behave(model=row.model, cached_tokens=4)
    events = await run(executor, row.candidate, stream=stream)
    counted = usage(events)
    assert counted.cached_prompt_tokens == 4
    assert counted.prompt_tokens > 4


@rows
async def test_timeout_before_the_first_chunk_falls_back(impatient: Executor, mock: Mock, row: Row) -> None:
    await mock.behave(model=row.model, ttft_ms=3000)
    events = await run(impatient, row.candidate, row.backup, stream=True)
    assert outcomes(events) == [(row.provider, "timeout", 200), (row.backup.provider, "ok", 200)]


async def test_events_that_carry_no_token_are_not_a_first_token(impatient: Executor, mock: Mock) -> None:
    # Anthropic answers 200 and message_start at once, then pings while it thinks:
    # the first-token timeout runs until content, not until the first byte.
    anthropic = next(row for row in ROWS if row.provider == "anthropic")
    await mock.behave(model=anthropic.model, chunk_delay_ms=3000)
    events = await run(impatient, anthropic.candidate, anthropic.backup, stream=True)
    assert outcomes(events) == [("anthropic", "timeout", 200), ("openai", "ok", 200)]
    assert events[0].attempt.detail == "no first token within 1s"


async def test_the_mock_answers_unknown_vendor_paths_with_a_404(mock: Mock) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(mock.running.url + "/acme/v1/chat/completions", json={})
    assert response.status_code == 404
