"""The Anthropic translator, pure: OpenAI bodies in, Messages API bodies out;
Anthropic answers and recorded streams in, OpenAI objects out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from services.providers.adapters import (
    RequestRefused,
    TokenUsage,
    UpstreamFormatError,
    UpstreamStreamError,
)
from services.providers.adapters.anthropic import (
    Anthropic,
    Quirks,
    build_request,
    error_details,
)
from services.providers.adapters.anthropic_answers import (
    EventTranslator,
    parse_completion,
)
from services.providers.adapters.sse import SseDecoder, SseEvent
from tests.providers.conftest import candidate

STREAMS = Path(__file__).with_name("streams")
CLAUDE = candidate("anthropic", "claude-3-5-sonnet", "claude-3-5-sonnet-20241022")
USER = {"role": "user", "content": "Hi"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather at a place",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


DEFAULT = Quirks()


def sent(body: dict[str, Any], stream: bool = False, quirks: Quirks = DEFAULT, **fields: Any) -> dict[str, Any]:
    cand = candidate("anthropic", "claude-3-5-sonnet", "claude-3-5-sonnet-20241022", **fields)
    request = build_request({"model": "claude-3-5-sonnet", **body}, cand, stream, quirks)
    assert request.path == "/v1/messages"
    result: dict[str, Any] = orjson.loads(request.content)
    return result


def test_a_minimal_request() -> None:
    assert sent({"messages": [USER]}) == {
        "model": "claude-3-5-sonnet-20241022",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": 4096,
    }


def test_system_and_developer_messages_become_system() -> None:
    out = sent(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                USER,
            ]
        }
    )
    assert out["system"] == "Be brief.\n\nAnswer in French."
    assert [m["role"] for m in out["messages"]] == ["user"]


def test_cache_control_keeps_system_as_blocks() -> None:
    marked = {"type": "text", "text": "Long context", "cache_control": {"type": "ephemeral"}}
    out = sent({"messages": [{"role": "system", "content": [marked]}, USER]})
    assert out["system"] == [marked]


def test_consecutive_turns_of_one_role_are_merged() -> None:
    out = sent(
        {
            "messages": [
                {"role": "user", "content": "One"},
                {"role": "user", "content": "Two"},
                {"role": "assistant", "content": "Three"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "Four"},
            ]
        }
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "One"}, {"type": "text", "text": "Two"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Three"}]},
        {"role": "user", "content": [{"type": "text", "text": "Four"}]},
    ]


def test_images_from_data_urls_and_http_urls() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,/9j/4AAQ"}},
    ]
    blocks = sent({"messages": [{"role": "user", "content": content}]})["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    assert blocks[3]["source"]["media_type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}, "messages[0].content[0]"),
        ({"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}}, "messages[0].content[0]"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "messages[0].content[0]"),
    ],
)
def test_unsupported_content_is_refused_naming_it(part: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestRefused) as refused:
        sent({"messages": [{"role": "user", "content": [part]}]})
    assert refused.value.param == param


def test_max_tokens_always_sent() -> None:
    assert sent({"messages": [USER], "max_tokens": 50})["max_tokens"] == 50
    assert sent({"messages": [USER], "max_completion_tokens": 60})["max_tokens"] == 60
    assert sent({"messages": [USER]}, output_budget=300)["max_tokens"] == 300
    assert sent({"messages": [USER]}, quirks=Quirks(default_max_tokens=1024))["max_tokens"] == 1024
    with pytest.raises(RequestRefused):
        sent({"messages": [USER], "max_tokens": 0})


def test_sampling_and_stop() -> None:
    out = sent({"messages": [USER], "temperature": 0.3, "top_p": 0.9, "stop": "END", "top_k": 5})
    assert (out["temperature"], out["top_p"], out["stop_sequences"], out["top_k"]) == (0.3, 0.9, ["END"], 5)
    assert sent({"messages": [USER], "stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]
    with pytest.raises(RequestRefused) as refused:
        sent({"messages": [USER], "temperature": 1.5})
    assert refused.value.param == "temperature"


def test_tools_and_tool_choice() -> None:
    out = sent({"messages": [USER], "tools": [WEATHER]})
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather at a place",
            "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
        }
    ]
    assert "tool_choice" not in out
    choices = {
        "auto": {"type": "auto"},
        "none": {"type": "none"},
        "required": {"type": "any"},
    }
    for given, expected in choices.items():
        assert sent({"messages": [USER], "tools": [WEATHER], "tool_choice": given})["tool_choice"] == expected
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert sent({"messages": [USER], "tools": [WEATHER], "tool_choice": named})["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
    }
    serial = sent({"messages": [USER], "tools": [WEATHER], "parallel_tool_calls": False})
    assert serial["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    # Anthropic refuses tool_choice without tools; "auto" then means nothing.
    assert "tool_choice" not in sent({"messages": [USER], "tool_choice": "auto"})
    with pytest.raises(RequestRefused):
        sent({"messages": [USER], "tool_choice": "required"})


def test_tool_call_history_becomes_tool_use_and_tool_result() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
    }
    out = sent(
        {
            "messages": [
                USER,
                {"role": "assistant", "content": "Checking.", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
                {"role": "user", "content": "And tomorrow?"},
            ],
            "tools": [WEATHER],
        }
    )
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
        ],
    }
    # The tool result and the next user text share one user turn, the result first.
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "text", "text": "And tomorrow?"},
        ],
    }
    with pytest.raises(RequestRefused):
        bad = {**call, "function": {"name": "get_weather", "arguments": "{not json"}}
        sent({"messages": [USER, {"role": "assistant", "tool_calls": [bad]}]})


def test_parameters_anthropic_lacks_are_refused_unless_inert() -> None:
    for param, value in [
        ("n", 2),
        ("logprobs", True),
        ("logit_bias", {"50256": -100}),
        ("presence_penalty", 0.5),
        ("response_format", {"type": "json_object"}),
    ]:
        with pytest.raises(RequestRefused) as refused:
            sent({"messages": [USER], param: value})
        assert (refused.value.param, refused.value.code) == (param, "unsupported_parameter")
    out = sent(
        {
            "messages": [USER],
            "n": 1,
            "logprobs": False,
            "presence_penalty": 0,
            "response_format": {"type": "text"},
            "seed": 7,
            "store": True,
            "stream_options": {"include_usage": True},
            "some_openai_only_field": 1,
            "stepblend_max_cost": 0.1,
            "user": "user-42",
        }
    )
    assert set(out) == {"model", "messages", "max_tokens", "metadata"}
    assert out["metadata"] == {"user_id": "user-42"}


def test_catalog_refusals_apply() -> None:
    with pytest.raises(RequestRefused) as refused:
        sent({"messages": [USER], "top_p": 0.5}, unsupported_params=["top_p"])
    assert refused.value.param == "top_p"


def test_stream_flag_and_auth_headers() -> None:
    assert sent({"messages": [USER], "stream": True}, stream=True)["stream"] is True
    assert "stream" not in sent({"messages": [USER], "stream": True})
    assert Anthropic().auth_headers("sk-ant-x") == {"x-api-key": "sk-ant-x", "anthropic-version": "2023-06-01"}


def test_completion_with_text_and_tool_use() -> None:
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20241022",
        "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 20,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 100,
        },
    }
    out, usage = parse_completion(orjson.dumps(message), "chatcmpl-r1", "claude-3-5-sonnet", created=42)
    obj = orjson.loads(out)
    assert (obj["id"], obj["object"], obj["model"], obj["created"]) == (
        "chatcmpl-r1",
        "chat.completion",
        "claude-3-5-sonnet",
        42,
    )
    choice = obj["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    [call] = choice["message"]["tool_calls"]
    assert (call["id"], call["type"], call["function"]["name"]) == ("toolu_01", "function", "get_weather")
    assert orjson.loads(call["function"]["arguments"]) == {"location": "Paris"}
    assert usage == TokenUsage(prompt_tokens=115, completion_tokens=20, total_tokens=135, cached_prompt_tokens=100)
    assert obj["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    message = {"type": "message", "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason, "usage": {}}
    out, _ = parse_completion(orjson.dumps(message), "c", "m")
    assert orjson.loads(out)["choices"][0]["finish_reason"] == finish


def test_an_answer_that_is_not_a_message_is_a_format_error() -> None:
    with pytest.raises(UpstreamFormatError):
        parse_completion(b'{"type": "error"}', "c", "m")


def replay(name: str, include_usage: bool = False) -> tuple[list[dict[str, Any]], EventTranslator]:
    translator = EventTranslator("chatcmpl-r1", "claude-3-5-sonnet", created=7, include_usage=include_usage)
    decoder = SseDecoder()
    raw = (STREAMS / name).read_bytes()
    chunks = [orjson.loads(c) for event in decoder.feed(raw) + decoder.finish() for c in translator.feed(event)]
    return chunks, translator


def test_recorded_text_stream() -> None:
    chunks, translator = replay("anthropic_text.sse")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello!"
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all(
        (c["id"], c["object"], c["model"], c["created"])
        == ("chatcmpl-r1", "chat.completion.chunk", "claude-3-5-sonnet", 7)
        for c in chunks
    )
    assert all("usage" not in c for c in chunks)
    assert translator.usage == TokenUsage(25, 15, 40, 0)
    assert translator.complete and translator.ended


def test_recorded_tool_stream_indexes_tool_calls_not_content_blocks() -> None:
    chunks, translator = replay("anthropic_tool_use.sse", include_usage=True)
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk["choices"][0]["delta"].get("tool_calls") or []:
            call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.get("id") or ""
            call["name"] += (delta.get("function") or {}).get("name") or ""
            call["arguments"] += (delta.get("function") or {}).get("arguments") or ""
    # The text block is Anthropic content index 0, the tool_use blocks 1 and 2:
    # OpenAI tool-call indexes count tool calls only, so 0 and 1 (LiteLLM #5231).
    assert sorted(calls) == [0, 1]
    assert calls[0]["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6" and calls[0]["name"] == "get_weather"
    assert orjson.loads(calls[0]["arguments"]) == {"location": "San Francisco, CA"}
    assert orjson.loads(calls[1]["arguments"]) == {"zone": "America/Los_Angeles"}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).startswith("Okay, let's")
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all("usage" in c and c["usage"] is None for c in chunks)
    # input 472 + cache creation 100 + cache read 300
    assert translator.usage == TokenUsage(872, 89, 961, 300)


def test_stream_starting_with_a_tool_call() -> None:
    translator = EventTranslator("c", "m")
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
    }
    [chunk] = translator.feed(SseEvent(orjson.dumps(start), "content_block_start"))
    delta = orjson.loads(chunk)["choices"][0]["delta"]
    assert delta == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": ""}}],
    }


def test_stream_error_event_raises_with_its_type() -> None:
    translator = EventTranslator("c", "m")
    error = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    with pytest.raises(UpstreamStreamError) as raised:
        translator.feed(SseEvent(error, "error"))
    assert (raised.value.kind, raised.value.message) == ("overloaded_error", "Overloaded")


def test_unknown_events_and_blocks_are_skipped_and_newer_usage_is_read() -> None:
    translator = EventTranslator("c", "m")
    assert translator.feed(SseEvent(b'{"type": "some_future_event", "x": 1}')) == []
    start = b'{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}'
    assert translator.feed(SseEvent(start)) == []
    thinking = b'{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hmm"}}'
    [chunk] = translator.feed(SseEvent(thinking))
    assert orjson.loads(chunk)["choices"][0]["delta"] == {"role": "assistant", "reasoning_content": "Hmm"}
    signature = b'{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"abc"}}'
    assert translator.feed(SseEvent(signature)) == []
    delta = (
        b'{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},'
        b'"usage":{"input_tokens":12,"cache_read_input_tokens":3,"output_tokens":9}}'
    )
    [finish] = translator.feed(SseEvent(delta))
    assert orjson.loads(finish)["choices"][0]["finish_reason"] == "length"
    assert translator.usage == TokenUsage(15, 9, 24, 3)
    assert translator.complete and not translator.ended


def test_error_details() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}'
    said = error_details(body)
    assert (said.message, said.kind, said.code) == ("Overloaded", "overloaded_error", "overloaded_error")
    assert error_details(b"<html>bad gateway</html>").message == "<html>bad gateway</html>"
