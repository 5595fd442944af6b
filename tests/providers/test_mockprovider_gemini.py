"""The mock speaks Gemini's `generateContent` and `streamGenerateContent?alt=sse` as
ai.google.dev/api/generate-content documents them, and refuses what the real API
refuses where a translator can get it wrong."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from stepblend.mockprovider.gemini_wire import SIGNATURE
from tests.providers.conftest import REJECTED_KEY, Mock

HEADERS = {"x-goog-api-key": "AIza-test-0000000000000000"}
MODEL = "gemini-2.5-flash"
BODY: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "contents": [{"role": "user", "parts": [{"text": "What is the weather?"}]}],
}
TOOLS = [
    {
        "functionDeclarations": [
            {"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}}}
        ]
    }
]


async def post(
    mock: Mock, body: Any, *, stream: bool = False, headers: dict[str, str] = HEADERS, query: str = "?alt=sse"
) -> httpx.Response:
    method = f"streamGenerateContent{query}" if stream else "generateContent"
    async with httpx.AsyncClient() as http:
        return await http.post(f"{mock.running.url}/v1beta/models/{MODEL}:{method}", json=body, headers=headers)


def frames(response: httpx.Response) -> list[dict[str, Any]]:
    """Each SSE event's data, checking Google's CRLF framing as it goes."""
    assert response.headers["content-type"].startswith("text/event-stream")
    raw = response.text
    assert raw.endswith("\r\n\r\n")
    return [orjson.loads(frame.removeprefix("data: ")) for frame in raw.split("\r\n\r\n") if frame]


async def test_generate_content(mock: Mock) -> None:
    response = await post(mock, BODY)
    assert response.status_code == 200
    answer = response.json()
    [candidate] = answer["candidates"]
    assert candidate == {
        "content": {"parts": [{"text": "Hello! You said: What is the weather?"}], "role": "model"},
        "finishReason": "STOP",
        "index": 0,
    }
    usage = answer["usageMetadata"]
    assert usage["candidatesTokenCount"] == 7  # one per word piece
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + 7
    assert answer["modelVersion"] == MODEL and answer["responseId"]
    [seen] = await mock.requests()
    assert (seen["path"], seen["stream"], seen["body"]) == (f"/v1beta/models/{MODEL}:generateContent", False, BODY)


async def test_a_stream_is_whole_responses_with_growing_usage_and_no_end_event(mock: Mock) -> None:
    response = await post(mock, BODY, stream=True)
    assert response.status_code == 200
    chunks = frames(response)
    texts = [part["text"] for c in chunks for part in c["candidates"][0]["content"]["parts"]]
    assert "".join(texts) == "Hello! You said: What is the weather?"
    assert [c["candidates"][0].get("finishReason") for c in chunks] == [None] * (len(chunks) - 1) + ["STOP"]
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == sorted(counts) and counts[-1] == 7
    [seen] = await mock.requests()
    assert seen["stream"] is True


async def test_function_calls_come_whole_without_ids_the_first_signed(mock: Mock) -> None:
    await mock.behave(model=MODEL, tool_calls=2)
    answer = (await post(mock, {**BODY, "tools": TOOLS})).json()
    parts = answer["candidates"][0]["content"]["parts"]
    assert parts == [
        {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": SIGNATURE},
        {"functionCall": {"name": "get_weather", "args": {"location": "London"}}},
    ]
    assert answer["candidates"][0]["finishReason"] == "STOP"
    streamed = frames(await post(mock, {**BODY, "tools": TOOLS}, stream=True))
    calls = [p["functionCall"] for c in streamed for p in c["candidates"][0]["content"]["parts"] if "functionCall" in p]
    assert calls == [p["functionCall"] for p in parts]


async def test_a_function_response_is_answered_in_text(mock: Mock) -> None:
    contents = [
        *BODY["contents"],
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]},
    ]
    answer = (await post(mock, {"contents": contents, "tools": TOOLS})).json()
    assert answer["candidates"][0]["content"]["parts"] == [{"text": 'Hello! You said: {"result":"sunny"}'}]


async def test_a_thinking_budget_is_reported_as_thoughts(mock: Mock) -> None:
    config = {"thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}
    answer = (await post(mock, {**BODY, "generationConfig": config})).json()
    assert answer["usageMetadata"]["thoughtsTokenCount"] > 0
    assert answer["candidates"][0]["content"]["parts"][0]["thought"] is True


async def test_max_output_tokens_and_stop_sequences(mock: Mock) -> None:
    answer = (await post(mock, {**BODY, "generationConfig": {"maxOutputTokens": 2}})).json()
    assert answer["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert answer["usageMetadata"]["candidatesTokenCount"] == 2


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({**BODY, "messages": []}, 'Unknown name "messages"'),
        ({**BODY, "generationConfig": {"max_output_tokens": 5}}, 'Unknown name "max_output_tokens"'),
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role: user, model"),
        ({"contents": [{"role": "user", "parts": []}]}, "parts must not be empty"),
        ({"contents": [{"role": "user", "parts": [{"image_url": "x"}]}]}, 'Unknown name "image_url"'),
        (
            {**BODY, "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}]},
            "should be non-empty for OBJECT type",
        ),
    ],
)
async def test_what_gemini_refuses_is_a_400_invalid_argument(mock: Mock, body: dict[str, Any], says: str) -> None:
    response = await post(mock, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT") and says in error["message"]


async def test_keys_are_checked_as_google_does(mock: Mock) -> None:
    missing = await post(mock, BODY, headers={})
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    rejected = await post(mock, BODY, headers={"x-goog-api-key": REJECTED_KEY})
    assert rejected.status_code == 400
    error = rejected.json()["error"]
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    assert REJECTED_KEY not in rejected.text


async def test_behaviours_answer_with_googles_error_statuses(mock: Mock) -> None:
    await mock.behave(model=MODEL, status=429)
    response = await post(mock, BODY)
    assert response.status_code == 429 and response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    await mock.behave(model=MODEL, stream_error="UNAVAILABLE", break_after_chunks=2)
    chunks = frames(await post(mock, BODY, stream=True))
    assert "candidates" in chunks[1] and chunks[2]["error"]["status"] == "UNAVAILABLE"


async def test_a_stream_without_alt_sse_is_not_served(mock: Mock) -> None:
    response = await post(mock, BODY, stream=True, query="")
    assert response.status_code == 400
