"""The Anthropic codec: requests translated to the internal chat body, answers and
streams rendered so the official `anthropic` SDK reads them, errors in Anthropic's shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from services.gateway.codecs.anthropic import AnthropicCodec
from services.gateway.codecs.base import TokenCounts
from services.gateway.errors import ApiError

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
codec = AnthropicCodec()


@dataclass
class Done:
    request_id: str = "req_abc123"
    created: int = 1_700_000_000
    routed_model: str = "gpt-4o"
    tokens: TokenCounts | None = field(default_factory=lambda: TokenCounts(12, 7))

    def stepblend(self) -> dict[str, Any]:
        return {"routed_model": self.routed_model, "provider": "openai", "cost_usd": "0.0001"}


def body(**fields: Any) -> bytes:
    base: dict[str, Any] = {"model": "balanced", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
    return orjson.dumps(base | fields)


def test_request_translates_system_blocks_tools_and_parameters() -> None:
    raw = body(
        system=[{"type": "text", "text": "Be brief."}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is here?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "cat"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a cat"}]}
                ],
            },
        ],
        tools=[{"name": "lookup", "description": "Find", "input_schema": {"type": "object", "properties": {}}}],
        tool_choice={"type": "any"},
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "u-1"},
        stream=True,
        stepblend_max_cost=0.01,
        stepblend_strategy="cheapest",
    )
    parsed = codec.parse(raw)
    up = parsed.upstream
    assert up["messages"][0] == {"role": "system", "content": "Be brief."}
    assert up["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert up["messages"][1]["content"][2]["image_url"]["url"] == "https://x.test/a.png"
    assert up["messages"][2] == {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"cat"}'}}
        ],
    }
    assert up["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"}
    assert up["tools"] == [
        {
            "type": "function",
            "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}, "description": "Find"},
        }
    ]
    assert up["tool_choice"] == "required"
    assert (up["stop"], up["temperature"], up["top_p"], up["top_k"], up["user"]) == (["END"], 0.5, 0.9, 40, "u-1")
    assert up["max_tokens"] == 64 and up["stream"] is True
    assert not any(k.startswith("stepblend_") for k in up)
    assert parsed.request.stepblend_strategy == "cheapest" and parsed.request.stepblend_max_cost is not None
    assert parsed.native == raw


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "lookup"}, {"type": "function", "function": {"name": "lookup"}}),
    ],
)
def test_tool_choice_maps(choice: dict[str, Any], expected: Any) -> None:
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    assert codec.parse(body(tools=tools, tool_choice=choice)).upstream["tool_choice"] == expected


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "document", "source": {"type": "text", "data": "x", "media_type": "text/plain"}}
                        ],
                    }
                ]
            },
            "messages.0.content.0",
        ),
        ({"mcp_servers": [{"type": "url", "url": "https://m.test", "name": "m"}]}, "mcp_servers"),
    ],
)
def test_features_only_anthropic_serves_keep_the_request_to_anthropic(fields: dict[str, Any], param: str) -> None:
    parsed = codec.parse(body(**fields))
    # The client's body goes to Anthropic as it came; other providers are ruled out,
    # and the refusal (when no Anthropic model can serve it) names the feature.
    assert parsed.native == body(**fields)
    assert parsed.native_providers == {"anthropic"}
    refusal = parsed.native_only
    assert refusal is not None and refusal.status == 400 and refusal.param == param
    assert "only supported when an Anthropic model" in refusal.message


def test_a_plain_request_may_go_to_any_provider() -> None:
    parsed = codec.parse(body(system="Be brief."))
    assert parsed.native_only is None
    assert parsed.native_providers == {"anthropic"}


def test_missing_max_tokens_is_400_in_anthropics_words() -> None:
    raw = orjson.dumps({"model": "balanced", "messages": [{"role": "user", "content": "Hi"}]})
    with pytest.raises(ApiError) as caught:
        codec.parse(raw)
    response = codec.error(caught.value)
    assert response.status_code == 400
    assert orjson.loads(bytes(response.body)) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
    ],
)
def test_error_types_by_status_keep_retry_headers(status: int, kind: str) -> None:
    response = codec.error(ApiError(status, "nope", headers={"retry-after": "3"}))
    assert response.status_code == status and response.headers["retry-after"] == "3"
    assert orjson.loads(bytes(response.body))["error"] == {"type": kind, "message": "nope"}


def test_completion_is_a_message_the_sdk_parses() -> None:
    chat = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"cat"}'}}
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7},
    }
    parsed = codec.parse(body())
    out = codec.completion(orjson.dumps(chat), Done(), parsed)
    message = anthropic.types.Message.model_validate_json(out)
    assert message.id == "msg_abc123" and message.model == "gpt-4o" and message.stop_reason == "tool_use"
    assert message.content[0].type == "text" and message.content[0].text == "Checking."
    tool = message.content[1]
    assert tool.type == "tool_use" and tool.name == "lookup" and tool.input == {"q": "cat"}
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 7)
    assert orjson.loads(out)["stepblend"]["provider"] == "openai"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return orjson.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _stream_bytes(chunks: list[bytes]) -> bytes:
    renderer = codec.stream(Done(), codec.parse(body(stream=True)))
    out = renderer.start() + renderer.keepalive()
    for chunk in chunks:
        out += renderer.chunks([chunk])
    return out + renderer.end()


def _events(sse: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in sse.decode().strip().split("\n\n"):
        name_line, data_line = frame.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        events.append((name_line[7:], orjson.loads(data_line[6:])))
    return events


def _shape(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, str | None]]:
    out = []
    for name, data in events:
        assert data["type"] == name
        inner = data.get("delta", data.get("content_block", {})).get("type") if name.startswith("content") else None
        out.append((name, data["type"], inner))
    return out


def test_text_stream_has_the_published_event_sequence() -> None:
    ours = _events(
        _stream_bytes(
            [
                _chunk({"role": "assistant", "content": ""}),
                _chunk({"content": "Hello"}),
                _chunk({"content": "!"}),
                _chunk({}, "stop"),
            ]
        )
    )
    published = _events((FIXTURES / "basic_stream.sse").read_bytes())
    # The published example pings after the first block starts; ours pings before it. Compare without pings.
    assert _shape([e for e in ours if e[0] != "ping"]) == _shape([e for e in published if e[0] != "ping"])
    assert ours[-2][1]["delta"]["stop_reason"] == "end_turn" and ours[-2][1]["usage"]["output_tokens"] == 7
    assert ours[-1][1]["stepblend"]["provider"] == "openai"


def _sdk_final(sse: bytes) -> anthropic.types.Message:
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, content=sse, headers={"content-type": "text/event-stream"})
    )
    client = anthropic.Anthropic(
        api_key="sb-test", base_url="http://gateway.test", http_client=httpx2.Client(transport=transport)
    )
    with client.messages.stream(
        model="balanced", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        return stream.get_final_message()


def test_sdk_accumulates_a_streamed_text_then_tool_calls() -> None:
    sse = _stream_bytes(
        [
            _chunk({"role": "assistant", "content": "Let me "}),
            _chunk({"content": "check."}),
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": ""},
                        }
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"cat"}'}}]}),
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "time", "arguments": "{}"},
                        }
                    ]
                }
            ),
            _chunk({}, "tool_calls"),
        ]
    )
    indexes = [d["index"] for n, d in _events(sse) if n == "content_block_start"]
    assert indexes == [0, 1, 2]
    message = _sdk_final(sse)
    assert message.stop_reason == "tool_use" and message.model == "gpt-4o"
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == "Let me check."
    assert message.content[1].input == {"q": "cat"} and message.content[2].name == "time"
    assert message.usage.output_tokens == 7


def test_broken_stream_ends_with_an_anthropic_error_event_the_sdk_raises() -> None:
    renderer = codec.stream(Done(), codec.parse(body(stream=True)))
    sse = (
        renderer.start()
        + renderer.chunks([_chunk({"content": "Hel"})])
        + renderer.broke(ApiError(503, "upstream gone"))
    )
    assert _events(sse)[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "upstream gone"}},
    )
    with pytest.raises(anthropic.APIStatusError, match="upstream gone"):
        _sdk_final(sse)


def test_tool_result_error_flag_reaches_the_model() -> None:
    messages = [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}],
        },
    ]
    upstream = codec.parse(body(messages=[{"role": "user", "content": "go"}, *messages])).upstream
    assert upstream["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t1",
                                "content": [
                                    {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}}
                                ],
                            }
                        ],
                    }
                ]
            },
            "messages.0.content.0.content.0",
        ),
        ({"container": "container_011"}, "container"),
        (
            {"tools": [{"name": "f", "input_schema": {}}, {"type": "bash_20250124", "name": "bash"}]},
            "tools.1",
        ),
    ],
)
def test_more_anthropic_only_features(fields: dict[str, Any], param: str) -> None:
    refusal = codec.parse(body(**fields)).native_only
    assert refusal is not None and refusal.status == 400 and refusal.param == param


def test_disable_parallel_tool_use_is_openais_parallel_tool_calls_false() -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    parsed = codec.parse(body(tools=tools, tool_choice={"type": "auto", "disable_parallel_tool_use": True}))
    assert parsed.native_only is None
    assert parsed.upstream["parallel_tool_calls"] is False and parsed.upstream["tool_choice"] == "auto"


def test_thinking_is_a_permission_not_a_requirement() -> None:
    # Claude Code asks for extended thinking on every request: a model without it answers anyway.
    parsed = codec.parse(body(thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048))
    assert "thinking" not in parsed.upstream
    assert parsed.upstream["max_tokens"] == 2048
