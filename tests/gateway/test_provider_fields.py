"""`PUT /account/keys/{provider}` with a key of several fields (SPEC.md §11, Azure's
`{api_key, endpoint, deployments}`), over HTTP against the real providers service:
each refusal a 400 naming its field, and the key listed with its secret masked."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.conftest import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

API_KEY = "4f1c0d2e9b8a7c6d5e4f3a2b1c0dabcd"
AZURE = {
    "api_key": API_KEY,
    "endpoint": "https://contoso.openai.azure.com/",
    "deployments": {"gpt-4o": "contoso-4o", "gpt-4.1": "gpt-41"},
}


async def test_an_azure_key_is_connected_and_listed_with_its_secret_masked(gateway: Stack) -> None:
    _, headers = await gateway.account()
    put = await gateway.http.put("/api/v1/account/keys/azure", headers=headers, json=AZURE)
    assert put.status_code == 200, put.text
    fields = {"api_key": "…abcd", "endpoint": "https://contoso.openai.azure.com", "deployments": AZURE["deployments"]}
    assert put.json() == {"provider": "azure", "masked_key": "…abcd", "fields": fields}
    listed = await gateway.http.get("/api/v1/account/keys", headers=headers)
    by_provider = {k["provider"]: k for k in listed.json()["data"]}
    assert by_provider["azure"]["fields"] == fields and by_provider["azure"]["masked_key"] == "…abcd"
    # A one-field key is listed as before, without fields.
    assert "fields" not in by_provider["openai"]
    assert API_KEY not in listed.text and API_KEY not in put.text


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"api_key": None}, "api_key"),
        ({"endpoint": None}, "endpoint"),
        ({"deployments": None}, "deployments"),
        ({"region": "eastus"}, "region"),
        ({"endpoint": "https://contoso.example.com"}, "endpoint"),
        ({"endpoint": "http://contoso.openai.azure.com"}, "endpoint"),
        ({"endpoint": "https://169.254.169.254"}, "endpoint"),
        ({"endpoint": "https://localhost"}, "endpoint"),
        ({"deployments": {"gpt-4o": "a/b"}}, "deployments"),
        # Past 64 bits: once a 500, because the edge's JSON encoder refused the number.
        ({"endpoint": -9223372036854775809}, "endpoint"),
        ({"deployments": {"gpt-4o": 2**70}}, "deployments"),
    ],
)
async def test_a_wrong_field_is_a_400_naming_it(gateway: Stack, change: dict[str, Any], param: str) -> None:
    _, headers = await gateway.account()
    body = {name: value for name, value in {**AZURE, **change}.items() if value is not None}
    refused = await gateway.http.put("/api/v1/account/keys/azure", headers=headers, json=body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"].startswith(f"{param}: ")
    assert API_KEY not in refused.text
    listed = await gateway.http.get("/api/v1/account/keys", headers=headers)
    assert [k["provider"] for k in listed.json()["data"]] == ["openai"]


async def test_a_one_field_provider_refuses_another_field(gateway: Stack) -> None:
    _, headers = await gateway.account()
    body = {"api_key": "sk-openai-0123456789abcdef", "endpoint": "https://contoso.openai.azure.com"}
    refused = await gateway.http.put("/api/v1/account/keys/openai", headers=headers, json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "endpoint"
    empty = await gateway.http.put("/api/v1/account/keys/openai", headers=headers, json={})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "api_key"
