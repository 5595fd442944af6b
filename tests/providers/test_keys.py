"""Keys over real gRPC, with keys.v1.changed received from the real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import nats
import orjson
import pytest
from nats.aio.client import Client as NATS

from services.common import events
from stepblend.v1 import providers_pb2
from tests.providers.conftest import Mock, Service, candidate
from tests.support.procs import NatsServer

KEY = "sk-proj-Zx81mQa0000000000000000abcd"


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def test_put_list_connected_delete_publishes_and_serves(
    service: Service, mock: Mock, account: str, bus: NATS
) -> None:
    changes: asyncio.Queue[nats.aio.msg.Msg] = asyncio.Queue()

    async def on_change(msg: nats.aio.msg.Msg) -> None:
        await changes.put(msg)

    await bus.subscribe(events.KEYS_CHANGED, cb=on_change)
    await bus.flush()

    put = await service.keys.Put(providers_pb2.PutKeyRequest(account_id=account, provider="OpenAI", api_key=f" {KEY} "))
    assert put.masked_key == "sk-…abcd"
    msg = await asyncio.wait_for(changes.get(), 5)
    assert events.KeysChanged.model_validate_json(msg.data) == events.KeysChanged(account_id=account, provider="openai")
    assert msg.headers and msg.headers.get(events.MSG_ID)
    assert KEY.encode() not in msg.data

    listed = await service.keys.List(providers_pb2.ListKeysRequest(account_id=account))
    assert [(k.provider, k.masked_key) for k in listed.keys] == [("openai", "sk-…abcd")]
    assert listed.keys[0].updated_at > 1_700_000_000
    assert KEY not in str(listed)
    connected = await service.keys.Connected(providers_pb2.ConnectedRequest(account_id=account))
    assert list(connected.providers) == ["openai"]

    # The stored key is what the provider receives.
    events_ = await service.execute(
        request_id="r",
        account_id=account,
        candidates=[candidate("openai", "gpt-4o-mini")],
        body=orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    assert events_[0].attempt.outcome == "ok"
    [seen] = await mock.requests()
    assert seen["headers"]["authorization"] == f"Bearer {KEY}"

    deleted = await service.keys.Delete(providers_pb2.DeleteKeyRequest(account_id=account, provider="openai"))
    assert deleted.deleted is True
    msg = await asyncio.wait_for(changes.get(), 5)
    assert orjson.loads(msg.data) == {"account_id": account, "provider": "openai"}
    connected = await service.keys.Connected(providers_pb2.ConnectedRequest(account_id=account))
    assert list(connected.providers) == []
    again = await service.keys.Delete(providers_pb2.DeleteKeyRequest(account_id=account, provider="openai"))
    assert again.deleted is False


@pytest.mark.parametrize(
    ("provider", "api_key", "account_id"),
    [
        ("acme", KEY, "a1"),
        ("openai", "", "a1"),
        ("openai", "   ", "a1"),
        ("openai", "sk-with space", "a1"),
        ("openai", KEY, ""),
    ],
)
async def test_put_refuses_bad_input(service: Service, provider: str, api_key: str, account_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await service.keys.Put(providers_pb2.PutKeyRequest(account_id=account_id, provider=provider, api_key=api_key))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert KEY not in (refused.value.details() or "")
