"""Neither a provider key, nor a StepBlend token, nor message content (asked or
answered) appears in any span, span event, metric attribute or log line."""

from __future__ import annotations

import uuid

import httpx
import openai

from tests.observability import otlp
from tests.observability.conftest import Observed
from tests.support.system import make_account


def _wait_settled(receiver: otlp.Receiver, request_ids: list[str]) -> None:
    def settled(r: otlp.Receiver) -> bool:
        seen = {s.attributes.get("messaging.message.id") for s in r.snapshot()[0] if s.kind == "CONSUMER"}
        return set(request_ids) <= seen

    assert receiver.wait_for(settled), "the requests' usage events were not all traced"


def test_no_key_token_or_content_in_telemetry_or_logs(observed: Observed) -> None:
    account = make_account(observed.system)
    secret = f"confidential-{uuid.uuid4().hex}"
    sdk = openai.OpenAI(api_key=account.token, base_url=observed.system.base_url, max_retries=0)
    messages = [{"role": "system", "content": f"system {secret}"}, {"role": "user", "content": f"user {secret}"}]
    request_ids = []
    stream = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    request_ids.append(stream.response.headers["x-request-id"])
    answer = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert secret in answer  # the mock echoes: the answer is content too
    raw = sdk.chat.completions.with_raw_response.create(
        model="anthropic:claude-3-5-haiku-20241022", messages=messages, max_tokens=50
    )
    request_ids.append(raw.headers["x-request-id"])
    # A failed attempt (its provider's error text is not telemetry either), then a fallback.
    mock = observed.system.mock_url
    httpx.post(f"{mock}/_mock/behaviour", json={"model": "*", "status": 503, "times": 1}).raise_for_status()
    try:
        raw = sdk.chat.completions.with_raw_response.create(model="lowest-cost", messages=messages, max_tokens=50)
        request_ids.append(raw.headers["x-request-id"])
    finally:
        httpx.delete(f"{mock}/_mock/behaviour").raise_for_status()
    # Keys go through the gateway and the providers' vault (and keys.v1.changed).
    headers = {"authorization": f"Bearer {account.token}"}
    new_key = f"sk-rotated-{uuid.uuid4().hex}"
    put = httpx.put(f"{observed.system.base_url}/account/keys/groq", headers=headers, json={"api_key": new_key})
    assert put.status_code == 200
    assert httpx.get(f"{observed.system.base_url}/account/keys", headers=headers).status_code == 200
    _wait_settled(observed.receiver, request_ids)

    spans, points = observed.receiver.snapshot()
    assert len(spans) > 20
    forbidden = {secret, account.token, new_key, *account.keys.values()}
    for span in spans:
        text = repr((span.name, span.attributes, span.events))
        leaked = [f for f in forbidden if f in text]
        assert not leaked, f"{span.service} span {span.name!r} carries {leaked}"
    for point in points:
        text = repr((point.metric, point.attributes))
        assert not [f for f in forbidden if f in text], point
    logs = observed.logs()
    assert '"service":"providers"' in logs  # the logs are there to search
    for line in logs.splitlines():
        leaked = [f for f in forbidden if f in line]
        assert not leaked, f"log line carries {leaked}: {line[:200]}"
