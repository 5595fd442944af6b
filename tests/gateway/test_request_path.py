"""The request path in-process: what a client of POST /v1/chat/completions sees,
with the real router, providers and billing behind the gateway (conftest.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.gateway.settings import GatewaySettings
from tests.gateway.conftest import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

MESSAGES = [{"role": "user", "content": "Say hello"}]


async def chat(gateway: Stack, headers: dict[str, str], **body: Any) -> tuple[int, dict[str, str], bytes]:
    response = await gateway.http.post(
        "/v1/chat/completions", headers=headers, json={"model": "gpt-4o-mini", "messages": MESSAGES, **body}
    )
    return response.status_code, dict(response.headers), response.content


def events(body: bytes) -> list[Any]:
    """The SSE `data:` payloads, decoded ("[DONE]" as is)."""
    found: list[Any] = []
    for event in body.split(b"\n\n"):
        if event.startswith(b"data: "):
            data = event.removeprefix(b"data: ")
            found.append(data.decode() if data == b"[DONE]" else orjson.loads(data))
    return found


async def test_a_whole_answer_carries_the_stepblend_report(gateway: Stack) -> None:
    _, headers = await gateway.account()
    status, response_headers, body = await chat(gateway, headers)
    assert status == 200
    completion = orjson.loads(body)
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"]
    report = completion["stepblend"]
    assert report["routed_model"] == "gpt-4o-mini" and report["provider"] == "openai"
    assert report["actual_cost_usd"] > 0
    assert response_headers["x-stepblend-routed-model"] == "gpt-4o-mini"
    assert response_headers["x-request-id"]


async def test_a_stream_ends_with_usage_and_the_report_then_done(gateway: Stack) -> None:
    _, headers = await gateway.account()
    status, response_headers, body = await chat(gateway, headers, stream=True, stream_options={"include_usage": True})
    assert status == 200 and response_headers["content-type"].startswith("text/event-stream")
    *chunks, last, done = events(body)
    assert done == "[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert last["choices"] == [] and last["id"] == f"chatcmpl-{response_headers['x-request-id']}"
    assert last["usage"]["prompt_tokens"] > 0
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"]
    assert last["stepblend"]["routed_model"] == "gpt-4o-mini"


async def test_a_slow_first_token_gets_keepalives_first(gateway: Stack) -> None:
    _, headers = await gateway.account()
    await gateway.behave(ttft_ms=1000)
    status, _, body = await chat(gateway, headers, stream=True)
    assert status == 200
    assert body.startswith(b": keep-alive\n\n")
    *chunks, last, done = events(body)
    assert chunks and done == "[DONE]" and last["stepblend"]["provider"] == "openai"
    assert "usage" not in last  # not asked for


async def test_every_candidate_failing_is_an_error_status(gateway: Stack) -> None:
    _, headers = await gateway.account()
    await gateway.behave(status=503)
    status, response_headers, body = await chat(gateway, headers)
    assert status == 502
    error = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "provider_error"
    assert "openai (gpt-4o-mini)" in error["message"] and "sk-openai-test" not in body.decode()
    assert "x-stepblend-provider" not in response_headers
    streamed, _, _ = await chat(gateway, headers, stream=True)
    assert streamed == status  # a stream too: the status waits for the first chunk


async def test_a_stream_that_breaks_after_it_started_ends_with_an_error_event(gateway: Stack) -> None:
    _, headers = await gateway.account()
    await gateway.behave(break_after_chunks=2)
    status, _, body = await chat(gateway, headers, stream=True)
    assert status == 200
    *chunks, last, done = events(body)
    assert chunks and all("choices" in c for c in chunks)
    assert set(last) == {"error"} and last["error"]["message"]
    assert done == "[DONE]"


async def test_a_router_refusal_is_the_client_error_it_names(gateway: Stack) -> None:
    _, headers = await gateway.account()
    status, _, body = await chat(gateway, headers, model="no-such-model-9000")
    assert status == 404
    assert orjson.loads(body)["error"]["code"] == "model_not_found"
    status, _, body = await chat(gateway, headers, model="lowest-cost", stepblend_max_cost=1e-12)
    assert status == 400
    assert orjson.loads(body)["error"]["code"] == "no_model_under_cost_cap"


async def test_providers_that_outlive_their_deadline_are_a_timeout(gateway: Stack) -> None:
    _, headers = await gateway.account()
    await gateway.behave(ttft_ms=8000)
    tight = GatewaySettings(provider_total_timeout_s=1.0, provider_deadline_margin_s=1.0)
    async with gateway.another_gateway(tight) as http:
        response = await http.post(
            "/v1/chat/completions", headers=headers, json={"model": "gpt-4o-mini", "messages": MESSAGES}
        )
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    # The providers service ends the call just before the gateway's deadline, with
    # an error the client can read, and closes the upstream request.
    message = response.json()["error"]["message"]
    assert message == "The request did not finish within its 1.5s deadline.", message
