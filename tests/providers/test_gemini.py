"""The Gemini translator, pure: OpenAI bodies in, `generateContent` bodies out; Gemini
answers and streams in, OpenAI objects out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.providers.adapters import RequestRefused, TokenUsage, UpstreamFormatError, UpstreamStreamError
from services.providers.adapters.gemini import Gemini, Quirks, build_request, error_details
from services.providers.adapters.gemini_answers import ChunkTranslator, parse_completion
from services.providers.adapters.sse import SseDecoder
from services.providers.vendors import load_vendors
from tests.providers.conftest import candidate

FLASH = candidate("gemini", "gemini-2.5-flash", "gemini-2.5-flash")
USER = {"role": "user", "content": "Hi"}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather at a place",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}


def sent(body: dict[str, Any], stream: bool = False, **fields: Any) -> dict[str, Any]:
    cand = candidate("gemini", "gemini-2.5-flash", "gemini-2.5-flash", **fields)
    request = build_request({"model": "gemini-2.5-flash", **body}, cand, stream)
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    assert request.path == f"/v1beta/models/gemini-2.5-flash:{method}"
    result: dict[str, Any] = orjson.loads(request.content)
    return result


def refused(body: dict[str, Any]) -> RequestRefused:
    with pytest.raises(RequestRefused) as err:
        sent(body)
    return err.value


def test_a_minimal_request() -> None:
    assert sent({"messages": [USER]}) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_the_model_is_in_the_path_escaped() -> None:
    request = build_request({"messages": [USER]}, candidate("gemini", "m", "../x?y"), False)
    assert request.path == "/v1beta/models/..%2Fx%3Fy:generateContent"


def test_the_vendor_row_speaks_gemini_with_the_key_in_x_goog_api_key() -> None:
    vendor = load_vendors()["gemini"]
    assert vendor.url("/v1beta") == "https://generativelanguage.googleapis.com/v1beta"
    assert vendor.adapter.auth_headers("AIza-secret") == {"x-goog-api-key": "AIza-secret"}
    with pytest.raises(ValueError, match="unknown quirks"):
        Quirks.parse({"default_max_tokens": 5})


def test_system_and_developer_messages_become_the_system_instruction() -> None:
    out = sent(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                USER,
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            ]
        }
    )
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}
    assert out["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


def test_assistant_turns_are_model_turns_and_same_role_turns_merge() -> None:
    out = sent(
        {
            "messages": [
                USER,
                {"role": "user", "content": [{"type": "text", "text": "Still there?"}, {"type": "text", "text": ""}]},
                {"role": "assistant", "content": "Yes."},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "Good."},
            ]
        }
    )
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}, {"text": "Still there?"}]},
        {"role": "model", "parts": [{"text": "Yes."}]},
        {"role": "user", "parts": [{"text": "Good."}]},
    ]


def test_a_base64_image_becomes_inline_data() -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}", "detail": "low"}}
    out = sent({"messages": [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}]})
    assert out["contents"][0]["parts"] == [
        {"text": "What is it?"},
        {"inlineData": {"mimeType": "image/jpeg", "data": PNG}},
    ]


@pytest.mark.parametrize(
    ("part", "says"),
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, "base64 data URLs"),
        ({"type": "image_url", "image_url": {"url": f"data:image/gif;base64,{PNG}"}}, "image/gif is not supported"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "'input_audio' is not supported"),
    ],
)
def test_what_gemini_cannot_take_inline_is_refused_naming_the_part(part: dict[str, Any], says: str) -> None:
    error = refused({"messages": [{"role": "user", "content": [part]}]})
    assert says in error.message and error.param == "messages[0].content[0]"


def test_tool_calls_and_results_go_both_ways_with_the_thought_signature() -> None:
    signed = {**CALL, "extra_content": {"google": {"thought_signature": "c2ln"}}}
    second = {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    out = sent(
        {
            "messages": [
                USER,
                {"role": "assistant", "content": None, "tool_calls": [signed, second]},
                {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21}'},
            ]
        }
    )
    assert out["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "c2ln"},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            # Both results in one turn, each under the name of the call it answers.
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_time", "response": {"result": "12:00"}}},
                {"functionResponse": {"name": "get_weather", "response": {"temperature": 21}}},
            ],
        },
    ]


def test_a_tool_result_answering_no_call_is_refused() -> None:
    error = refused({"messages": [USER, {"role": "tool", "tool_call_id": "call_9", "content": "x"}]})
    assert error.param == "messages[1].tool_call_id" and "answers no tool call" in error.message


def test_tools_become_function_declarations_and_tool_choice_a_calling_mode() -> None:
    no_args = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    out = sent({"messages": [USER], "tools": [WEATHER, no_args], "tool_choice": "required"})
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather at a place",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"location": {"type": "STRING"}},
                        "required": ["location"],
                    },
                },
                # Gemini refuses an OBJECT without properties.
                {"name": "now"},
            ]
        }
    ]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert sent({"messages": [USER], "tools": [WEATHER], "tool_choice": named})["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert sent({"messages": [USER], "tools": [WEATHER], "tool_choice": "none"})["toolConfig"] == {
        "functionCallingConfig": {"mode": "NONE"}
    }
    assert "toolConfig" not in sent({"messages": [USER], "tool_choice": "auto"})
    assert refused({"messages": [USER], "tool_choice": "required"}).param == "tool_choice"


def test_generation_parameters_go_to_generation_config() -> None:
    out = sent(
        {
            "messages": [USER],
            "max_completion_tokens": 300,
            "stop": ["\n\n", ""],
            "temperature": 1.5,
            "top_p": 0.9,
            "top_k": 40,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.2,
            "reasoning_effort": "low",
            "user": "u-1",
            "store": True,
            "stream_options": {"include_usage": True},
            "stepblend_strategy": "balanced",
        }
    )
    assert out["generationConfig"] == {
        "maxOutputTokens": 300,
        "stopSequences": ["\n\n"],
        "temperature": 1.5,
        "topP": 0.9,
        "topK": 40,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": 0.2,
        "thinkingConfig": {"thinkingBudget": 1024},
    }
    assert set(out) == {"contents", "generationConfig"}


def test_a_cost_cap_budget_bounds_the_output() -> None:
    assert sent({"messages": [USER]}, output_budget=512)["generationConfig"] == {"maxOutputTokens": 512}
    assert sent({"messages": [USER], "max_tokens": 100}, output_budget=512)["generationConfig"] == {
        "maxOutputTokens": 100
    }


def test_json_schema_becomes_a_response_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "where"},
            "when": {"type": ["string", "null"], "format": "date-time"},
            "unit": {"$ref": "#/$defs/Unit"},
            "email": {"type": "string", "format": "email"},
            "tags": {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
        },
        "required": ["city", "when", "unit", "email", "tags"],
        "additionalProperties": False,
        "$defs": {"Unit": {"type": "string", "enum": ["C", "F"]}},
    }
    format_ = {"type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": schema}}
    config = sent({"messages": [USER], "response_format": format_})["generationConfig"]
    assert config == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {
                "city": {"type": "STRING", "description": "where"},
                "when": {"type": "STRING", "nullable": True, "format": "date-time"},
                "unit": {"type": "STRING", "enum": ["C", "F"]},
                "email": {"type": "STRING"},
                "tags": {"type": "ARRAY", "items": {"type": "INTEGER", "nullable": True}},
            },
            "propertyOrdering": ["city", "when", "unit", "email", "tags"],
            "required": ["city", "when", "unit", "email", "tags"],
        },
    }
    assert sent({"messages": [USER], "response_format": {"type": "json_object"}})["generationConfig"] == {
        "responseMimeType": "application/json"
    }
    assert "generationConfig" not in sent({"messages": [USER], "response_format": {"type": "text"}})


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}, "'multipleOf'"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "'additionalProperties'"),
        ({"type": "integer", "enum": [1, 2]}, "enums of strings only"),
        (
            {
                "$ref": "#/$defs/Node",
                "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
            },
            "recursive",
        ),
        ({"$ref": "https://example.com/schema.json"}, "'$ref'"),
    ],
)
def test_a_schema_gemini_cannot_express_is_refused(schema: dict[str, Any], says: str) -> None:
    format_ = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    error = refused({"messages": [USER], "response_format": format_})
    assert says in error.message and error.param == "response_format.json_schema.schema"


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 2), ("logprobs", True), ("logit_bias", {"1": 1}), ("parallel_tool_calls", False), ("audio", {})],
)
def test_what_gemini_lacks_is_refused_unless_inert(field: str, value: Any) -> None:
    error = refused({"messages": [USER], field: value})
    assert (error.param, error.code) == (field, "unsupported_parameter")


def test_openai_defaults_are_dropped() -> None:
    assert sent({"messages": [USER], "n": 1, "logprobs": False, "parallel_tool_calls": True}) == sent(
        {"messages": [USER]}
    )


def test_a_reasoning_effort_gemini_has_no_budget_for_is_refused() -> None:
    assert refused({"messages": [USER], "reasoning_effort": "extreme"}).param == "reasoning_effort"
    assert sent({"messages": [USER], "reasoning_effort": "none"})["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 0}
    }


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
