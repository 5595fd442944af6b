"""API keys and budgets through the running system (SPEC.md §7): an application's key
works where a JWT does for inference (Bearer and x-api-key, the openai SDK, gRPC),
never for managing the account, within its limits; revoking it stops it at once;
its requests are listed and billed under it."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import grpc
import httpx
import openai
import pytest

from stepblend.v1 import chat_pb2, chat_pb2_grpc
from tests.e2e.conftest import Account, System
from tests.support.waiting import wait_until

MODEL = "openai:gpt-4o-mini"


def _jwt(account: Account) -> dict[str, str]:
    return {"authorization": f"Bearer {account.token}"}


def _create(system: System, account: Account, **fields: Any) -> dict[str, Any]:
    response = httpx.post(f"{system.base_url}/account/api-keys", headers=_jwt(account), json={"name": "app", **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _chat(system: System, key: str, model: str = MODEL, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{system.base_url}/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, **extra},
        timeout=30,
    )


def _listed(system: System, account: Account, key_id: str) -> dict[str, Any]:
    keys = httpx.get(f"{system.base_url}/account/api-keys", headers=_jwt(account)).json()["data"]
    [found] = [k for k in keys if k["id"] == key_id]
    return dict(found)


def test_a_key_is_shown_once_and_works_like_the_jwt_for_inference(system: System, account: Account) -> None:
    created = _create(system, account, name="backend")
    key = created["key"]
    assert key.startswith("sb-") and len(key) >= 43
    assert created["hint"] == f"sb-…{key[-4:]}" and created["revoked"] is False
    listed = _listed(system, account, created["id"])
    assert "key" not in listed and key not in str(listed)

    client = openai.OpenAI(api_key=key, base_url=system.base_url)
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content
    by_x_api_key = httpx.post(
        f"{system.base_url}/chat/completions",
        headers={"x-api-key": key},
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert by_x_api_key.status_code == 200
    account_view = httpx.get(f"{system.base_url}/account", headers={"authorization": f"Bearer {key}"})
    assert account_view.status_code == 200 and account_view.json()["email"] == account.email

    def billed() -> dict[str, Any] | None:
        row = _listed(system, account, created["id"])
        return row if row["requests_this_month"] == 2 and row["spend_this_month_usd"] > 0 else None

    row = wait_until(billed, 20, "the key's two requests billed")
    assert row["last_used"] is not None
    usage = httpx.get(
        f"{system.base_url}/account/usage", headers=_jwt(account), params={"api_key_id": created["id"]}
    ).json()
    assert len(usage["data"]) == 2 and {r["api_key_id"] for r in usage["data"]} == {created["id"]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/account/api-keys", {"name": "minted"}),
        ("GET", "/account/api-keys", None),
        ("GET", "/account/keys", None),
        ("PUT", "/account/keys/openai", {"api_key": "sk-stolen"}),
        ("PATCH", "/account", {"monthly_budget_usd": 1000}),
        ("GET", "/account/usage", None),
    ],
)
def test_a_key_cannot_manage_the_account(
    system: System, account: Account, method: str, path: str, body: dict[str, Any] | None
) -> None:
    key = _create(system, account)["key"]
    response = httpx.request(method, f"{system.base_url}{path}", headers={"authorization": f"Bearer {key}"}, json=body)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "jwt_required")


def test_a_revoked_key_stops_at_once_and_says_so(system: System, account: Account) -> None:
    created = _create(system, account)
    assert _chat(system, created["key"]).status_code == 200  # cached as verified now
    revoked = httpx.delete(f"{system.base_url}/account/api-keys/{created['id']}", headers=_jwt(account))
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    response = _chat(system, created["key"])
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert "revoked" in response.json()["error"]["message"]
    assert _chat(system, "sb-" + "x" * 43).status_code == 401
    other = httpx.delete(f"{system.base_url}/account/api-keys/key_nope", headers=_jwt(account))
    assert other.status_code == 404 and other.json()["error"]["code"] == "api_key_not_found"


def test_allowed_models_refuse_others_and_bound_a_strategy(system: System, account: Account) -> None:
    key = _create(system, account, allowed_models=["gpt-4o-mini", "lowest-cost"])["key"]
    assert _chat(system, key, "gpt-4o-mini").status_code == 200
    # The model's other names are the same model: its dated snapshot, with or without its provider.
    for alias in ("gpt-4o-mini-2024-07-18", "openai:gpt-4o-mini-2024-07-18"):
        answer = _chat(system, key, alias)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stepblend"]["routed_model"] == "gpt-4o-mini"
    refused = _chat(system, key, "gpt-4o")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("permission_error", "model_not_allowed", "model")
    assert "'gpt-4o'" in error["message"] and "gpt-4o-mini" in error["message"]
    assert _chat(system, key, "fastest").json()["error"]["code"] == "model_not_allowed"
    # Claude clients get the refusal in Anthropic's shape.
    claude = httpx.post(
        f"{system.base_url}/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": "gpt-4o", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert claude.status_code == 403 and claude.json()["error"]["type"] == "permission_error"
    only_a_strategy = _create(system, account, allowed_models=["fastest"])["key"]
    assert _chat(system, only_a_strategy, "gpt-4o-mini").json()["error"]["code"] == "model_not_allowed"
    strategy = _chat(system, key, "lowest-cost")
    assert strategy.status_code == 200
    assert strategy.json()["stepblend"]["routed_model"] == "gpt-4o-mini"
    # Nor may the request rank them by a strategy the key does not list.
    reranked = _chat(system, key, "lowest-cost", stepblend_strategy="fastest")
    assert reranked.status_code == 403
    assert (reranked.json()["error"]["code"], reranked.json()["error"]["param"]) == (
        "model_not_allowed",
        "stepblend_strategy",
    )
    assert _chat(system, key, "lowest-cost", stepblend_strategy="lowest_cost").status_code == 200


def test_a_keys_request_limit_and_rpm_are_429s_the_sdk_understands(system: System, account: Account) -> None:
    limited = _create(system, account, monthly_request_limit=2)["key"]
    assert [_chat(system, limited).status_code for _ in range(2)] == [200, 200]
    over = _chat(system, limited)
    assert over.status_code == 429 and over.json()["error"]["code"] == "key_limit_exceeded"
    assert over.headers["x-should-retry"] == "false"

    paced = _create(system, account, rpm=2)["key"]
    assert [_chat(system, paced).status_code for _ in range(2)] == [200, 200]
    fast = _chat(system, paced)
    assert fast.status_code == 429 and fast.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(fast.headers["retry-after"]) <= 60


def test_an_expired_key_is_refused(system: System, account: Account) -> None:
    created = _create(system, account, expires_at=int(time.time()) + 6)
    assert _chat(system, created["key"]).status_code == 200
    time.sleep(max(0.0, created["expires_at"] - time.time()) + 0.1)
    expired = _chat(system, created["key"])
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


def test_budgets_refuse_a_worst_case_that_does_not_fit(system: System, account: Account) -> None:
    # gpt-4o-mini writes at most 16,384 tokens at $0.60/M: about $0.0098 at worst.
    key = _create(system, account, monthly_budget_usd=0.005)["key"]
    refused = _chat(system, key, MODEL, max_tokens=None)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "budget_exceeded")
    assert "max_tokens" in error["message"] and refused.headers["x-should-retry"] == "false"
    assert _chat(system, key, MODEL, max_tokens=8).status_code == 200  # a bounded answer fits

    budget = httpx.patch(f"{system.base_url}/account", headers=_jwt(account), json={"monthly_budget_usd": 0})
    assert budget.status_code == 200 and budget.json()["monthly_budget_usd"] == 0
    refused = _chat(system, account.token)
    assert refused.status_code == 429 and "account's monthly budget" in refused.json()["error"]["message"]
    cleared = httpx.patch(f"{system.base_url}/account", headers=_jwt(account), json={"monthly_budget_usd": None})
    assert cleared.json()["monthly_budget_usd"] is None
    assert _chat(system, account.token).status_code == 200


def test_the_cli_creates_lists_and_revokes_keys(system: System, account: Account) -> None:
    key = system.cli("apikey", "create", account.email, "--name", "cli", "--limit", "5", "--models", "gpt-4o-mini")
    assert key.startswith("sb-")
    assert _chat(system, key, "gpt-4o-mini").status_code == 200
    [line] = [row for row in system.cli("apikey", "list", account.email).splitlines() if "\tcli\t" in row]
    key_id, _name, hint, state = line.split("\t")[:4]
    assert (hint, state) == (f"sb-…{key[-4:]}", "active")
    system.cli("apikey", "revoke", account.email, key_id)
    assert _chat(system, key, "gpt-4o-mini").status_code == 401
    # Every limit the CLI offers reaches the key.
    before = int(time.time())
    bounded = system.cli(
        "apikey", "create", account.email, "--name", "cli-bounded", "--budget", "5", "--rpm", "7", "--expires-days", "3"
    )
    keys = httpx.get(f"{system.base_url}/account/api-keys", headers=_jwt(account)).json()["data"]
    [row] = [k for k in keys if k["name"] == "cli-bounded"]
    assert (Decimal(str(row["monthly_budget_usd"])), row["rpm"]) == (Decimal(5), 7)
    assert before + 3 * 86_400 <= row["expires_at"] <= int(time.time()) + 3 * 86_400
    assert _chat(system, bounded, "gpt-4o-mini").status_code == 200


def test_the_grpc_chat_api_takes_a_key_with_its_limits(system: System, account: Account) -> None:
    key = _create(system, account, allowed_models=["gpt-4o-mini"])["key"]
    request = chat_pb2.ChatRequest(model="gpt-4o-mini", messages=[chat_pb2.ChatMessage(role="user", content="hi")])
    with grpc.insecure_channel(system.chat_addr) as channel:
        stub = chat_pb2_grpc.ChatStub(channel)
        metadata = (("authorization", f"Bearer {key}"),)
        answer = stub.Complete(request, metadata=metadata, timeout=30)
        assert answer.choices[0].message.content
        request.model = "gpt-4o"
        with pytest.raises(grpc.RpcError) as refused:
            stub.Complete(request, metadata=metadata, timeout=30)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
