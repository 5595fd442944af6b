"""The Gemini translator's answers, pure: `GenerateContentResponse`s and streams of them
in, OpenAI `chat.completion`s and chunks out; error bodies read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.providers.adapters import TokenUsage, UpstreamFormatError, UpstreamStreamError
from services.providers.adapters.gemini import Gemini, error_details
from services.providers.adapters.gemini_answers import ChunkTranslator, parse_completion
from services.providers.adapters.sse import SseDecoder


def answer(parts: list[dict[str, Any]], finish: str = "STOP", **usage: int) -> bytes:
    counts = {"promptTokenCount": 10, "candidatesTokenCount": 4, "totalTokenCount": 14, **usage}
    return orjson.dumps(
        {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
            "usageMetadata": counts,
            "modelVersion": "gemini-2.5-flash",
        }
    )


def completion(data: bytes) -> tuple[dict[str, Any], TokenUsage | None]:
    body, usage = parse_completion(data, "chatcmpl-abc", "gemini-2.5-flash", created=1)
    return orjson.loads(body), usage


def test_an_answer_becomes_a_chat_completion_with_thinking_billed_as_output() -> None:
    data = answer(
        [{"text": "Weighing it.", "thought": True}, {"text": "Hello"}, {"text": " there"}],
        thoughtsTokenCount=30,
        cachedContentTokenCount=6,
        totalTokenCount=44,
    )
    got, usage = completion(data)
    assert got == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1,
        "model": "gemini-2.5-flash",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello there",
                    "refusal": None,
                    "reasoning_content": "Weighing it.",
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 34,
            "total_tokens": 44,
            "prompt_tokens_details": {"cached_tokens": 6},
        },
    }
    assert usage == TokenUsage(10, 34, 44, 6)


def test_function_calls_become_tool_calls_with_ids() -> None:
    data = answer(
        [
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "get_weather", "args": {"location": "Oslo"}, "id": "g-7"}},
        ]
    )
    got, _ = completion(data)
    choice = got["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_abc_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
            "extra_content": {"google": {"thought_signature": "c2ln"}},
        },
        {"id": "g-7", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Oslo"}'}},
    ]


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
     ("PROHIBITED_CONTENT", "content_filter"), ("MALFORMED_FUNCTION_CALL", "stop"), ("SOMETHING_NEW", "stop")],
)  # fmt: skip
def test_finish_reasons(finish: str, expected: str) -> None:
    got, _ = completion(answer([{"text": "x"}], finish))
    assert got["choices"][0]["finish_reason"] == expected


def test_a_blocked_prompt_is_a_content_filter_finish() -> None:
    data = orjson.dumps(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}}
    )
    got, usage = completion(data)
    assert got["choices"][0]["finish_reason"] == "content_filter"
    assert got["choices"][0]["message"]["content"] is None
    assert usage == TokenUsage(8, 0, 8, 0)


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b"{}", b'{"candidates": [], "usageMetadata": {"promptTokenCount": -1}}',
     b'{"usageMetadata": {"candidatesTokenCount": "5"}}'],
)  # fmt: skip
def test_what_is_not_gemini_is_a_format_error(data: bytes) -> None:
    with pytest.raises(UpstreamFormatError):
        completion(data)


def stream_of(*chunks: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(chunk) + b"\r\n\r\n" for chunk in chunks)


def translate(raw: bytes, include_usage: bool = False) -> tuple[list[dict[str, Any]], ChunkTranslator]:
    translator = Gemini().stream_translator("chatcmpl-abc", "gemini-2.5-flash", created=1, include_usage=include_usage)
    decoder = SseDecoder()
    out: list[dict[str, Any]] = []
    # Split anywhere: the decoder reassembles events.
    for i in range(0, len(raw), 7):
        for event in decoder.feed(raw[i : i + 7]):
            out.extend(orjson.loads(chunk) for chunk in translator.feed(event))
    for event in decoder.finish():
        out.extend(orjson.loads(chunk) for chunk in translator.feed(event))
    # As the executor does once the stream has ended: the finish chunk held back.
    out.extend(orjson.loads(chunk) for chunk in translator.close())
    return out, translator


def candidate_chunk(parts: list[dict[str, Any]], finish: str | None = None, output: int = 1) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    usage = {"promptTokenCount": 9, "candidatesTokenCount": output, "thoughtsTokenCount": 20}
    return {"candidates": [cand], "usageMetadata": usage}


def test_a_stream_becomes_chunks_with_the_last_usage() -> None:
    raw = stream_of(
        candidate_chunk([{"text": "Hel"}]),
        candidate_chunk([{"text": "lo"}], output=2),
        candidate_chunk([{"text": ""}], "STOP", output=3),
    )
    got, translator = translate(raw, include_usage=True)
    deltas = [c["choices"][0]["delta"] for c in got]
    assert deltas == [{"role": "assistant", "content": "Hel"}, {"content": "lo"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in got] == [None, None, "stop"]
    assert all(c["usage"] is None and c["id"] == "chatcmpl-abc" for c in got)
    assert translator.complete and not translator.ended
    assert translator.usage == TokenUsage(9, 23, 32, 0)


def test_streamed_function_calls_are_whole_tool_calls_under_their_index() -> None:
    call = {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "c2ln"}
    other = {"functionCall": {"name": "get_weather", "args": {"location": "Oslo"}}}
    got, _ = translate(stream_of(candidate_chunk([call]), candidate_chunk([other], "STOP")))
    assert [c["choices"][0]["delta"] for c in got] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_abc_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    "extra_content": {"google": {"thought_signature": "c2ln"}},
                }
            ],
        },
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_abc_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Oslo"}'},
                }
            ]
        },
        {},
    ]
    assert got[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all("usage" not in c for c in got)


def test_a_stream_cut_before_its_finish_is_incomplete() -> None:
    _, translator = translate(stream_of(candidate_chunk([{"text": "Hel"}])))
    assert not translator.complete
    assert translator.usage == TokenUsage(9, 21, 30, 0)


@pytest.mark.parametrize(
    ("status", "kind"), [("RESOURCE_EXHAUSTED", "rate_limit_error"), ("UNAVAILABLE", "UNAVAILABLE")]
)
def test_an_error_in_the_stream_is_raised_with_its_kind(status: str, kind: str) -> None:
    raw = stream_of(
        candidate_chunk([{"text": "Hel"}]), {"error": {"code": 503, "message": "overloaded", "status": status}}
    )
    with pytest.raises(UpstreamStreamError) as err:
        translate(raw)
    assert (err.value.kind, err.value.message) == (kind, "overloaded")


def test_error_bodies_say_their_reason_and_status() -> None:
    invalid_key = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        }
    }
    said = error_details(orjson.dumps(invalid_key))
    assert (said.message, said.code, said.kind) == (
        "API key not valid. Please pass a valid API key.",
        "api_key_invalid",
        "INVALID_ARGUMENT",
    )
    limited = error_details(b'{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}')
    assert (limited.code, limited.kind) == ("resource_exhausted", "RESOURCE_EXHAUSTED")
    assert error_details(b"<html>Bad gateway</html>").message == "<html>Bad gateway</html>"
    assert error_details(b'{"detail": "x"}').message == ""
