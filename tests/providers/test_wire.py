"""The typed wire models' contract, seen through the adapters: a field a provider adds
is skipped and forwarded untouched; a field StepBlend reads that has the wrong type is
a provider error (`UpstreamFormatError`), never a crash or a silently wrong answer; an
error the provider reports stays a provider-reported error, whatever its shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.providers.adapters import TokenUsage, UpstreamFormatError, UpstreamStreamError
from services.providers.adapters.anthropic import error_details as anthropic_error_details
from services.providers.adapters.anthropic_answers import EventTranslator
from services.providers.adapters.anthropic_answers import parse_completion as anthropic_completion
from services.providers.adapters.openai_compatible import OpenAICompatible, error_details, parse_completion
from services.providers.adapters.sse import SseEvent


def openai_chunk(**fields: Any) -> SseEvent:
    base: dict[str, Any] = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
    }
    return SseEvent(orjson.dumps({**base, **fields}))


def test_fields_an_openai_compatible_vendor_adds_are_forwarded_untouched() -> None:
    translator = OpenAICompatible().stream_translator("chatcmpl-r", "m", include_usage=True)
    added = {
        "service_tier": "default",
        "obfuscation": "Xq3",
        "provider": {"name": "x", "region": [1, 2]},
        "choices": [
            {
                "index": 0,
                "delta": {"content": "Hi", "reasoning_content": "so", "annotations": [{"type": "url"}]},
                "finish_reason": None,
                "native_finish_reason": 7,
            }
        ],
    }
    [out] = translator.feed(openai_chunk(**added))
    forwarded = orjson.loads(out)
    assert {k: forwarded[k] for k in ("service_tier", "obfuscation", "provider", "choices")} == {
        k: added[k] for k in ("service_tier", "obfuscation", "provider", "choices")
    }
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "completion_tokens_details": {"x": 1}}
    assert translator.feed(openai_chunk(choices=[], usage=usage)) == []
    assert translator.usage == TokenUsage(3, 1, 4, 0)


@pytest.mark.parametrize(
    "fields",
    [
        {"choices": [{"index": 0, "delta": {}, "finish_reason": 5}]},
        {"choices": ["stop"]},
        {"choices": {"index": 0}},
        {"usage": {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": "4"}}},
    ],
)
def test_an_openai_chunk_field_of_the_wrong_type_is_a_format_error(fields: dict[str, Any]) -> None:
    translator = OpenAICompatible().stream_translator("c", "m")
    with pytest.raises(UpstreamFormatError):
        translator.feed(openai_chunk(**fields))


def test_an_answer_whose_choices_are_not_a_list_is_a_format_error() -> None:
    with pytest.raises(UpstreamFormatError, match="choices"):
        parse_completion(b'{"id": "x", "choices": {"0": {}}}', "c", "m")


def test_a_usage_count_of_the_wrong_type_names_the_usage() -> None:
    translator = OpenAICompatible().stream_translator("c", "m")
    with pytest.raises(UpstreamFormatError, match="usage count out of range"):
        translator.feed(openai_chunk(choices=[], usage={"prompt_tokens": 2.5}))


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (b'{"error": {"message": "bad", "type": "x", "param": null, "code": 400}}', "bad", ""),
        (b'{"object": "error", "message": "flat", "type": "invalid_request_error"}', "flat", ""),
        (
            b'{"detail": [{"loc": ["body", "messages", 0], "msg": "Field required"}]}',
            "messages.0: Field required",
            "messages",
        ),
        (b'{"error": {"message": ["not", "a", "report"]}}', "", ""),
        (b"[1, 2]", "", ""),
    ],
)
def test_openai_error_bodies_read_what_they_say_and_never_fail(body: bytes, message: str, param: str) -> None:
    said = error_details(body)
    assert (said.message, said.param) == (message, param)


def test_an_openai_stream_error_of_any_shape_is_a_stream_error() -> None:
    translator = OpenAICompatible().stream_translator("c", "m")
    with pytest.raises(UpstreamStreamError, match="mid-stream"):
        translator.feed(SseEvent(b'{"error": {"message": 42}}'))


def test_fields_and_blocks_anthropic_adds_are_skipped() -> None:
    translator = EventTranslator("c", "m")
    start = {
        "type": "message_start",
        "message": {"type": "message", "content": [], "usage": {"input_tokens": 7, "service_tier": "standard"}},
        "trace": {"x": [1]},
    }
    assert translator.feed(SseEvent(orjson.dumps(start), "message_start")) == []
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "server_tool_use", "id": "s"}}
    assert translator.feed(SseEvent(orjson.dumps(block), "content_block_start")) == []
    citation = {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": {}}}
    assert translator.feed(SseEvent(orjson.dumps(citation), "content_block_delta")) == []
    text = {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi", "extra": 1}}
    [chunk] = translator.feed(SseEvent(orjson.dumps(text), "content_block_delta"))
    assert orjson.loads(chunk)["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert translator.usage == TokenUsage(7, 0, 7, 0)


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 5}},
        ),
        ("content_block_start", {"type": "content_block_start", "index": "0", "content_block": {"type": "text"}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": ["end_turn"]}}),
        ("message_delta", {"type": "message_delta", "delta": {}, "usage": {"output_tokens": -1}}),
        ("content_block_delta", [1, 2]),
    ],
)
def test_an_anthropic_event_field_of_the_wrong_type_is_a_format_error(name: str, payload: Any) -> None:
    with pytest.raises(UpstreamFormatError):
        EventTranslator("c", "m").feed(SseEvent(orjson.dumps(payload), name))


def test_an_event_is_read_by_its_own_type_when_the_event_name_differs() -> None:
    translator = EventTranslator("c", "m")
    error = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    with pytest.raises(UpstreamStreamError, match="Overloaded"):
        translator.feed(SseEvent(error, "content_block_delta"))


def test_an_anthropic_error_event_of_any_shape_is_a_stream_error() -> None:
    with pytest.raises(UpstreamStreamError, match="mid-stream"):
        EventTranslator("c", "m").feed(SseEvent(b'{"type": "error", "error": {"message": {"nested": 1}}}', "error"))
    with pytest.raises(UpstreamFormatError):
        EventTranslator("c", "m").feed(SseEvent(b"{not json", "error"))


def test_an_anthropic_answer_with_a_block_of_the_wrong_type_is_a_format_error() -> None:
    message = {"type": "message", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}
    with pytest.raises(UpstreamFormatError):
        anthropic_completion(orjson.dumps(message), "c", "m")


def test_anthropic_error_bodies_that_are_not_its_shape_say_nothing() -> None:
    assert anthropic_error_details(b'{"error": "plain"}').message == ""
    assert anthropic_error_details(b'{"type": "error", "error": {"type": "api_error"}}').kind == "api_error"
