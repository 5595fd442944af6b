"""Claude clients through StepBlend: the official anthropic Python SDK, unchanged,
against `stepblend up`, on models that OpenAI, Anthropic and Groq serve (SPEC.md §8).

The SDK's own parsing is the check of the wire: it builds `Message` objects from
the answers, accumulates the stream's events into a final message, and raises its
typed errors from Anthropic-shaped error bodies.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx
import pytest

from tests.e2e.conftest import Account, System, make_account
from tests.support.waiting import wait_until

# One model per wire format behind the door: OpenAI's, Anthropic's, Groq's flavour.
SERVED = [("gpt-4o-mini", "openai"), ("claude-3-5-haiku-20241022", "anthropic"), ("llama-3.1-8b-instant", "groq")]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def claude(system: System, token: str) -> anthropic.Anthropic:
    # As SPEC §8 and the README say: the base URL is the gateway's /api.
    return anthropic.Anthropic(api_key=token, base_url=system.base_url.removesuffix("/v1"), max_retries=0)


def stepblend(message: anthropic.types.Message) -> dict[str, Any]:
    info: dict[str, Any] = message.model_extra["stepblend"] if message.model_extra else {}
    return info


@pytest.mark.parametrize(("model", "provider"), SERVED, ids=[p for _, p in SERVED])
def test_messages_create_on_any_provider(system: System, account: Account, model: str, provider: str) -> None:
    raw = claude(system, account.token).messages.with_raw_response.create(
        model=model,
        max_tokens=256,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello there"}],
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.model == model
    assert [block.type for block in message.content] == ["text"]
    assert "Hello there" in message.content[0].text  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    info = stepblend(message)
    assert (info["routed_model"], info["provider"], info["strategy_used"]) == (model, provider, "force_model")
    assert info["actual_cost_usd"] > 0
    # Anthropic's request-id header, and StepBlend's own id beside it.
    assert raw.headers["request-id"] == "req_" + raw.headers["x-request-id"]
    if provider == "anthropic":
        # Served natively: Anthropic's own message, its id included, as it came.
        assert message.id.startswith("msg_") and message.id != "msg_" + raw.headers["x-request-id"]
    else:
        assert message.id == "msg_" + raw.headers["x-request-id"]
    # The provider got the request in its own wire format, under its own model id.
    seen = [r for r in system.mock_requests() if account.keys[provider] in json.dumps(r["headers"])]
    assert seen and seen[-1]["body"]["model"] in (model, "gpt-4o-mini-2024-07-18")


@pytest.mark.parametrize(("model", "provider"), SERVED, ids=[p for _, p in SERVED])
def test_messages_stream_accumulates_like_anthropic(
    system: System, account: Account, model: str, provider: str
) -> None:
    client = claude(system, account.token)
    prompt = [{"role": "user", "content": "Stream to me"}]
    whole = client.messages.create(model=model, max_tokens=256, messages=prompt)  # type: ignore[arg-type]
    kinds: list[str] = []
    with client.messages.stream(model=model, max_tokens=256, messages=prompt) as stream:  # type: ignore[arg-type]
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.model == model


def test_a_strategy_and_stepblend_fields_route_a_claude_client(system: System, account: Account) -> None:
    message = claude(system, account.token).messages.create(
        model="lowest-cost",
        max_tokens=64,
        messages=[{"role": "user", "content": "Cheap please"}],
        extra_body={"stepblend_max_cost": 0.01},
    )
    info = stepblend(message)
    assert info["strategy_used"] == "lowest_cost"
    assert info["estimated_cost_usd"] <= 0.01
    assert message.model == info["routed_model"]


@pytest.mark.parametrize(("model", "provider"), SERVED, ids=[p for _, p in SERVED])
def test_a_tool_use_round_trip(system: System, account: Account, model: str, provider: str) -> None:
    client = claude(system, account.token)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.messages.create(model=model, max_tokens=256, tools=[WEATHER], messages=messages)  # type: ignore[list-item]
    assert first.stop_reason == "tool_use"
    calls = [block for block in first.content if block.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance(calls[0].input, dict) and isinstance(calls[0].input.get("city"), str)
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "Sunny, 21C"}]},
    ]
    second = client.messages.create(model=model, max_tokens=256, tools=[WEATHER], messages=messages)  # type: ignore[list-item]
    assert second.stop_reason == "end_turn"
    assert [block.type for block in second.content] == ["text"]


def test_a_streamed_tool_call_reassembles(system: System, account: Account) -> None:
    client = claude(system, account.token)
    with client.messages.stream(
        model="gpt-4o-mini",
        max_tokens=256,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather in Tokyo?"}],
    ) as stream:
        final = stream.get_final_message()
    calls = [block for block in final.content if block.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert len(calls) == 1 and calls[0].name == "get_weather" and isinstance(calls[0].input, dict)


def test_count_tokens_is_the_routers_estimate_for_the_model(system: System, account: Account) -> None:
    client = claude(system, account.token)
    short = [{"role": "user", "content": "Hi"}]
    long = [{"role": "user", "content": "Hi " * 200}]
    claude_count = client.messages.count_tokens(model="claude-3-5-haiku-20241022", messages=short)  # type: ignore[arg-type]
    longer = client.messages.count_tokens(model="claude-3-5-haiku-20241022", messages=long)  # type: ignore[arg-type]
    assert 0 < claude_count.input_tokens < longer.input_tokens
    # Claude's tokenizer margin: its estimate is above the gateway's o200k count,
    # which is what the Routing API reports as the request's features.
    route = httpx.post(
        f"{system.base_url}/route",
        headers={"authorization": f"Bearer {account.token}"},
        json={"model": "gpt-4o-mini", "messages": long},
    ).json()
    assert longer.input_tokens > route["features"]["prompt_tokens_estimate"]


def test_auth_by_x_api_key_and_errors_in_anthropics_shape(system: System, account: Account) -> None:
    # The SDK sends the key as x-api-key: that is the credential.
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        claude(system, "not-a-token").messages.create(
            model="gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": "Hi"}]
        )
    assert bad_key.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid token: Not enough segments."},
    }
    client = claude(system, account.token)
    with pytest.raises(anthropic.NotFoundError) as unknown:
        client.messages.create(model="no-such-model", max_tokens=16, messages=[{"role": "user", "content": "Hi"}])
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "A memo."}}
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model="gpt-4o-mini",
            max_tokens=256,
            messages=[{"role": "user", "content": [document, {"type": "text", "text": "Summarise it"}]}],
        )
    assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "document" in refused.value.message
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="gpt-4o-mini", max_tokens=16, messages=[])


def test_the_ledger_records_the_front_door(system: System, account: Account) -> None:
    client = claude(system, account.token)
    raw = client.messages.with_raw_response.create(
        model="claude-3-5-haiku-20241022", max_tokens=64, messages=[{"role": "user", "content": "Count me"}]
    )
    with client.messages.with_streaming_response.create(
        model="gpt-4o-mini", max_tokens=64, stream=True, messages=[{"role": "user", "content": "Me too"}]
    ) as streamed:
        streamed.read()
    ids = {raw.headers["x-request-id"]: False, streamed.headers["x-request-id"]: True}
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while len(rows) < len(ids) and time.monotonic() < deadline:
        usage = httpx.get(f"{system.base_url}/account/usage", headers={"authorization": f"Bearer {account.token}"})
        rows = [row for row in usage.json()["data"] if row["request_id"] in ids]
        time.sleep(0.05)
    assert len(rows) == len(ids)
    for row in rows:
        assert row["dialect"] == "anthropic_messages"
        assert row["stream"] is ids[row["request_id"]]
        assert row["status"] == "completed" and row["cost_usd"] > 0


# A request only Anthropic can serve in full: prompt caching, extended thinking, a
# document, a server tool, and a beta flag.
NATIVE_ONLY: dict[str, Any] = {
    "max_tokens": 2048,
    "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Memo: ship it."}},
                {"type": "text", "text": "What does the memo say?", "cache_control": {"type": "ephemeral"}},
            ],
        }
    ],
}
BETA = "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"


def _sent_to_anthropic(system: System, account: Account) -> dict[str, Any]:
    seen = [r for r in system.mock_requests() if r["headers"].get("x-api-key") == account.keys["anthropic"]]
    assert seen, "Anthropic got no request"
    last: dict[str, Any] = seen[-1]
    return last


# A strategy takes no tools (SPEC §1): the same request without the server tool.
NO_TOOLS = {k: v for k, v in NATIVE_ONLY.items() if k != "tools"}


@pytest.mark.parametrize(("model", "request_body"), [("claude-sonnet-4-5", NATIVE_ONLY), ("lowest-cost", NO_TOOLS)])
def test_anthropic_serves_what_only_it_can_untouched(
    system: System, account: Account, model: str, request_body: dict[str, Any]
) -> None:
    client = claude(system, account.token)
    message = client.messages.create(model=model, extra_headers={"anthropic-beta": BETA}, **request_body)
    # A strategy ranks only the models that can serve it: Anthropic's.
    assert stepblend(message)["provider"] == "anthropic"
    sent = _sent_to_anthropic(system, account)
    # Every field as the client sent it; only the model id is the provider's.
    assert sent["body"] == {**request_body, "model": stepblend(message)["routed_model"]}
    assert sent["headers"]["anthropic-beta"] == BETA
    assert sent["path"] == "/v1/messages"


def test_a_native_stream_is_anthropics_own_with_the_report_at_its_end(system: System, account: Account) -> None:
    client = claude(system, account.token)
    with client.messages.stream(
        model="claude-3-5-haiku-20241022", extra_headers={"anthropic-beta": BETA}, **NATIVE_ONLY
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("message_stop") == 1
    assert final.content and final.stop_reason in ("end_turn", "tool_use")
    sent = _sent_to_anthropic(system, account)
    assert sent["body"]["stream"] is True and sent["body"]["thinking"] == NATIVE_ONLY["thinking"]
    # The report rides on the last event, after usage is known.
    with client.messages.with_streaming_response.create(
        model="claude-3-5-haiku-20241022", stream=True, **NATIVE_ONLY
    ) as raw:
        frames = raw.read().decode().strip().split("\n\n")
    last = json.loads(frames[-1].split("\ndata: ", 1)[1])
    assert last["type"] == "message_stop" and last["stepblend"]["provider"] == "anthropic"
    assert last["stepblend"]["actual_cost_usd"] > 0


def test_what_only_anthropic_serves_is_refused_for_other_models(system: System, account: Account) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude(system, account.token).messages.create(model="gpt-4o-mini", **NATIVE_ONLY)
    assert "only supported when an Anthropic model serves the request" in refused.value.message
    # The other models never heard of it.
    assert not [
        r for r in system.mock_requests() if "Memo: ship it." in json.dumps(r["body"]) and r["path"] != "/v1/messages"
    ]


def test_a_cost_cap_bounds_a_native_request_too(system: System, account: Account) -> None:
    client = claude(system, account.token)
    ask: dict[str, Any] = {
        "model": "claude-3-5-haiku-20241022",
        "max_tokens": 8192,
        "messages": [{"role": "user", "content": "Be cheap"}],
    }
    # Anthropic's max_tokens is the worst case: 8192 tokens at $4/M is about $0.033.
    message = client.messages.create(**ask, extra_body={"stepblend_max_cost": 0.05})
    sent = _sent_to_anthropic(system, account)
    assert sent["body"]["max_tokens"] == 8192 and "stepblend_max_cost" not in sent["body"]
    assert 0 < stepblend(message)["estimated_cost_usd"] <= 0.05
    before = len(system.mock_requests())
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(**ask, extra_body={"stepblend_max_cost": 0.002})
    assert "stepblend_max_cost" in refused.value.message
    assert len(system.mock_requests()) == before


def test_top_k_goes_only_to_models_that_honour_it(system: System, account: Account) -> None:
    client = claude(system, account.token)
    ask: dict[str, Any] = {
        "max_tokens": 64,
        "extra_body": {"top_k": 5},
        "messages": [{"role": "user", "content": "Pick one"}],
    }
    message = client.messages.create(model="claude-3-5-haiku-20241022", **ask)
    assert _sent_to_anthropic(system, account)["body"]["top_k"] == 5
    assert stepblend(message)["provider"] == "anthropic"
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model="gpt-4o-mini", **ask)
    assert "top_k" in refused.value.message


def test_the_plan_limit_holds_for_claude_clients(system: System) -> None:
    tiny = make_account(system, plan="tiny")  # 3 requests a month
    client = claude(system, tiny.token)
    ask: dict[str, Any] = {"model": "gpt-4o-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}
    for _ in range(3):
        client.messages.create(**ask)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(**ask)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    # Retrying cannot help until next month: the SDKs are told not to.
    assert limited.value.response.headers["x-should-retry"] == "false"


def test_count_tokens_and_the_routing_api_use_no_quota(system: System, account: Account) -> None:
    # SPEC §8: count_tokens is free of charge and of plan quota (as /route is).
    client = claude(system, account.token)
    for _ in range(3):
        client.messages.count_tokens(model="claude-3-5-haiku-20241022", messages=[{"role": "user", "content": "Hi"}])
        httpx.post(
            f"{system.base_url}/route",
            headers={"authorization": f"Bearer {account.token}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
        ).raise_for_status()
    # One request that counts, after them: once it is billed, it is the month's only one.
    client.messages.create(model="gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": "Hi"}])
    jwt = {"authorization": f"Bearer {account.token}"}

    def usage() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = httpx.get(f"{system.base_url}/account/usage", headers=jwt).json()["data"]
        return rows

    rows = wait_until(usage, 20, "the request billed")
    assert len(rows) == 1 and rows[0]["api_key_id"] is None  # a JWT's request is no key's
    assert httpx.get(f"{system.base_url}/account", headers=jwt).json()["requests_this_month"] == 1
