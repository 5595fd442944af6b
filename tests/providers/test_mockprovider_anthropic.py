"""The mock speaks Anthropic's Messages API as documented, and each vendor's
variant of OpenAI's wire format (read back by the real OpenAI SDK)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.providers.conftest import REJECTED_KEY, Mock

HEADERS = {"x-api-key": "sk-ant-test-000000000000", "anthropic-version": "2023-06-01"}
BODY: dict[str, Any] = {
    "model": "claude-3-5-haiku-20241022",
    "max_tokens": 100,
    "system": "Be brief.",
    "messages": [{"role": "user", "content": "What is the weather?"}],
}
TOOLS = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]


async def post(mock: Mock, body: Any, headers: dict[str, str] = HEADERS) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(mock.running.url + "/v1/messages", json=body, headers=headers)


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs, checking the framing as it goes."""
    events = []
    for frame in response.text.split("\n\n"):
        if not frame:
            continue
        name_line, data_line = frame.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        events.append((name_line[7:], orjson.loads(data_line[6:])))
    return events


async def test_message(mock: Mock) -> None:
    response = await post(mock, BODY)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"].startswith("req_")
    message = response.json()
    assert message["id"].startswith("msg_")
    assert (message["type"], message["role"], message["model"]) == ("message", "assistant", BODY["model"])
    assert message["content"] == [{"type": "text", "text": "Hello! You said: What is the weather?"}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("end_turn", None)
    assert set(message["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }
    assert message["usage"]["output_tokens"] == 7


async def test_stream_follows_the_documented_event_sequence(mock: Mock) -> None:
    response = await post(mock, {**BODY, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert (start["content"], start["stop_reason"], start["usage"]["output_tokens"]) == ([], None, 1)
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "Hello! You said: What is the weather?"
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 7},
    }


async def test_streamed_tool_use_after_a_text_block(mock: Mock) -> None:
    await mock.behave(model=BODY["model"], tool_calls=2)
    events = sse(await post(mock, {**BODY, "stream": True, "tools": TOOLS}))
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["text", "tool_use", "tool_use"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert starts[1]["content_block"]["input"] == {} and starts[1]["content_block"]["id"].startswith("toolu_")
    for index, city in ((1, "Paris"), (2, "London")):
        fragments = [
            d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["index"] == index
        ]
        assert all(
            d["delta"]["type"] == "input_json_delta"
            for n, d in events
            if n == "content_block_delta" and d["index"] == index
        )
        assert len(fragments) > 2 and orjson.loads("".join(fragments)) == {"location": city}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_forced_tool_has_no_text_block(mock: Mock) -> None:
    message = (await post(mock, {**BODY, "tools": TOOLS, "tool_choice": {"type": "any"}})).json()
    assert [b["type"] for b in message["content"]] == ["tool_use"]
    assert message["content"][0]["input"] == {"location": "Paris"}


@pytest.mark.parametrize(
    ("headers", "body", "status", "kind", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, BODY, 401, "authentication_error", "x-api-key header is required"),
        ({**HEADERS, "x-api-key": REJECTED_KEY}, BODY, 401, "authentication_error", "invalid x-api-key"),
        ({"x-api-key": "sk-ant-x"}, BODY, 400, "invalid_request_error", "anthropic-version: header is required"),
        (HEADERS, {**BODY, "n": 1}, 400, "invalid_request_error", "n: Extra inputs are not permitted"),
        (
            HEADERS,
            {k: v for k, v in BODY.items() if k != "max_tokens"},
            400,
            "invalid_request_error",
            "max_tokens: Field required",
        ),
        (
            HEADERS,
            {**BODY, "temperature": 1.5},
            400,
            "invalid_request_error",
            "temperature: Input should be less than or equal to 1",
        ),
        (
            HEADERS,
            {**BODY, "messages": [{"role": "user", "content": ""}]},
            400,
            "invalid_request_error",
            "messages: text content blocks must be non-empty",
        ),
    ],
)
async def test_refusals_in_anthropic_shape(
    mock: Mock, headers: dict[str, str], body: dict[str, Any], status: int, kind: str, message: str
) -> None:
    response = await post(mock, body, headers)
    assert response.status_code == status
    error = response.json()
    assert error["type"] == "error" and error["request_id"].startswith("req_")
    assert error["error"] == {"type": kind, "message": message}


async def test_tool_results_must_answer_the_previous_tool_use(mock: Mock) -> None:
    orphan = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "18C"}]}
    response = await post(mock, {**BODY, "messages": [orphan]})
    assert response.status_code == 400
    assert "unexpected `tool_use_id`" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, "rate_limit_error"), (500, "api_error"), (529, "overloaded_error"), (403, "permission_error")],
)
async def test_behaviour_status_in_anthropic_shape(mock: Mock, status: int, kind: str) -> None:
    await mock.behave(model=BODY["model"], status=status)
    response = await post(mock, BODY)
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind


