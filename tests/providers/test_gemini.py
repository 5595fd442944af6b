"""The Gemini translator's requests, pure: OpenAI bodies in, `generateContent` bodies
out (answers: test_gemini_answers)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.providers.adapters import RequestRefused
from services.providers.adapters.gemini import Gemini, Quirks, build_request
from services.providers.adapters.gemini_embeddings import GeminiEmbeddings
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


def test_embeddings_take_the_vendors_api_version_and_escape_the_model() -> None:
    body = {"input": ["Hi"]}
    default = GeminiEmbeddings(Gemini()).build_request(body, candidate("gemini", "m", "../x?y"), False)
    assert default.path == "/v1beta/models/..%2Fx%3Fy:batchEmbedContents"
    v1 = GeminiEmbeddings(Gemini(Quirks(version="v1"))).build_request(body, candidate("gemini", "m", "e"), False)
    assert v1.path == "/v1/models/e:batchEmbedContents"


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
