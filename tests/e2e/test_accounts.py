"""Accounts, plans and the Routing API through `stepblend up`."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest

from tests.e2e.conftest import Account, System, make_account

HI = [{"role": "user", "content": "Hi"}]


def sdk(system: System, token: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=token, base_url=system.base_url, max_retries=0)


def test_signup_then_login_gives_working_tokens(system: System) -> None:
    email = f"Signup-{uuid.uuid4().hex[:8]}@Example.com"
    created = httpx.post(f"{system.base_url}/auth/signup", json={"email": email, "password": "correct horse"})
    assert created.status_code == 201
    assert set(created.json()) == {"account_id", "token"}
    again = httpx.post(f"{system.base_url}/auth/signup", json={"email": email.lower(), "password": "whatever1"})
    assert again.status_code == 409 and again.json()["error"]["type"] == "invalid_request_error"
    wrong = httpx.post(f"{system.base_url}/auth/login", json={"email": email, "password": "wrong horse"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    # A wrong password is a 401 whatever its length: a short one says nothing more.
    for guess in ("", "x", "short", "y" * 2000):
        short = httpx.post(f"{system.base_url}/auth/login", json={"email": email, "password": guess})
        assert short.status_code == 401 and short.json()["error"]["type"] == "authentication_error"
    logged = httpx.post(f"{system.base_url}/auth/login", json={"email": email, "password": "correct horse"})
    assert logged.status_code == 200
    summary = httpx.get(f"{system.base_url}/account", headers={"authorization": f"Bearer {logged.json()['token']}"})
    assert summary.status_code == 200
    assert summary.json()["email"] == email.lower()
    assert summary.json()["plan"] == "free" and summary.json()["monthly_limit"] == 1000


def test_short_password_is_a_clear_400(system: System) -> None:
    response = httpx.post(f"{system.base_url}/auth/signup", json={"email": "a@example.com", "password": "short"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "password"


def test_plan_limit_is_a_429_that_says_not_to_retry(system: System) -> None:
    account = make_account(system, plan="tiny")
    client = sdk(system, account.token)
    remaining = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(int(raw.headers["x-ratelimit-remaining-requests"]))
    assert remaining == [2, 1, 0]
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert caught.value.body["code"] == "plan_limit_exceeded"
    assert caught.value.response.headers["x-should-retry"] == "false"
    # Failed-before-any-provider requests never use quota: an unknown model on a full plan is still a 404.
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=HI)


def test_a_request_no_provider_answered_does_not_count(system: System) -> None:
    account = make_account(system, plan="tiny")
    httpx.post(f"{system.mock_url}/_mock/behaviour", json={"model": "gpt-4.1-mini", "status": 500}).raise_for_status()
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(system, account.token).chat.completions.create(model="openai:gpt-4.1-mini", messages=HI)
        assert caught.value.status_code in (502, 503)
    finally:
        httpx.delete(f"{system.mock_url}/_mock/behaviour").raise_for_status()
    # The reservation is released when billing settles the failure event.
    failed_id = caught.value.response.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while not system.ledger_rows([failed_id]):
        assert time.monotonic() < deadline, "the failed request was never settled"
        time.sleep(0.05)
    raw = sdk(system, account.token).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    assert raw.headers["x-ratelimit-remaining-requests"] == "2"


def test_disabled_account_tokens_stop_at_once(system: System, account: Account) -> None:
    client = sdk(system, account.token)
    client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    system.cli("account", "disable", account.email)
    deadline = time.monotonic() + 5  # one event delivery, not the 30 s cache TTL
    while True:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=HI)
        except openai.AuthenticationError:
            break
        assert time.monotonic() < deadline, "a disabled account's token still works"
        time.sleep(0.05)
    system.cli("account", "enable", account.email)


def test_set_plan_changes_the_limit(system: System, account: Account) -> None:
    assert system.cli("account", "set-plan", account.email, "pro") == "pro"
    summary = httpx.get(f"{system.base_url}/account", headers={"authorization": f"Bearer {account.token}"}).json()
    assert summary["plan"] == "pro" and summary["monthly_limit"] == 1_000_000


def test_models_lists_strategies_and_catalog(system: System, account: Account) -> None:
    models = sdk(system, account.token).models.list()
    ids = {m.id for m in models.data}
    assert {"lowest-cost", "balanced", "fastest", "max-reliability", "gpt-4o", "deepseek-chat"} <= ids
    owners = {m.id: m.owned_by for m in models.data}
    assert owners["gpt-4o"] == "openai"


def test_route_explains_without_using_quota(system: System) -> None:
    account = make_account(system, plan="tiny")
    headers = {"authorization": f"Bearer {account.token}"}
    body = {
        "model": "lowest-cost",
        "messages": HI,
        "max_tokens": 50,
        "stepblend_max_cost": 0.0005,
    }
    for _ in range(5):
        response = httpx.post(f"{system.base_url}/route", headers=headers, json=body)
        assert response.status_code == 200
    explained = response.json()
    assert explained["strategy_used"] == "lowest_cost"
    assert explained["candidates"][0]["model"] == explained["routed_model"]
    costs = [c["estimated_cost_usd"] for c in explained["candidates"]]
    assert costs and max(costs) <= 0.0005
    reasons = {e["reason"] for e in explained["excluded"]}
    assert "over_cap" in reasons
    assert explained["catalog_version"]
    # Five routing calls used none of the three requests.
    raw = sdk(system, account.token).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    assert raw.headers["x-ratelimit-remaining-requests"] == "2"


def test_tools_with_a_strategy_is_a_400_naming_a_model(system: System, account: Account) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(system, account.token).chat.completions.create(model="balanced", messages=HI, tools=tools)
    assert "specific model" in caught.value.body["message"]


def test_keepalive_while_the_model_thinks(system: System, account: Account) -> None:
    httpx.post(f"{system.mock_url}/_mock/behaviour", json={"model": "gpt-4.1", "ttft_ms": 2500}).raise_for_status()
    try:
        with httpx.stream(
            "POST",
            f"{system.base_url}/chat/completions",
            headers={"authorization": f"Bearer {account.token}"},
            json={"model": "gpt-4.1", "messages": HI, "stream": True},
            timeout=30,
        ) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line]
    finally:
        httpx.delete(f"{system.mock_url}/_mock/behaviour").raise_for_status()
    assert lines[0] == ": keep-alive"
    assert lines[-1] == "data: [DONE]"
    assert any('"content"' in line for line in lines)


def test_sign_in_attempts_for_one_email_are_rate_limited(system: System) -> None:
    email = f"guessed-{uuid.uuid4().hex[:8]}@example.com"
    assert (
        httpx.post(f"{system.base_url}/auth/signup", json={"email": email, "password": "right horse"}).status_code
        == 201
    )
    # The sign-up and nine wrong guesses are the ten attempts a minute an email gets.
    for i in range(9):
        wrong = httpx.post(f"{system.base_url}/auth/login", json={"email": email, "password": f"guess {i}"})
        assert wrong.status_code == 401, wrong.text
    refused = httpx.post(f"{system.base_url}/auth/login", json={"email": email, "password": "right horse"})
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
