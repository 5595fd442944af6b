"""The Responses codec's parse: every input item kind reaches the internal chat
request as a model needs it, and what a stateless, function-tools-only door cannot
serve is a 400 naming the parameter."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.gateway.codecs.responses import ResponsesCodec
from services.gateway.errors import ApiError

codec = ResponsesCodec()


def body(**fields: Any) -> bytes:
    base: dict[str, Any] = {"model": "gpt-4o-mini", "input": "Hi"}
    return orjson.dumps(base | fields)


def upstream(**fields: Any) -> dict[str, Any]:
    return codec.parse(body(**fields)).upstream


def refusal(**fields: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        codec.parse(body(**fields))
    assert caught.value.status == 400
    return caught.value


def test_a_string_input_with_instructions_is_a_system_then_user_message() -> None:
    sent = upstream(instructions="Be brief.", max_output_tokens=64, temperature=0.2, top_p=0.9, user="u-1")
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["user"]) == (64, 0.2, 0.9, "u-1")
    assert "max_output_tokens" not in sent and "instructions" not in sent and "input" not in sent


def test_message_items_with_text_and_image_parts() -> None:
    sent = upstream(
        input=[
            {"role": "developer", "content": [{"type": "input_text", "text": "Answer in French."}]},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                    {"type": "input_image", "image_url": "https://x.test/cat.png"},
                ],
            },
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
            {"role": "user", "content": "And now?"},
        ]
    )
    assert sent["messages"] == [
        {"role": "developer", "content": "Answer in French."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}},
            ],
        },
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And now?"},
    ]


def test_function_calls_and_their_outputs_are_one_assistant_turn_and_tool_messages() -> None:
    # As the SDK's function-calling loop sends it: the previous output handed back,
    # then each call's output.
    sent = upstream(
        input=[
            {"role": "user", "content": "Weather in Paris and Oslo?"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "weather", "arguments": '{"c":"P"}'},
            {"type": "function_call", "call_id": "call_b", "name": "weather", "arguments": '{"c":"O"}'},
            {"type": "function_call_output", "call_id": "call_a", "output": "Sunny"},
            {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "Rain"}]},
        ]
    )
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"c":"P"}'}},
                {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": '{"c":"O"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "Rain"},
    ]


def test_function_tools_tool_choice_and_json_schema_format() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    sent = upstream(
        tools=[{"type": "function", "name": "weather", "description": "Weather", "parameters": schema, "strict": True}],
        tool_choice={"type": "function", "name": "weather"},
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": "weather", "parameters": schema, "description": "Weather", "strict": True},
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": schema, "strict": True},
    }
    assert upstream(tool_choice="required")["tool_choice"] == "required"
    assert "response_format" not in upstream(text={"format": {"type": "text"}})


def test_stream_asks_for_usage_and_stepblend_fields_stay_home() -> None:
    parsed = codec.parse(body(stream=True, stepblend_max_cost=0.01, stepblend_strategy="fastest", store=True))
    assert parsed.request.stream and parsed.request.stepblend_max_cost is not None
    assert parsed.upstream["stream_options"] == {"include_usage": True}
    assert not [k for k in parsed.upstream if k.startswith("stepblend_") or k == "store"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"tools": [{"type": "web_search_preview"}]}, "tools.0.type"),
        ({"tools": [{"type": "function", "name": "f"}, {"type": "file_search"}]}, "tools.1.type"),
        ({"tools": [{"type": "computer_use_preview", "display_width": 1}]}, "tools.0.type"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input.0"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
            "input.0.content.0.file_id",
        ),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}]}, "input.0.content.0"),
    ],
)
def test_stateful_and_built_in_features_are_unsupported_parameters(fields: dict[str, Any], param: str) -> None:
    error = refusal(**fields)
    assert (error.code, error.param) == ("unsupported_parameter", param)
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_previous_response_id_says_what_to_do_instead() -> None:
    message = refusal(previous_response_id="resp_1").message
    assert "stateless" in message and "input" in message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": [{"type": "telepathy", "thought": "hi"}]}, "input.1.type"),
        ({"input": [{"role": "user", "content": [{"type": "input_smell"}]}]}, "input.0.content.0.type"),
        ({"input": [{"role": "robot", "content": "beep"}]}, "input.0.role"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input.0.call_id"),
        ({"input": 42}, "input"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
    ],
)
def test_malformed_input_is_a_400_naming_where(fields: dict[str, Any], param: str) -> None:
    if param == "input.1.type":
        fields = {"input": [{"role": "user", "content": "hi"}, *fields["input"]]}
    error = refusal(**fields)
    assert error.param == param and error.code is None
    assert param in error.message


def test_missing_input_or_model_and_bad_json() -> None:
    with pytest.raises(ApiError) as caught:
        codec.parse(orjson.dumps({"model": "gpt-4o"}))
    assert caught.value.param == "input"
    with pytest.raises(ApiError) as caught:
        codec.parse(orjson.dumps({"input": "hi"}))
    assert caught.value.param == "model"
    with pytest.raises(ApiError) as caught:
        codec.parse(b"{not json")
    assert caught.value.status == 400


def test_the_error_response_is_openais_shape() -> None:
    response = codec.error(refusal(previous_response_id="resp_1"))
    assert response.status_code == 400
    error = orjson.loads(bytes(response.body))["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "unsupported_parameter",
        "previous_response_id",
    )
