"""Keys of several fields (SPEC.md §11), Azure's `{api_key, endpoint, deployments}`:
validated by the real Keys service over gRPC, sealed whole in the real vault, and
listed with every secret field masked."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from services.providers.vault import KeyVault, make_engine, new_kek, parse_kek
from services.providers.vendors import load_vendors
from stepblend.v1 import providers_pb2
from tests.providers.conftest import Service

API_KEY = "4f1c0d2e9b8a7c6d5e4f3a2b1c0dabcd"
ENDPOINT = "https://contoso-eastus.openai.azure.com"
DEPLOYMENTS = {"gpt-4o": "contoso-4o", "gpt-4o-mini": "mini_2024.07"}
AZURE = {"api_key": API_KEY, "endpoint": ENDPOINT, "deployments": DEPLOYMENTS}


def put(account: str, fields: object, provider: str = "azure") -> providers_pb2.PutKeyRequest:
    return providers_pb2.PutKeyRequest(account_id=account, provider=provider, api_key=orjson.dumps(fields).decode())


async def test_an_azure_key_is_stored_whole_and_listed_masked(service: Service, account: str) -> None:
    stored = await service.keys.Put(put(account, {**AZURE, "endpoint": ENDPOINT.upper() + "/"}))
    shown = {"api_key": "…abcd", "endpoint": ENDPOINT, "deployments": DEPLOYMENTS}
    assert stored.masked_key == "…abcd"
    assert orjson.loads(stored.fields_json) == shown
    listed = await service.keys.List(providers_pb2.ListKeysRequest(account_id=account))
    [key] = listed.keys
    assert (key.provider, key.masked_key, orjson.loads(key.fields_json)) == ("azure", "…abcd", shown)
    assert API_KEY not in str(listed) and API_KEY not in str(stored)
    connected = await service.keys.Connected(providers_pb2.ConnectedRequest(account_id=account))
    assert list(connected.providers) == ["azure"]


async def test_the_cognitive_services_host_is_an_azure_endpoint_too(service: Service, account: str) -> None:
    endpoint = "https://contoso.cognitiveservices.azure.com/"
    stored = await service.keys.Put(put(account, {**AZURE, "endpoint": endpoint}))
    assert orjson.loads(stored.fields_json)["endpoint"] == "https://contoso.cognitiveservices.azure.com"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"endpoint": ENDPOINT, "deployments": DEPLOYMENTS}, "api_key"),
        ({"api_key": API_KEY, "deployments": DEPLOYMENTS}, "endpoint"),
        ({"api_key": API_KEY, "endpoint": ENDPOINT}, "deployments"),
        ({**AZURE, "region": "eastus"}, "region"),
        ({**AZURE, "api_key": ""}, "api_key"),
        ({**AZURE, "api_key": "two words"}, "api_key"),
        ({**AZURE, "endpoint": "http://contoso.openai.azure.com"}, "endpoint"),
        ({**AZURE, "endpoint": "https://contoso.openai.azure.com.evil.example"}, "endpoint"),
        ({**AZURE, "endpoint": "https://evil.example/contoso.openai.azure.com"}, "endpoint"),
        ({**AZURE, "endpoint": "https://a.b.openai.azure.com"}, "endpoint"),
        ({**AZURE, "endpoint": "https://openai.azure.com"}, "endpoint"),
        ({**AZURE, "endpoint": "https://127.0.0.1"}, "endpoint"),
        ({**AZURE, "endpoint": "https://localhost"}, "endpoint"),
        ({**AZURE, "endpoint": "https://[::1]"}, "endpoint"),
        ({**AZURE, "endpoint": "https://contoso.openai.azure.com:8443"}, "endpoint"),
        ({**AZURE, "endpoint": "https://user@contoso.openai.azure.com"}, "endpoint"),
        ({**AZURE, "endpoint": "https://contoso.openai.azure.com/openai?x=1"}, "endpoint"),
        ({**AZURE, "endpoint": 7}, "endpoint"),
        ({**AZURE, "deployments": {}}, "deployments"),
        ({**AZURE, "deployments": ["gpt-4o"]}, "deployments"),
        ({**AZURE, "deployments": {"gpt-4o": "../../admin"}}, "deployments"),
        ({**AZURE, "deployments": {"gpt-4o": 4}}, "deployments"),
    ],
)
async def test_put_refuses_a_wrong_field_naming_it(service: Service, account: str, fields: object, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.keys.Put(put(account, fields))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert details.startswith(f"{field}: ")
    assert API_KEY not in details
    listed = await service.keys.List(providers_pb2.ListKeysRequest(account_id=account))
    assert list(listed.keys) == []


async def test_a_bare_key_is_not_an_azure_key(service: Service, account: str) -> None:
    request = providers_pb2.PutKeyRequest(account_id=account, provider="azure", api_key=API_KEY)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.keys.Put(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "api_key, endpoint, deployments" in (refused.value.details() or "")


async def test_a_one_field_provider_takes_its_key_as_an_object_and_nothing_else(service: Service, account: str) -> None:
    stored = await service.keys.Put(put(account, {"api_key": "sk-proj-0123456789abcdefwxyz"}, "openai"))
    assert (stored.masked_key, stored.fields_json) == ("sk-…wxyz", "")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.keys.Put(
            put(account, {"api_key": "sk-proj-0123456789abcdefwxyz", "endpoint": ENDPOINT}, "openai")
        )
    assert (refused.value.details() or "").startswith("endpoint: unknown field")


def test_a_multi_field_secret_round_trips_sealed_and_never_shows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/providers.db")
    vault = KeyVault(engine, parse_kek(new_kek()))
    vault.create_tables()
    fields = load_vendors()["azure"].fields
    assert fields is not None
    secret = fields.check(orjson.dumps(AZURE).decode())
    shown = fields.shown(secret)
    vault.put("a1", "azure", secret, masked=shown["api_key"], shown=orjson.dumps(shown).decode())
    opened = vault.get_plaintext("a1", "azure")
    assert isinstance(opened, SecretStr) and orjson.loads(opened.get_secret_value()) == AZURE
    with engine.connect() as conn:
        row = conn.execute(text("SELECT sealed, masked, shown FROM provider_keys")).one()
    assert API_KEY.encode() not in row.sealed and ENDPOINT.encode() not in row.sealed
    assert row.masked == "…abcd" and API_KEY not in row.shown
    bound = fields.bind(opened, "gpt-4o")
    assert (bound.base_url, bound.deployment, bound.api_key.get_secret_value()) == (ENDPOINT, "contoso-4o", API_KEY)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").debug("opened %s %r bound %s %r", opened, opened, bound, bound)
    assert API_KEY not in caplog.text and API_KEY[-6:] not in caplog.text
    assert [(k.provider, k.masked, orjson.loads(k.shown)) for k in vault.list_keys("a1")] == [
        ("azure", "…abcd", {"api_key": "…abcd", "endpoint": ENDPOINT, "deployments": DEPLOYMENTS})
    ]
    engine.dispose()
