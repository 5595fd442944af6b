"""The Responses codec's answers: a whole answer is a `response` the openai SDK
parses, a stream is OpenAI's semantic events in order with sequence numbers, which
the SDK's `responses.stream` accumulates into the same response."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from services.gateway.codecs.base import TokenCounts
from services.gateway.codecs.responses import ResponsesCodec
from services.gateway.errors import ApiError

codec = ResponsesCodec()
# The SDK's event types, validated strictly (the SDK itself only constructs).
EVENT: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@dataclass
class Done:
    request_id: str = "abc123"
    created: int = 1_700_000_000
    routed_model: str = "gpt-4o-mini"
    tokens: TokenCounts | None = field(default_factory=lambda: TokenCounts(12, 7, cached_prompt_tokens=2))

    def stepblend(self) -> dict[str, Any]:
        return {"routed_model": self.routed_model, "provider": "openai", "strategy_used": "force_model"}


def parse(**fields: Any) -> Any:
    return codec.parse(orjson.dumps({"model": "gpt-4o-mini", "input": "Hi"} | fields))


def completion(message: dict[str, Any], finish: str = "stop") -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        }
    )


def test_a_text_answer_is_a_response_the_sdk_parses() -> None:
    parsed = parse(instructions="Be brief.", metadata={"k": "v"}, max_output_tokens=64)
    out = orjson.loads(codec.completion(completion({"content": "Hello!"}), Done(), parsed))
    response = Response.model_validate(out)
    assert (response.id, response.object, response.status, response.model) == (
        "resp_abc123",
        "response",
        "completed",
        "gpt-4o-mini",
    )
    assert response.output_text == "Hello!" == out["output_text"]
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (12, 7, 19)
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert (response.instructions, response.metadata, response.max_output_tokens) == ("Be brief.", {"k": "v"}, 64)
    assert out["store"] is False and out["stepblend"]["provider"] == "openai"


def test_tool_calls_are_function_call_items() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
    ]
    out = codec.completion(completion({"content": None, "tool_calls": calls}, "tool_calls"), Done(), parse())
    response = Response.model_validate_json(out)
    assert [item.type for item in response.output] == ["function_call", "function_call"]
    first = response.output[0]
    assert first.type == "function_call"
    assert (first.call_id, first.name, first.arguments, first.id) == (
        "call_1",
        "weather",
        '{"city":"Paris"}',
        "fc_abc123_0",
    )
    assert response.output_text == ""


def test_running_out_of_output_budget_is_incomplete() -> None:
    out = orjson.loads(codec.completion(completion({"content": "Hel"}, "length"), Done(), parse()))
    assert (out["status"], out["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    assert out["output"][0]["status"] == "incomplete"


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else []
    return orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": choices, "usage": usage})


TEXT = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Hello"}),
    _chunk({"content": " there"}),
    _chunk({}, "stop"),
    _chunk({}, usage={"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}),
]
CALLS = [
    _chunk({"role": "assistant", "content": "Checking."}),
    _chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather"}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    _chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "weather", "arguments": "{}"}}]}),
    _chunk({}, "tool_calls"),
]


def _stream(chunks: list[bytes], **fields: Any) -> bytes:
    renderer = codec.stream(Done(), parse(stream=True, **fields))
    out = renderer.start()
    for chunk in chunks:
        out += renderer.chunks([chunk])
    return out + renderer.end()


def _events(sse: bytes) -> list[dict[str, Any]]:
    events = []
    for frame in sse.decode().strip().split("\n\n"):
        name, data = frame.split("\n")
        event = orjson.loads(data.removeprefix("data: "))
        assert name == "event: " + event["type"]
        EVENT.validate_python(event)
        events.append(event)
    return events


def test_a_text_stream_has_openais_event_order_and_sequence_numbers() -> None:
    events = _events(_stream(TEXT))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["usage"] is None
    assert "stepblend" not in events[0]["response"]
    assert events[6]["text"] == "Hello there"
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output_text"] == "Hello there"
    assert final["usage"]["input_tokens"] == 12 and final["stepblend"]["routed_model"] == "gpt-4o-mini"
    assert {e["item_id"] for e in events if "item_id" in e} == {final["output"][0]["id"]}


def test_text_then_calls_stream_one_item_each_in_order() -> None:
    events = _events(_stream(CALLS, tools=[WEATHER]))
    kinds = [e["type"] for e in events]
    assert kinds[2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1, 2]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [d["arguments"] for d in done] == ['{"city":"Paris"}', "{}"]
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["message", "function_call", "function_call"]


def _sdk(sse: bytes, **fields: Any) -> tuple[list[str], Any]:
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, content=sse, headers={"content-type": "text/event-stream"})
    )
    client = openai.OpenAI(
        api_key="sb-test", base_url="http://gateway.test", http_client=httpx2.Client(transport=transport)
    )
    with client.responses.stream(model="gpt-4o-mini", input="Hi", **fields) as stream:
        kinds = [event.type for event in stream]
        return kinds, stream.get_final_response()


def test_the_sdk_accumulates_the_stream_into_the_final_response() -> None:
    kinds, final = _sdk(_stream(CALLS, tools=[WEATHER]), tools=[WEATHER])
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.output_text == "Checking."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.arguments) for c in calls] == [("call_1", '{"city":"Paris"}'), ("call_2", "{}")]
    assert final.usage is not None and final.usage.output_tokens == 7
    assert final.model_extra is not None and final.model_extra["stepblend"]["provider"] == "openai"


def test_an_empty_answer_is_still_one_message() -> None:
    _, final = _sdk(_stream([_chunk({}, "stop")]))
    assert [item.type for item in final.output] == ["message"] and final.output_text == ""


def test_a_stream_cut_by_the_output_budget_ends_incomplete() -> None:
    events = _events(_stream([_chunk({"content": "Hel"}), _chunk({}, "length")], max_output_tokens=1))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-1]["response"]["usage"]["output_tokens"] == 7


def test_a_broken_stream_ends_with_an_error_the_sdk_raises() -> None:
    renderer = codec.stream(Done(), parse(stream=True))
    sse = renderer.start() + renderer.chunks([TEXT[1]]) + renderer.broke(ApiError(502, "upstream gone", "api_error"))
    events = _events(sse)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-2]["message"] == "upstream gone"
    with pytest.raises(openai.APIError, match="upstream gone"):
        _sdk(sse)


def test_keepalive_is_an_sse_comment_and_an_early_failure_one_error_event() -> None:
    waiting = codec.stream(Done(routed_model=""), parse(stream=True))
    assert waiting.keepalive() == b": keep-alive\n\n"
    events = _events(waiting.broke(ApiError(503, "every candidate failed", "api_error")))
    assert [(e["type"], e["sequence_number"]) for e in events] == [("error", 0)]


def test_text_after_tool_calls_is_a_second_message_the_sdk_keeps_apart() -> None:
    chunks = [*CALLS[1:5], _chunk({"content": "Done."}), _chunk({}, "stop")]
    _, final = _sdk(_stream(chunks, tools=[WEATHER]), tools=[WEATHER])
    assert [item.type for item in final.output] == ["function_call", "function_call", "message"]
    assert final.output[2].id == "msg_abc123_2" and final.output_text == "Done."


def test_a_late_piece_of_a_closed_call_still_reaches_the_final_response() -> None:
    late = _chunk({"tool_calls": [{"index": 0, "function": {"arguments": " "}}]})
    events = _events(_stream([*CALLS[1:5], late, _chunk({}, "tool_calls")]))
    assert [e["type"] for e in events].count("response.output_item.added") == 2
    assert events[-1]["response"]["output"][0]["arguments"] == '{"city":"Paris"} '
