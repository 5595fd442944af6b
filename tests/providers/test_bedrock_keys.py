"""Bedrock's AWS credentials as a provider key (SPEC.md §11): validated by the real
Keys service over gRPC, sealed whole, listed with every secret field masked; the
region choosing the endpoint and nothing else; each request signed with SigV4 by
botocore over exactly what is sent (the mock recomputes the signature); and no
secret field in an event, a log line or a listing."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import grpc
import orjson
import pytest
from pydantic import SecretStr

from services.common.logs import JsonFormatter
from services.providers.adapters.bedrock import path, sign
from services.providers.call import for_account
from services.providers.outcomes import Failed
from services.providers.vendors import load_vendors
from stepblend.mockprovider.sigv4 import EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY, check
from stepblend.v1 import providers_pb2
from tests.providers.conftest import Mock, Service, candidate

KEY = {"access_key_id": EXAMPLE_ACCESS_KEY_ID, "secret_access_key": EXAMPLE_SECRET_ACCESS_KEY, "region": "us-east-1"}
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEsessionTOKEN0123456789abcdef"
LLAMA = candidate("bedrock", "llama-3.3-70b", "meta.llama3-3-70b-instruct-v1:0")
OPENAI = candidate("openai", "gpt-4o-mini")


def put(account: str, fields: object) -> providers_pb2.PutKeyRequest:
    return providers_pb2.PutKeyRequest(account_id=account, provider="bedrock", api_key=orjson.dumps(fields).decode())


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "Hello there"}], **fields})


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log record of the process (the service runs in it) at DEBUG, as JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("providers"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_aws_credentials_are_stored_whole_and_listed_masked(service: Service, account: str) -> None:
    stored = await service.keys.Put(put(account, {**KEY, "region": " eu-west-3 ", "session_token": TOKEN}))
    shown = {"access_key_id": "…MPLE", "secret_access_key": "…EKEY", "region": "eu-west-3", "session_token": "…cdef"}
    assert (stored.masked_key, orjson.loads(stored.fields_json)) == ("…MPLE", shown)
    listed = await service.keys.List(providers_pb2.ListKeysRequest(account_id=account))
    [key] = listed.keys
    assert (key.provider, key.masked_key, orjson.loads(key.fields_json)) == ("bedrock", "…MPLE", shown)
    for secret in (EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY, TOKEN):
        assert secret not in str(listed) and secret not in str(stored)


async def test_the_session_token_is_optional(service: Service, account: str) -> None:
    stored = await service.keys.Put(put(account, KEY))
    assert set(orjson.loads(stored.fields_json)) == {"access_key_id", "secret_access_key", "region"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"secret_access_key": EXAMPLE_SECRET_ACCESS_KEY, "region": "us-east-1"}, "access_key_id"),
        ({"access_key_id": EXAMPLE_ACCESS_KEY_ID, "region": "us-east-1"}, "secret_access_key"),
        ({**KEY, "region": None}, "region"),
        ({**KEY, "access_key_id": "akiaiosfodnn7example"}, "access_key_id"),
        ({**KEY, "access_key_id": "AKIA-SHORT"}, "access_key_id"),
        ({**KEY, "secret_access_key": "two words"}, "secret_access_key"),
        ({**KEY, "region": "us-east-1.evil.example"}, "region"),
        ({**KEY, "region": "evil.example/us-east-1"}, "region"),
        ({**KEY, "region": "127.0.0.1"}, "region"),
        ({**KEY, "region": "US-EAST-1"}, "region"),
        ({**KEY, "region": 1}, "region"),
        ({**KEY, "endpoint": "https://evil.example"}, "endpoint"),
        ({**KEY, "session_token": ""}, "session_token"),
        ("AKIAIOSFODNN7EXAMPLE", "access_key_id"),
    ],
)
async def test_put_refuses_a_wrong_field_naming_it(service: Service, account: str, fields: object, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.keys.Put(put(account, fields))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith(f"{field}: ")
    assert EXAMPLE_SECRET_ACCESS_KEY not in str(refused.value.details())


def test_the_region_picks_the_endpoint_and_nothing_else() -> None:
    bedrock = load_vendors()["bedrock"]
    vendor, called, _ = for_account(bedrock, LLAMA, SecretStr(orjson.dumps({**KEY, "region": "eu-west-3"}).decode()))
    assert vendor.url(path(called.upstream_model, False)) == (
        "https://bedrock-runtime.eu-west-3.amazonaws.com/model/meta.llama3-3-70b-instruct-v1:0/converse"
    )
    assert called.upstream_model == LLAMA.upstream_model
    # A stored key that skipped validation (an older release, a hand-edited row) is not called.
    hostile = SecretStr(orjson.dumps({**KEY, "region": "x.evil.example/"}).decode())
    with pytest.raises(Failed) as failed:
        for_account(bedrock, LLAMA, hostile)
    assert failed.value.outcome == "provider_not_connected"


def test_botocore_signs_exactly_what_is_sent() -> None:
    url = "http://127.0.0.1:9/bedrock" + path("meta.llama3-3-70b-instruct-v1:0", True)
    content = body()
    headers = sign(url, {"content-type": "application/json"}, content, orjson.dumps(KEY).decode())
    received = {name.lower(): value for name, value in headers.items()} | {"host": "127.0.0.1:9"}
    raw_path = urlsplit(url).path
    assert received["accept"] == "application/vnd.amazon.eventstream"
    assert received["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={EXAMPLE_ACCESS_KEY_ID}/")
    assert (
        "/us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;x-amz-date,"
        in received["authorization"]
    )
    assert check("POST", raw_path, received, content, ()) is None
    # Anything changed after signing no longer matches: the body, the path, a signed header.
    mismatch = "InvalidSignatureException"
    assert check("POST", raw_path, received, content.replace(b"Hello", b"Hallo"), ())[0] == mismatch  # type: ignore[index]
    assert check("POST", raw_path.replace("converse-stream", "converse"), received, content, ())[0] == mismatch  # type: ignore[index]
    assert check("POST", raw_path, {**received, "content-type": "text/plain"}, content, ())[0] == mismatch  # type: ignore[index]


def test_a_signature_is_good_for_fifteen_minutes_as_at_aws() -> None:
    url = "http://127.0.0.1:9" + path("amazon.nova-pro-v1:0", False)
    headers = sign(url, {"content-type": "application/json"}, b"{}", orjson.dumps(KEY).decode())
    received = {name.lower(): value for name, value in headers.items()} | {"host": "127.0.0.1:9"}
    assert check("POST", urlsplit(url).path, received, b"{}", ()) is None
    stale = {**received, "x-amz-date": "20200101T000000Z"}
    refused = check("POST", urlsplit(url).path, stale, b"{}", ())
    assert refused is not None and refused[1].startswith("Signature expired")


def test_a_session_token_travels_signed() -> None:
    url = "http://127.0.0.1:9" + path("amazon.nova-pro-v1:0", False)
    headers = sign(
        url, {"content-type": "application/json"}, b"{}", orjson.dumps({**KEY, "session_token": TOKEN}).decode()
    )
    assert headers["X-Amz-Security-Token"] == TOKEN
    assert "x-amz-security-token" in headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")


async def test_a_call_is_signed_for_the_keys_region_and_verified(service: Service, mock: Mock, account: str) -> None:
    await service.keys.Put(put(account, {**KEY, "region": "ap-southeast-2"}))
    events = await service.execute(request_id="sig", account_id=account, candidates=[LLAMA], body=body())
    assert [e.WhichOneof("event") for e in events] == ["attempt", "completion", "usage"]
    [seen] = await mock.requests()
    assert (
        "/20" in seen["headers"]["authorization"]
        and "/ap-southeast-2/bedrock/aws4_request" in seen["headers"]["authorization"]
    )


async def test_an_access_key_id_aws_does_not_know_is_a_rejected_key(service: Service, mock: Mock, account: str) -> None:
    unknown = "AKIAUNKNOWN000000000"
    await service.keys.Put(put(account, {**KEY, "access_key_id": unknown}))
    await service.keys.Put(
        providers_pb2.PutKeyRequest(account_id=account, provider="openai", api_key="sk-openai-0123456789abcdef")
    )
    events = await service.execute(request_id="unk", account_id=account, candidates=[LLAMA, OPENAI], body=body())
    outcomes = [(e.attempt.provider, e.attempt.outcome, e.attempt.status) for e in events if e.HasField("attempt")]
    assert outcomes == [("bedrock", "provider_key_invalid", 403), ("openai", "ok", 200)]
    assert unknown not in str(events) and EXAMPLE_SECRET_ACCESS_KEY not in str(events)


async def test_no_secret_field_in_events_or_logs_even_when_quoted_back(
    service: Service, mock: Mock, account: str, log_lines: io.StringIO
) -> None:
    await service.keys.Put(put(account, {**KEY, "session_token": TOKEN}))
    quoting = f"Bad request for {EXAMPLE_ACCESS_KEY_ID} / {EXAMPLE_SECRET_ACCESS_KEY} / {TOKEN}"
    events: list[providers_pb2.ExecuteEvent] = []
    for status in (400, 500):
        await mock.behave(model=LLAMA.upstream_model, status=status, message=quoting)
        events += await service.execute(request_id="leak", account_id=account, candidates=[LLAMA], body=body())
    await mock.reset()
    await mock.behave(model=LLAMA.upstream_model, stream_error="modelStreamErrorException", message=quoting)
    events += await service.execute(
        request_id="leak", account_id=account, candidates=[LLAMA], body=body(stream=True), stream=True
    )
    await mock.reset()
    events += await service.execute(request_id="ok", account_id=account, candidates=[LLAMA], body=body())
    assert any("Bad request for [key]" in str(e) for e in events), "the provider's words are kept, scrubbed"
    lines = log_lines.getvalue()
    assert "failed" in lines, "the attempts were logged"
    for secret in (EXAMPLE_ACCESS_KEY_ID, EXAMPLE_SECRET_ACCESS_KEY, TOKEN):
        assert secret not in str(events)
        assert secret not in lines
