"""A rejected stored key costs one upstream request, and the client is told not to retry.

Before: one openai SDK call with a rejected key made 33 upstream requests (11
candidates of a strategy × the SDK's 3 tries). Now the executor does not try the
provider again for its other models, and the error carries `x-should-retry: false`,
which the SDK obeys.
"""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest

from tests.support.system import REJECTED_KEY, System


def _requests_with(system: System, key: str) -> int:
    return sum(1 for r in system.mock_requests() if r["headers"].get("authorization") == f"Bearer {key}")


def test_a_rejected_key_is_called_once_and_not_retried(system: System) -> None:
    email = f"rejected-{uuid.uuid4().hex[:12]}@example.com"
    token = system.cli("account", "create", email)
    response = httpx.put(
        f"{system.base_url}/account/keys/openai",
        headers={"authorization": f"Bearer {token}"},
        json={"api_key": REJECTED_KEY},
    )
    assert response.status_code == 200, response.text
    before = _requests_with(system, REJECTED_KEY)

    client = openai.OpenAI(api_key=token, base_url=system.base_url, max_retries=2)
    with pytest.raises(openai.APIStatusError) as failure:
        client.chat.completions.create(model="lowest-cost", messages=[{"role": "user", "content": "hi"}])

    assert failure.value.status_code == 502
    assert failure.value.response.headers["x-should-retry"] == "false"
    assert failure.value.body["code"] == "provider_key_invalid"  # type: ignore[index]
    assert _requests_with(system, REJECTED_KEY) - before == 1

    # The failed request is listed under the model the client asked for.
    request_id = failure.value.response.headers["x-request-id"]
    deadline = time.monotonic() + 15
    rows: list[dict[str, object]] = []
    while time.monotonic() < deadline and not rows:
        usage = httpx.get(f"{system.base_url}/account/usage", headers={"authorization": f"Bearer {token}"}).json()
        rows = [row for row in usage["data"] if row["request_id"] == request_id]
        time.sleep(0.1)
    assert rows and rows[0]["model"] == "lowest-cost" and rows[0]["status"] == "failed"
