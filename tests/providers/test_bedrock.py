"""The Bedrock adapter's translation, both ways: an OpenAI body as Converse's request
(what the real executor sent, as the mock recorded it), Converse's answers and
ConverseStream's events as OpenAI's, and Bedrock's errors — through the real
executor over real HTTP to the mock, which checks each request's SigV4 signature."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from services.providers.adapters.base import SseEvent, UpstreamFormatError
from services.providers.adapters.bedrock import Bedrock
from services.providers.adapters.bedrock_answers import ChunkTranslator, parse_completion
from services.providers.executor import Executor
from services.providers.timeouts import Timeouts
from services.providers.upstream import make_client
from services.providers.vendors import load_vendors
from stepblend.mockprovider.sigv4 import EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY
from stepblend.v1 import providers_pb2
from tests.providers.conftest import MemoryKeys, Mock, candidate, http

LLAMA = candidate("bedrock", "llama-3.3-70b", "meta.llama3-3-70b-instruct-v1:0")
OPENAI = candidate("openai", "gpt-4o", "gpt-4o")
KEY = {"access_key_id": EXAMPLE_ACCESS_KEY_ID, "secret_access_key": EXAMPLE_SECRET_ACCESS_KEY, "region": "eu-west-3"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
TIMEOUTS = Timeouts(connect=2.0, read=2.0, total=20.0, first_token=2.0)


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_client(TIMEOUTS) as shared:
        yield shared


@pytest.fixture
def keys() -> MemoryKeys:
    return MemoryKeys({"bedrock": orjson.dumps(KEY).decode(), "openai": "sk-openai-0123456789abcdef"})


@pytest.fixture
def executor(client: aiohttp.ClientSession, keys: MemoryKeys, mock: Mock) -> Executor:
    vendors = load_vendors({"bedrock": mock.running.url + "/bedrock", "openai": mock.base_url})
    return Executor(client, keys, vendors, TIMEOUTS)


async def run(executor: Executor, *candidates: Any, stream: bool = False, **body: Any) -> list[Any]:
    messages = body.pop("messages", [{"role": "user", "content": "Hello there"}])
    request = providers_pb2.ExecuteRequest(
        request_id="br",
        account_id="acct",
        candidates=candidates or [LLAMA],
        body=orjson.dumps({"model": "llama-3.3-70b", "messages": messages, "stream": stream, **body}),
        stream=stream,
        created=1_700_000_000,
    )
    return [event async for batch in executor.execute(request) for event in batch]


def outcomes(events: list[Any]) -> list[tuple[str, str, int]]:
    return [(e.attempt.provider, e.attempt.outcome, e.attempt.status) for e in events if e.HasField("attempt")]


def chunks(events: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(e.chunk) for e in events if e.HasField("chunk")]


async def test_a_conversation_becomes_converses_system_and_alternating_messages(executor: Executor, mock: Mock) -> None:
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    call = {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "tooluse_1", "content": '{"sky": "clear"}'},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{png}"}}]},
    ]
    events = await run(executor, messages=messages, tools=TOOLS, max_tokens=64, temperature=0.2, top_p=0.9, stop="END")
    assert outcomes(events) == [("bedrock", "ok", 200)]
    [seen] = await mock.requests()
    assert seen["path"] == "/bedrock/model/meta.llama3-3-70b-instruct-v1:0/converse"
    assert seen["body"] == {
        "messages": [
            {"role": "user", "content": [{"text": "Weather?"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]},
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"sky": "clear"}}]}},
                    {"image": {"format": "jpeg", "source": {"bytes": png}}},
                ],
            },
        ],
        "system": [{"text": "Be brief."}, {"text": "Answer in French."}],
        "inferenceConfig": {"maxTokens": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "get_weather",
                        "description": "The weather in a city",
                        "inputSchema": {"json": TOOLS[0]["function"]["parameters"]},
                    }
                }
            ]
        },
    }  # fmt: skip


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}}),
    ],
)
async def test_tool_choice_becomes_converses(executor: Executor, mock: Mock, choice: Any, sent: Any) -> None:
    await run(executor, tools=TOOLS, tool_choice=choice)
    [seen] = await mock.requests()
    assert seen["body"]["toolConfig"]["toolChoice"] == sent


async def test_tool_choice_none_sends_no_tools(executor: Executor, mock: Mock) -> None:
    events = await run(executor, tools=TOOLS, tool_choice="none")
    assert orjson.loads(events[1].completion)["choices"][0]["message"]["content"] == "Hello! You said: Hello there"
    [seen] = await mock.requests()
    assert "toolConfig" not in seen["body"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"response_format": {"type": "json_object"}, "tools": TOOLS}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        ({"tools": [{"type": "function", "function": {"name": "stepblend_json_response"}}]}, "tools[0].function.name"),
        ({"seed": 7}, "seed"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]}, "messages[0].content[0]"),
    ],
)  # fmt: skip
async def test_what_converse_cannot_take_is_a_400_before_any_call(
    executor: Executor, mock: Mock, body: dict[str, Any], param: str
) -> None:
    events = await run(executor, LLAMA, **body)
    assert [e.WhichOneof("event") for e in events] == ["attempt", "error"]
    assert (http(events[-1].error).status, events[-1].error.param) == (400, param)
    assert await mock.requests() == []
    # Under a strategy, the next candidate takes it: Bedrock was never called.
    events = await run(executor, LLAMA, OPENAI, **body)
    assert [(e.attempt.provider, e.attempt.outcome) for e in events if e.WhichOneof("event") == "attempt"] == [
        ("bedrock", "bad_request"),
        ("openai", "ok"),
    ]
    assert [request["path"] for request in await mock.requests()] == ["/v1/chat/completions"]


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
async def test_a_json_answer_is_asked_for_with_a_forced_tool_and_comes_back_as_text(
    executor: Executor, mock: Mock, stream: bool
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "sky": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema}}
    events = await run(executor, stream=stream, response_format=response_format)
    if stream:
        got = chunks(events)
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in got)
        assert not any("tool_calls" in c["choices"][0]["delta"] for c in got)
        finish = got[-1]["choices"][0]["finish_reason"]
    else:
        choice = orjson.loads(events[1].completion)["choices"][0]
        text, finish = choice["message"]["content"], choice["finish_reason"]
        assert "tool_calls" not in choice["message"]
    assert (orjson.loads(text), finish) == ({"city": "Paris", "sky": "London"}, "stop")
    [seen] = await mock.requests()
    assert seen["body"]["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "stepblend_json_response",
                    "description": "Give your whole answer as this tool's input: a JSON object of its schema.",
                    "inputSchema": {"json": schema},
                }
            }
        ],
        "toolChoice": {"tool": {"name": "stepblend_json_response"}},
    }


async def test_openais_defaults_say_nothing_and_are_dropped(executor: Executor, mock: Mock) -> None:
    events = await run(executor, n=1, logprobs=False, response_format={"type": "text"}, user="u-1", store=False)
    assert outcomes(events) == [("bedrock", "ok", 200)]
    [seen] = await mock.requests()
    assert set(seen["body"]) == {"messages"}


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_stop_reasons_become_finish_reasons(stop_reason: str, finish: str) -> None:
    content: list[dict[str, Any]] = [{"text": "Hi"}]
    if stop_reason == "tool_use":
        content.append({"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {}}})
    answer = {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop_reason}
    completion, _ = parse_completion(orjson.dumps(answer), "chatcmpl-1", "m")
    assert orjson.loads(completion)["choices"][0]["finish_reason"] == finish
    translator = ChunkTranslator("chatcmpl-1", "m")
    translator.feed(SseEvent(b'{"contentBlockIndex":0,"delta":{"text":"Hi"}}', "contentBlockDelta"))
    if stop_reason == "tool_use":
        start = {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}
        translator.feed(SseEvent(orjson.dumps(start), "contentBlockStart"))
    [last] = translator.feed(SseEvent(orjson.dumps({"stopReason": stop_reason}), "messageStop"))
    assert orjson.loads(last)["choices"][0]["finish_reason"] == finish


def test_cached_prompt_tokens_are_part_of_the_prompt_as_openai_counts_it() -> None:
    usage = {
        "inputTokens": 10,
        "outputTokens": 3,
        "totalTokens": 33,
        "cacheReadInputTokens": 15,
        "cacheWriteInputTokens": 5,
    }
    answer = {"output": {"message": {"content": [{"text": "Hi"}]}}, "stopReason": "end_turn", "usage": usage}
    completion, counted = parse_completion(orjson.dumps(answer), "chatcmpl-1", "m")
    assert counted is not None
    assert (counted.prompt_tokens, counted.completion_tokens, counted.cached_prompt_tokens) == (30, 3, 15)
    assert orjson.loads(completion)["usage"]["prompt_tokens_details"] == {"cached_tokens": 15}


def test_reasoning_blocks_become_reasoning_content() -> None:
    thought = {"reasoningContent": {"reasoningText": {"text": "Think.", "signature": "sig"}}}
    answer = {"output": {"message": {"content": [thought, {"text": "Hi"}]}}, "stopReason": "end_turn"}
    completion, _ = parse_completion(orjson.dumps(answer), "chatcmpl-1", "m")
    message = orjson.loads(completion)["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("Think.", "Hi")
    translator = ChunkTranslator("chatcmpl-1", "m")
    [chunk] = translator.feed(
        SseEvent(b'{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Hm"}}}', "contentBlockDelta")
    )
    assert orjson.loads(chunk)["choices"][0]["delta"] == {"role": "assistant", "reasoning_content": "Hm"}


def test_a_tool_uses_input_deltas_become_tool_call_chunks_under_their_own_index() -> None:
    translator = ChunkTranslator("chatcmpl-1", "m")
    events = [
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me look."}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": '}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}}),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("messageStop", {"stopReason": "tool_use"}),
        ("metadata", {"usage": {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13}, "metrics": {"latencyMs": 1}}),
    ]  # fmt: skip
    deltas = [
        orjson.loads(chunk)["choices"][0]
        for kind, payload in events
        for chunk in translator.feed(SseEvent(orjson.dumps(payload), kind))
    ]
    assert [d["delta"] for d in deltas[1:4]] == [
        {"tool_calls": [{"index": 0, "id": "tooluse_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
    ]  # fmt: skip
    assert deltas[-1]["finish_reason"] == "tool_calls"
    assert translator.complete and translator.ended
    assert translator.usage is not None and translator.usage.total_tokens == 13


def test_a_tool_use_input_before_its_start_is_not_the_format() -> None:
    translator = ChunkTranslator("chatcmpl-1", "m")
    with pytest.raises(UpstreamFormatError):
        translator.feed(SseEvent(b'{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{}"}}}', "contentBlockDelta"))


async def test_a_throttling_exception_mid_stream_is_rate_limited_and_falls_back(executor: Executor, mock: Mock) -> None:
    await mock.behave(model=LLAMA.upstream_model, stream_error="throttlingException", message="Too many tokens")
    events = await run(executor, LLAMA, OPENAI, stream=True)
    assert outcomes(events) == [("bedrock", "rate_limited", 200), ("openai", "ok", 200)]
    assert events[0].attempt.detail == "error event: rate_limit_error: Too many tokens"


@pytest.mark.parametrize(
    ("status", "outcome", "said"),
    [
        (429, "rate_limited", "HTTP 429 ThrottlingException: Too many requests, please wait before trying again."),
        (503, "provider_error", "HTTP 503 ServiceUnavailableException: Bedrock is unable to process your request."),
        (424, "provider_error", "HTTP 424 ModelErrorException: HTTP 424"),
    ],
)
async def test_bedrocks_error_type_header_names_the_failure(
    executor: Executor, mock: Mock, status: int, outcome: str, said: str
) -> None:
    await mock.behave(model=LLAMA.upstream_model, status=status)
    events = await run(executor, LLAMA, OPENAI)
    assert outcomes(events) == [("bedrock", outcome, status), ("openai", "ok", 200)]
    assert events[0].attempt.detail == said


async def test_no_access_to_the_model_is_the_key_refused_and_falls_back(executor: Executor, mock: Mock) -> None:
    await mock.behave(model=LLAMA.upstream_model, status=403)
    events = await run(executor, LLAMA, OPENAI)
    assert outcomes(events) == [("bedrock", "provider_key_invalid", 403), ("openai", "ok", 200)]


async def test_a_validation_exception_is_the_callers_400_in_bedrocks_words(executor: Executor, mock: Mock) -> None:
    # An assistant turn first: Converse refuses it (the mock as Bedrock does).
    messages = [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Hello"}]
    events = await run(executor, LLAMA, OPENAI, messages=messages)
    assert outcomes(events) == [("bedrock", "bad_request", 400)]
    error = http(events[-1].error)
    assert (error.status, error.type) == (400, "invalid_request_error")
    assert events[-1].error.message.startswith("A conversation must start with a user message.")


def test_the_adapter_sends_no_key_header() -> None:
    assert Bedrock().auth_headers("anything") == {}
