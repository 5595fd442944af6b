"""Refusals of StepBlend's own services, as the client sees them: each call goes
through rpc.call, which maps the gRPC status the caller expects to its domain
error (and any other to a 503/504), against the real billing and providers."""

from __future__ import annotations

import uuid

import pytest

from tests.gateway.conftest import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_account_calls_answer_the_errors_their_statuses_mean(gateway: Stack) -> None:
    http = gateway.http
    email = f"dup-{uuid.uuid4().hex[:12]}@example.com"
    assert (await http.post("/v1/auth/signup", json={"email": email, "password": "pw-12345678"})).status_code == 201
    again = await http.post("/v1/auth/signup", json={"email": email, "password": "pw-12345678"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "account_exists"
    wrong = await http.post("/v1/auth/login", json={"email": email, "password": "not-the-password"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "Wrong email or password."
    unknown = await http.post("/v1/auth/login", json={"email": f"x{email}", "password": "pw-12345678"})
    assert unknown.status_code == 401 and unknown.json()["error"]["message"] == "Wrong email or password."


async def test_key_calls_answer_the_errors_their_statuses_mean(gateway: Stack) -> None:
    _, headers = await gateway.account()
    bad = await gateway.http.put("/v1/account/keys/no-such-vendor", headers=headers, json={"api_key": "sk-x-1234"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "provider"
    missing = await gateway.http.delete("/v1/account/keys/groq", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
    listed = await gateway.http.get("/v1/account/keys", headers=headers)
    assert [k["provider"] for k in listed.json()["data"]] == ["openai"]
    assert "sk-openai-test" not in listed.text