async def test_error_event_mid_stream(mock: Mock) -> None:
    await mock.behave(model=BODY["model"], break_after_chunks=4, stream_error="overloaded_error")
    events = sse(await post(mock, {**BODY, "stream": True}))
    assert [n for n, _ in events] == ["message_start", "content_block_start", "ping", "content_block_delta", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


async def test_requests_are_recorded(mock: Mock) -> None:
    await post(mock, BODY)
    [seen] = await mock.requests()
    assert seen["path"] == "/v1/messages" and seen["headers"]["x-api-key"] == HEADERS["x-api-key"]
    assert seen["body"] == BODY and seen["stream"] is False


@pytest.mark.parametrize(
    "flavour",
    ["groq", "deepseek", "mistral", "together", "xai", "fireworks", "cerebras", "openrouter", "perplexity", "local"],
)
async def test_vendor_flavours_are_openai_wire_for_the_sdk(mock: Mock, flavour: str) -> None:
    sdk = openai.AsyncOpenAI(base_url=f"{mock.running.url}/{flavour}/v1", api_key="sk-test-0000000000", max_retries=0)
    async with sdk:
        stream = await sdk.chat.completions.create(
            model="deepseek-reasoner" if flavour == "deepseek" else "m",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
        )
        got = [chunk async for chunk in stream]
        response = await sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "Hello! You said: Hi"
    assert response.choices[0].message.content == "Hello! You said: Hi"
    assert response.usage is not None and response.usage.completion_tokens == 4


async def test_flavour_quirks_on_the_wire(mock: Mock) -> None:
    async with httpx.AsyncClient(base_url=mock.running.url, headers={"authorization": "Bearer sk-x"}) as http:
        asked = {
            "model": "m",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        mistral = await http.post("/mistral/v1/chat/completions", json=asked)
        assert mistral.status_code == 422
        assert mistral.json()["message"]["detail"][0]["loc"] == ["body", "stream_options"]
        unasked = {k: v for k, v in asked.items() if k != "stream_options"}
        chunks = [
            orjson.loads(line[6:])
            for line in (await http.post("/mistral/v1/chat/completions", json=unasked)).text.split("\n\n")
            if line.startswith("data: {")
        ]
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] == 4
        groq = [
            orjson.loads(line[6:])
            for line in (await http.post("/groq/v1/chat/completions", json=unasked)).text.split("\n\n")
            if line.startswith("data: {")
        ]
        assert "usage" not in groq[-1] and groq[-1]["x_groq"]["usage"]["completion_tokens"] == 4
        refused = await http.post("/groq/v1/chat/completions", json={**unasked, "logprobs": True})
        assert refused.status_code == 400
        xai = [
            orjson.loads(line[6:])
            for line in (await http.post("/xai/v1/chat/completions", json=asked)).text.split("\n\n")
            if line.startswith("data: {")
        ]
        assert xai[-1]["choices"] == [] and "usage" not in xai[-1]
        assert xai[-2]["usage"]["completion_tokens"] == 4


async def test_the_official_anthropic_sdk_reads_the_mock(mock: Mock) -> None:
    import anthropic  # a test dependency: the official SDK is the judge of the wire format

    client = anthropic.AsyncAnthropic(base_url=mock.running.url, api_key="sk-ant-test-000000000000", max_retries=0)
    message = await client.messages.create(**BODY)
    assert message.content[0].text == "Hello! You said: What is the weather?"
    async with client.messages.stream(**{**BODY, "tools": TOOLS}) as stream:
        final = await stream.get_final_message()
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"location": "Paris"}
    with pytest.raises(anthropic.AuthenticationError):
        await anthropic.AsyncAnthropic(base_url=mock.running.url, api_key=REJECTED_KEY, max_retries=0).messages.create(
            **BODY
        )
