"""The request path end to end through `stepblend up`, driven by the official
openai SDK exactly as a user's code would drive it."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.e2e.conftest import Account, System

STEPBLEND_KEYS = {"routed_model", "provider", "strategy_used", "estimated_cost_usd", "actual_cost_usd"}


def client(system: System, token: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=token, base_url=system.base_url, max_retries=0)


def check_stepblend(info: dict[str, object], strategy: str) -> None:
    assert info.keys() >= STEPBLEND_KEYS
    assert isinstance(info["routed_model"], str) and info["routed_model"]
    assert isinstance(info["provider"], str) and info["provider"]
    assert info["strategy_used"] == strategy
    assert isinstance(info["estimated_cost_usd"], float) and info["estimated_cost_usd"] > 0
    assert isinstance(info["actual_cost_usd"], float) and info["actual_cost_usd"] > 0


def test_non_stream_forced_model(system: System, account: Account) -> None:
    raw = client(system, account.token).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello there"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert "Hello there" in completion.choices[0].message.content
    assert completion.model == "gpt-4o-mini"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    info = completion.model_extra["stepblend"]
    check_stepblend(info, "force_model")
    assert info["routed_model"] == "gpt-4o-mini" and info["provider"] == "openai"
    request_id = raw.headers["x-request-id"]
    assert completion.id == f"chatcmpl-{request_id}"
    assert raw.headers["x-stepblend-provider"] == "openai"
    assert raw.headers["x-stepblend-routed-model"] == "gpt-4o-mini"


def test_provider_sees_the_stored_key_never_the_jwt(system: System, account: Account) -> None:
    marker = f"marker-{account.email}"
    client(system, account.token).chat.completions.create(
        model="openai:gpt-4o", messages=[{"role": "user", "content": marker}]
    )
    seen = [r for r in system.mock_requests() if marker in json.dumps(r["body"])]
    assert len(seen) == 1
    assert seen[0]["headers"]["authorization"] == f"Bearer {account.keys['openai']}"
    assert account.token not in json.dumps(seen[0])
    assert seen[0]["body"]["model"] == "gpt-4o"
    assert not any(k.startswith("stepblend_") for k in seen[0]["body"])


def test_stream_with_usage(system: System, account: Account) -> None:
    chunks = list(
        client(system, account.token).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Stream me something"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Stream me something" in text
    assert len([c for c in chunks if c.choices]) > 2
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens > 0
    check_stepblend(last.model_extra["stepblend"], "force_model")
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_stream_without_usage_shows_no_usage(system: System, account: Account) -> None:
    chunks = list(
        client(system, account.token).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices == []
    # The usage is still obtained for billing, so the cost is known.
    check_stepblend(chunks[-1].model_extra["stepblend"], "force_model")


def test_stream_status_and_headers(system: System, account: Account) -> None:
    with httpx.stream(
        "POST",
        f"{system.base_url}/chat/completions",
        headers={"authorization": f"Bearer {account.token}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"]
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_streamed_tool_call_deltas_reassemble(system: System, account: Account) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            },
        }
    ]
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client(system, account.token).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools, stream=True
    ):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                if delta.function and delta.function.name:
                    call["name"] = delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert isinstance(json.loads(calls[0]["arguments"]), dict)


def test_lowest_cost_picks_no_dearer_than_a_named_model(system: System, account: Account) -> None:
    sdk = client(system, account.token)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    cheap = sdk.chat.completions.create(model="lowest-cost", messages=messages, max_tokens=100)
    named = sdk.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=100)
    cheap_info = cheap.model_extra["stepblend"]
    check_stepblend(cheap_info, "lowest_cost")
    assert cheap_info["provider"] in account.keys
    assert cheap_info["estimated_cost_usd"] < named.model_extra["stepblend"]["estimated_cost_usd"]


def test_bad_jwt_is_an_authentication_error(system: System) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(system, "not-a-jwt").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "authentication_error"
    assert caught.value.response.headers["x-request-id"]


def test_unknown_model_is_not_found(system: System, account: Account) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(system, account.token).chat.completions.create(
            model="no-such-model-9000", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.body["code"] == "model_not_found"
    assert "no-such-model-9000" in caught.value.body["message"]


def test_invalid_body_is_a_bad_request(system: System, account: Account) -> None:
    response = httpx.post(
        f"{system.base_url}/chat/completions",
        headers={"authorization": f"Bearer {account.token}"},
        json={"model": "gpt-4o", "messages": [{"role": "wizard", "content": "Hi"}]},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].startswith("messages")
    broken = httpx.post(
        f"{system.base_url}/chat/completions",
        headers={"authorization": f"Bearer {account.token}", "content-type": "application/json"},
        content=b"{not json",
    )
    assert broken.status_code == 400
    assert set(broken.json()["error"]) == {"message", "type", "param", "code"}


def test_forced_model_without_its_key_is_a_conflict(system: System) -> None:
    email = f"nokeys-{time.time_ns()}@example.com"
    token = system.cli("account", "create", email)
    with pytest.raises(openai.ConflictError) as caught:
        client(system, token).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body["code"] == "provider_not_connected"
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_v1_alias_serves_the_same_api(system: System, account: Account) -> None:
    sdk = openai.OpenAI(api_key=account.token, base_url=system.base_url.replace("/api/v1", "/v1"), max_retries=0)
    completion = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    assert completion.model_extra["stepblend"]["routed_model"] == "gpt-4o-mini"


def test_every_request_is_one_ledger_row(system: System, account: Account) -> None:
    sdk = client(system, account.token)
    request_ids = []
    for i in range(3):
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"ledger {i}"}]
        )
        request_ids.append(raw.headers["x-request-id"])
    for _ in sdk.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "ledger stream"}], stream=True
    ):
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        summary = httpx.get(f"{system.base_url}/account", headers={"authorization": f"Bearer {account.token}"}).json()
        # Read-your-writes counts the four at once; the ledger rows and spend follow settlement.
        if (
            summary["requests_this_month"] >= 4
            and summary["spend_this_month_usd"] > 0
            and len(system.ledger_rows(request_ids)) == len(request_ids)
        ):
            break
        time.sleep(0.1)
    assert summary["requests_this_month"] == 4
    assert summary["spend_this_month_usd"] > 0
    rows = system.ledger_rows(request_ids)
    assert sorted(r[0] for r in rows) == sorted(request_ids)


def test_keys_are_listed_masked_and_can_be_removed(system: System, account: Account) -> None:
    headers = {"authorization": f"Bearer {account.token}"}
    listed = httpx.get(f"{system.base_url}/account/keys", headers=headers).json()["data"]
    assert {k["provider"] for k in listed} == set(account.keys)
    for entry in listed:
        assert entry["masked_key"] != account.keys[entry["provider"]]
        assert entry["masked_key"].endswith(account.keys[entry["provider"]][-4:])
    put = httpx.put(f"{system.base_url}/account/keys/openai", headers=headers, json={"api_key": "sk-replaced-1234"})
    assert put.status_code == 200 and put.json()["masked_key"].endswith("1234")
    assert "sk-replaced-1234" not in put.text
    deleted = httpx.delete(f"{system.base_url}/account/keys/deepseek", headers=headers)
    assert deleted.status_code == 200
    with pytest.raises(openai.ConflictError):
        client(system, account.token).chat.completions.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "Hi"}]
        )


def test_streamed_anthropic_tool_call_reassembles(system: System, account: Account) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            },
        }
    ]
    calls: dict[int, dict[str, str]] = {}
    last = None
    for chunk in client(system, account.token).chat.completions.create(
        model="anthropic:claude-3-5-haiku-20241022",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
        stream=True,
        stream_options={"include_usage": True},
    ):
        last = chunk
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                if delta.function and delta.function.name:
                    call["name"] = delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
    assert list(calls) == [0] and calls[0]["name"] == "get_weather"
    assert isinstance(json.loads(calls[0]["arguments"]), dict)
    assert last is not None and last.usage is not None and last.usage.prompt_tokens > 0
    assert last.model_extra["stepblend"]["provider"] == "anthropic"
    seen = [r for r in system.mock_requests() if r["path"].endswith("/v1/messages")]
    assert seen and seen[-1]["headers"]["x-api-key"] == account.keys["anthropic"]


def test_strategy_falls_back_when_the_first_candidate_fails(system: System, account: Account) -> None:
    sdk = client(system, account.token)
    messages = [{"role": "user", "content": "fallback please"}]
    first = sdk.chat.completions.create(model="lowest-cost", messages=messages, max_tokens=50)
    failing = first.model_extra["stepblend"]["routed_model"]
    httpx.post(f"{system.mock_url}/_mock/behaviour", json={"model": "*", "status": 503, "times": 1}).raise_for_status()
    try:
        answer = sdk.chat.completions.create(model="lowest-cost", messages=messages, max_tokens=50)
    finally:
        httpx.delete(f"{system.mock_url}/_mock/behaviour").raise_for_status()
    info = answer.model_extra["stepblend"]
    attempts = info["attempts"]
    assert attempts[0]["model"] == failing and attempts[0]["status"] == 503
    assert attempts[-1]["outcome"] == "ok"
    assert info["routed_model"] != failing
    assert answer.choices[0].message.content
