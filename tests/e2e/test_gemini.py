"""Gemini through the running system (SPEC.md §11): an OpenAI client reaches Google's
native API (the mock speaks generateContent and its SSE stream), answers, streams and
calls tools in OpenAI's shapes, and is billed at the row's prices."""

from __future__ import annotations

import json

import openai

from tests.e2e.conftest import Account, System


def _client(system: System, account: Account) -> openai.OpenAI:
    return openai.OpenAI(api_key=account.token, base_url=system.base_url, max_retries=0)


def test_a_gemini_model_answers_and_streams_in_openais_shape(system: System, account: Account) -> None:
    client = _client(system, account)
    answer = client.chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hello gemini"}], max_tokens=64
    )
    assert answer.choices[0].message.content and answer.usage is not None and answer.usage.prompt_tokens > 0
    report = answer.model_extra["stepblend"]  # type: ignore[index]
    assert (report["provider"], report["routed_model"]) == ("gemini", "gemini-2.5-flash")
    assert report["actual_cost_usd"] > 0
    sent = [r for r in system.mock_requests() if ":generateContent" in r["path"]][-1]
    assert sent["path"].endswith("/v1beta/models/gemini-2.5-flash:generateContent")
    assert sent["headers"]["x-goog-api-key"] == account.keys["gemini"]
    assert sent["body"]["contents"][0]["parts"][0]["text"] == "hello gemini"

    stream = client.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage is not None


def test_gemini_calls_tools_as_openai_tool_calls(system: System, account: Account) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    answer = _client(system, account).chat.completions.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "weather in Paris?"}], tools=tools
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments), dict)
    sent = [r for r in system.mock_requests() if ":generateContent" in r["path"]][-1]
    assert sent["body"]["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
