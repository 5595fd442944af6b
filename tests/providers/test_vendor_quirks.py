"""Each vendor's documented quirks, as its vendors.toml row handles them, seen from
the mock: what goes upstream, and what comes back to the client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from services.providers.executor import Executor
from services.providers.timeouts import Timeouts
from services.providers.upstream import make_client
from services.providers.vendors import load_vendors
from stepblend.v1 import providers_pb2, router_pb2
from tests.providers.conftest import MemoryKeys, Mock, candidate, http

TIMEOUTS = Timeouts(connect=2.0, read=2.0, total=20.0, first_token=2.0)
PATHS = {
    "openai": "/v1",
    "groq": "/groq/v1",
    "deepseek": "/deepseek/v1",
    "mistral": "/mistral/v1",
    "xai": "/xai/v1",
    "fireworks": "/fireworks/v1",
    "cerebras": "/cerebras/v1",
    "openrouter": "/openrouter/v1",
    "perplexity": "/perplexity/v1",
    "anthropic": "",
}
HELLO = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_client(TIMEOUTS) as shared:
        yield shared


@pytest.fixture
def executor(mock: Mock, client: aiohttp.ClientSession) -> Executor:
    vendors = load_vendors({name: mock.running.url + path for name, path in PATHS.items()})
    keys = MemoryKeys({name: f"sk-{name}-quirks-0123456789abcdef" for name in [*PATHS, "local"]})
    return Executor(client, keys, vendors, TIMEOUTS)


async def run(
    executor: Executor, cand: router_pb2.Candidate, stream: bool = False, **body: Any
) -> list[providers_pb2.ExecuteEvent]:
    request = providers_pb2.ExecuteRequest(
        request_id="q",
        account_id="a",
        candidates=[cand],
        body=orjson.dumps({"model": "m", "messages": HELLO, **body}),
        stream=stream,
    )
    return [event async for batch in executor.execute(request) for event in batch]


def chunks(events: list[providers_pb2.ExecuteEvent]) -> list[dict[str, Any]]:
    return [orjson.loads(e.chunk) for e in events if e.HasField("chunk")]


async def test_mistral_gets_only_what_it_takes(executor: Executor, mock: Mock) -> None:
    mistral = candidate("mistral", "mistral-small", "mistral-small-2503")
    events = await run(
        executor,
        mistral,
        stream=True,
        seed=7,
        max_completion_tokens=50,
        user="u1",
        store=False,
        n=1,
        stream_options={"include_usage": True},
    )
    assert events[0].attempt.outcome == "ok"
    [seen] = await mock.requests()
    sent = seen["body"]
    assert sent["random_seed"] == 7 and sent["max_tokens"] == 50
    assert not {"seed", "max_completion_tokens", "user", "store", "stream_options"} & set(sent)
    # Mistral sends usage unasked, on its finish chunk: still obtained, never forwarded.
    assert events[-1].usage.completion_tokens == 5
    assert all("usage" not in c for c in chunks(events))


async def test_mistral_refusals_are_ours_not_a_422(executor: Executor, mock: Mock) -> None:
    mistral = candidate("mistral", "mistral-small", "mistral-small-2503")
    events = await run(executor, mistral, logit_bias={"1": 5})
    error = events[-1].error
    assert (http(error).status, error.code, error.param) == (400, "unsupported_parameter", "logit_bias")
    assert "mistral" in error.message
    assert await mock.requests() == []


def test_mistral_validation_errors_read_clearly() -> None:
    # Mistral's 422 for a field outside its schema, read as one line for the client.
    said = load_vendors()["mistral"].adapter.error_details(
        b'{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","stream_options"],'
        b'"msg":"Extra inputs are not permitted","input":true}]},"type":"invalid_request_error","param":null,"code":null}'
    )
    assert (said.message, said.param) == ("stream_options: Extra inputs are not permitted", "stream_options")


async def test_groq_usage_from_x_groq_is_never_forwarded(executor: Executor, mock: Mock) -> None:
    groq = candidate("groq", "llama-3.1-8b-instant")
    events = await run(executor, groq, stream=True, n=1, logprobs=False)
    got = chunks(events)
    assert not any("x_groq" in c or "usage" in c for c in got)
    assert events[-1].usage.completion_tokens == 5
    [seen] = await mock.requests()
    assert "n" not in seen["body"] and "logprobs" not in seen["body"]
    completion = orjson.loads((await run(executor, groq))[1].completion)
    assert "x_groq" not in completion


async def test_groq_refusals_are_ours(executor: Executor, mock: Mock) -> None:
    groq = candidate("groq", "llama-3.1-8b-instant")
    refused: list[dict[str, Any]] = [{"logprobs": True}, {"n": 2}, {"logit_bias": {"1": 1}}]
    for fields in refused:
        [param] = fields
        events = await run(executor, groq, False, **fields)
        assert (http(events[-1].error).status, events[-1].error.param) == (400, param)
    assert await mock.requests() == []


async def test_deepseek_reasoning_passes_through_and_is_not_content(executor: Executor, mock: Mock) -> None:
    reasoner = candidate("deepseek", "deepseek-reasoner")
    events = await run(executor, reasoner, stream=True)
    got = chunks(events)
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in got)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in got)
    assert reasoning == "The user greets me. I should answer briefly."
    assert content == "Hello! You said: Hello there"
    assert events[-1].usage.completion_tokens > 5  # reasoning tokens are billed as output
    completion = orjson.loads((await run(executor, reasoner))[1].completion)
    assert completion["choices"][0]["message"]["reasoning_content"]


async def test_deepseek_history_drops_reasoning_content(executor: Executor, mock: Mock) -> None:
    history = [
        *HELLO,
        {"role": "assistant", "content": "Hi!", "reasoning_content": "They greet me."},
        {"role": "user", "content": "How are you?"},
    ]
    events = await run(executor, candidate("deepseek", "deepseek-reasoner"), messages=history)
    assert events[0].attempt.outcome == "ok"
    [seen] = await mock.requests()
    assert all("reasoning_content" not in m for m in seen["body"]["messages"])


async def test_xai_trailing_empty_chunk_is_not_forwarded(executor: Executor, mock: Mock) -> None:
    events = await run(executor, candidate("xai", "grok-3-mini"), stream=True)
    got = chunks(events)
    assert all(c["choices"] for c in got)
    assert got[-1]["choices"][0]["finish_reason"] == "stop"
    assert events[-1].usage.completion_tokens == 5


async def test_cerebras_refusals_are_ours_and_service_tier_is_dropped(executor: Executor, mock: Mock) -> None:
    cerebras = candidate("cerebras", "gpt-oss-120b")
    refused: list[dict[str, Any]] = [
        {"frequency_penalty": 0.5},
        {"presence_penalty": 1},
        {"logit_bias": {"1": 1}},
        {"parallel_tool_calls": False},
    ]
    for fields in refused:
        [param] = fields
        events = await run(executor, cerebras, False, **fields)
        assert (http(events[-1].error).status, events[-1].error.param) == (400, param)
        assert "cerebras" in events[-1].error.message
    assert await mock.requests() == []
    # OpenAI's defaults ask for nothing: dropped, as is service_tier, and the call is made.
    events = await run(executor, cerebras, frequency_penalty=0, parallel_tool_calls=True, service_tier="auto")
    assert events[0].attempt.outcome == "ok"
    [seen] = await mock.requests()
    assert not {"frequency_penalty", "parallel_tool_calls", "service_tier"} & set(seen["body"])


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_perplexity_sources_reach_the_client(executor: Executor, mock: Mock, stream: bool) -> None:
    sonar = candidate("perplexity", "sonar")
    events = await run(executor, sonar, stream=stream)
    answers = chunks(events) if stream else [orjson.loads(events[1].completion)]
    # The web sources an answer cites are what a Sonar client asks it for.
    for answer in answers:
        assert answer["citations"] == ["https://example.com/hello"]
        assert answer["search_results"][0]["url"] == "https://example.com/hello"
        assert answer["model"] == "sonar"
    assert events[-1].usage.completion_tokens == 5
    if stream:
        # Perplexity's usage comes on its finish chunk, unasked: obtained, not forwarded.
        assert all("usage" not in c for c in answers)


async def test_openrouter_gets_the_routing_object_and_names_its_host(executor: Executor, mock: Mock) -> None:
    openrouter = candidate("openrouter", "gpt-oss-120b", "openai/gpt-oss-120b")
    routing = {"order": ["Cerebras", "Groq"], "allow_fallbacks": False}
    events = await run(executor, openrouter, provider=routing)
    [seen] = await mock.requests()
    assert seen["path"] == "/openrouter/v1/chat/completions"
    assert (seen["body"]["model"], seen["body"]["provider"]) == ("openai/gpt-oss-120b", routing)
    completion = orjson.loads(events[1].completion)
    assert (completion["model"], completion["provider"]) == ("gpt-oss-120b", "Mock Host")


async def test_fireworks_gets_its_path_shaped_model_id(executor: Executor, mock: Mock) -> None:
    fireworks = candidate("fireworks", "llama-3.3-70b", "accounts/fireworks/models/llama-v3p3-70b-instruct")
    events = await run(executor, fireworks, stream=True, top_k=40)
    assert events[0].attempt.outcome == "ok"
    [seen] = await mock.requests()
    assert seen["path"] == "/fireworks/v1/chat/completions"
    assert seen["body"]["model"] == "accounts/fireworks/models/llama-v3p3-70b-instruct"
    assert seen["body"]["top_k"] == 40 and seen["body"]["stream_options"] == {"include_usage": True}
    assert {c["model"] for c in chunks(events)} == {"llama-3.3-70b"}


async def test_local_without_a_base_url_is_skipped(executor: Executor, mock: Mock) -> None:
    events = await run(executor, candidate("local", "llama3.1:8b"))
    attempt = events[0].attempt
    assert (attempt.outcome, attempt.detail) == ("provider_not_connected", "STEPBLEND_LOCAL_BASE_URL is not set")
    assert (http(events[-1].error).status, events[-1].error.code) == (409, "provider_not_connected")


async def test_anthropic_request_on_the_wire(executor: Executor, mock: Mock) -> None:
    claude = candidate("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022", output_budget=200)
    body = {
        "messages": [{"role": "system", "content": "Be brief."}, *HELLO],
        "stop": "\n\nHuman:",
        "temperature": 0.2,
        "stepblend_max_cost": 0.01,
    }
    events = await run(executor, claude, stream=True, **body)
    assert events[0].attempt.outcome == "ok"
    [seen] = await mock.requests()
    assert seen["path"] == "/v1/messages"
    assert seen["headers"]["x-api-key"] == "sk-anthropic-quirks-0123456789abcdef"
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen["headers"]
    assert seen["body"] == {
        "model": "claude-3-5-haiku-20241022",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}],
        "max_tokens": 200,
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.2,
        "stream": True,
    }


async def test_anthropic_tool_loop_round_trip(executor: Executor, mock: Mock) -> None:
    claude = candidate("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    first = orjson.loads((await run(executor, claude, tools=tools))[1].completion)["choices"][0]["message"]
    [call] = first["tool_calls"]
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    history = [*HELLO, first, {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"}]
    events = await run(executor, claude, messages=history, tools=tools)
    # The mock validates tool_use/tool_result pairing as Anthropic does; it answers in text.
    answer = orjson.loads(events[1].completion)["choices"][0]
    assert answer["finish_reason"] == "stop"
    assert answer["message"]["content"] == "Hello! You said: 18 degrees"


async def test_anthropic_stop_sequence_and_max_tokens(executor: Executor, mock: Mock) -> None:
    claude = candidate("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022")
    stopped = orjson.loads((await run(executor, claude, stop=["said"]))[1].completion)["choices"][0]
    assert (stopped["message"]["content"], stopped["finish_reason"]) == ("Hello! You ", "stop")
    cut = orjson.loads((await run(executor, claude, max_tokens=2))[1].completion)["choices"][0]
    assert (cut["message"]["content"], cut["finish_reason"]) == ("Hello! You ", "length")
