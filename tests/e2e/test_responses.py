"""OpenAI's Responses API through StepBlend: the official openai Python SDK,
unchanged, against `stepblend up`, on models that OpenAI, Anthropic and Groq serve
(SPEC.md §10).

The SDK's own parsing is the check of the wire: it builds `Response` objects,
accumulates `responses.stream(...)` events into a final response (refusing events
out of order), and raises its typed errors from OpenAI-shaped error bodies.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response

from tests.e2e.conftest import Account, System

# One model per wire format behind the door: OpenAI's, Anthropic's, Groq's flavour.
SERVED = [("gpt-4o-mini", "openai"), ("claude-3-5-haiku-20241022", "anthropic"), ("llama-3.1-8b-instant", "groq")]
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def client(system: System, token: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=token, base_url=system.base_url, max_retries=0)


def stepblend(response: Response) -> dict[str, Any]:
    info: dict[str, Any] = response.model_extra["stepblend"] if response.model_extra else {}
    return info


def seen_by(system: System, account: Account, provider: str) -> list[dict[str, Any]]:
    """The provider's requests made with this account's key."""
    return [r for r in system.mock_requests() if account.keys[provider] in json.dumps(r["headers"])]


@pytest.mark.parametrize(("model", "provider"), SERVED, ids=[p for _, p in SERVED])
def test_responses_create_on_any_provider(system: System, account: Account, model: str, provider: str) -> None:
    raw = client(system, account.token).responses.with_raw_response.create(
        model=model, instructions="Be brief.", input="Hello there", max_output_tokens=128
    )
    response = raw.parse()
    assert response.id == "resp_" + raw.headers["x-request-id"]
    assert (response.object, response.status, response.model) == ("response", "completed", model)
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text.startswith("Hello! You said: Hello there")
    assert response.usage is not None
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert (response.instructions, response.max_output_tokens, response.store) == ("Be brief.", 128, False)
    info = stepblend(response)
    assert (info["routed_model"], info["provider"], info["strategy_used"]) == (model, provider, "force_model")
    assert info["actual_cost_usd"] > 0
    assert raw.headers["x-stepblend-provider"] == provider
    # The provider got the instructions and the question, in its own wire format.
    assert "Be brief." in json.dumps(seen_by(system, account, provider)[-1]["body"])


@pytest.mark.parametrize(("model", "provider"), SERVED, ids=[p for _, p in SERVED])
def test_responses_stream_gives_the_same_answer_event_by_event(
    system: System, account: Account, model: str, provider: str
) -> None:
    sdk = client(system, account.token)
    whole = sdk.responses.create(model=model, input="Stream to me")
    kinds: list[str] = []
    deltas: list[str] = []
    sequence: list[int] = []
    completed: Response | None = None
    with sdk.responses.stream(model=model, input="Stream to me") as stream:
        for event in stream:
            kinds.append(event.type)
            sequence.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                completed = event.response
        final = stream.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert sequence == list(range(len(kinds)))
    assert len(deltas) > 1 and "".join(deltas) == final.output_text == whole.output_text
    # usage and the report come with response.completed, once the provider's stream ended.
    assert completed is not None and completed.usage is not None and whole.usage is not None
    assert completed.usage.output_tokens == whole.usage.output_tokens
    info = stepblend(final)
    assert (info["provider"], info["routed_model"]) == (provider, model) and info["actual_cost_usd"] > 0


@pytest.mark.parametrize(("model", "provider"), SERVED, ids=[p for _, p in SERVED])
def test_a_function_calling_loop(system: System, account: Account, model: str, provider: str) -> None:
    sdk = client(system, account.token)
    items: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = sdk.responses.create(model=model, input=items, tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    # Stateless: the caller sends the conversation back, the model's output included.
    items += first.output
    items.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21C"})
    second = sdk.responses.create(model=model, input=items, tools=[WEATHER])
    assert [item.type for item in second.output] == ["message"] and second.output_text
    # The provider saw the call and its result as its wire format has them.
    sent = json.dumps(seen_by(system, account, provider)[-1]["body"])
    assert calls[0].call_id in sent and "Sunny, 21C" in sent


def test_a_streamed_function_call(system: System, account: Account) -> None:
    sdk = client(system, account.token)
    arguments: list[str] = []
    with sdk.responses.stream(
        model="gpt-4o-mini", input="Weather in Oslo?", tools=[WEATHER], tool_choice="required"
    ) as stream:
        for event in stream:
            if event.type == "response.function_call_arguments.delta":
                arguments.append(event.delta)
        final = stream.get_final_response()
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].arguments == "".join(arguments)
    assert calls[0].parsed_arguments is None or isinstance(calls[0].parsed_arguments, dict)
    assert seen_by(system, account, "openai")[-1]["body"]["tool_choice"] == "required"


def test_json_schema_format_and_parameters_reach_the_provider(system: System, account: Account) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    client(system, account.token).responses.create(
        model="openai:gpt-4o-mini",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "A city, as JSON"}]}],
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
        temperature=0.3,
        metadata={"trace": "t-1"},
    )
    body = seen_by(system, account, "openai")[-1]["body"]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": schema, "strict": True},
    }
    assert body["temperature"] == 0.3 and "metadata" not in body and "text" not in body


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"previous_response_id": "resp_earlier"}, "previous_response_id"),
        ({"tools": [{"type": "web_search_preview"}]}, "tools.0.type"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools.0.type"),
    ],
)
def test_stateful_and_built_in_features_are_refused_without_counting(
    system: System, account: Account, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(system, account.token).responses.create(model="gpt-4o-mini", input="Hi", **fields)
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "unsupported_parameter", param)
    me = httpx.get(f"{system.base_url}/account", headers={"authorization": f"Bearer {account.token}"}).json()
    assert me["requests_this_month"] == 0
    assert not seen_by(system, account, "openai")


def test_unknown_input_items_and_models_are_openai_errors(system: System, account: Account) -> None:
    sdk = client(system, account.token)
    with pytest.raises(openai.BadRequestError) as unknown:
        sdk.responses.create(model="gpt-4o-mini", input=[{"type": "telepathy"}])  # type: ignore[list-item]
    assert unknown.value.body["param"] == "input.0.type"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="no-such-model", input="Hi")
    with pytest.raises(openai.AuthenticationError):
        client(system, "not-a-token").responses.create(model="gpt-4o-mini", input="Hi")


def test_the_ledger_records_the_responses_dialect(system: System, account: Account) -> None:
    sdk = client(system, account.token)
    raw = sdk.responses.with_raw_response.create(model="claude-3-5-haiku-20241022", input="Count me")
    with sdk.responses.with_streaming_response.create(model="gpt-4o-mini", input="Me too", stream=True) as streamed:
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
        assert row["dialect"] == "openai_responses"
        assert row["stream"] is ids[row["request_id"]]
        assert row["status"] == "completed" and row["cost_usd"] > 0
