"""Billing end to end: `serve()` with a real gRPC server, a real nats-server and SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from nats.js import JetStreamContext

from services.common import events
from stepblend.v1 import billing_pb2, billing_pb2_grpc
from tests.billing.conftest import usage_event
from tests.billing.harness import Billing, eventually, make_settings, publish
from tests.support.procs import NatsServer


@pytest.fixture(scope="module")
async def billing(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Billing]:
    running = await Billing(make_settings(tmp_path_factory.mktemp("billing"), nats_server.url)).start()
    yield running
    await running.stop()
    await running.close()


async def test_create_and_get_account(billing: Billing) -> None:
    email = f"Ann-{uuid.uuid4().hex[:8]}@Example.com"
    created = await billing.stub.CreateAccount(
        billing_pb2.CreateAccountRequest(email=email, plan="starter", password="pw-123456")
    )
    account = created.account
    assert uuid.UUID(account.account_id)
    assert account.email == email.lower() and account.plan == "starter"
    assert account.monthly_limit == 50_000 and account.requests_this_month == 0
    assert account.spend_this_month_usd == "0" and not account.disabled

    by_email = await billing.stub.GetAccount(billing_pb2.GetAccountRequest(email=email.upper()))
    assert by_email.account == account
    assert await billing.account(account.account_id) == account

    with pytest.raises(grpc.aio.AioRpcError) as exists:
        await billing.stub.CreateAccount(billing_pb2.CreateAccountRequest(email=email.lower()))
    assert exists.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_enterprise_is_unlimited_on_the_wire(billing: Billing) -> None:
    created = await billing.stub.CreateAccount(
        billing_pb2.CreateAccountRequest(email=f"ent-{uuid.uuid4().hex[:8]}@x.io", plan="enterprise")
    )
    assert created.account.monthly_limit == 0


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (billing_pb2.CreateAccountRequest(email="not-an-email"), grpc.StatusCode.INVALID_ARGUMENT),
        (billing_pb2.CreateAccountRequest(email="gold@x.io", plan="gold"), grpc.StatusCode.INVALID_ARGUMENT),
        (billing_pb2.GetAccountRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        (billing_pb2.GetAccountRequest(account_id=str(uuid.uuid4())), grpc.StatusCode.NOT_FOUND),
        (billing_pb2.GetAccountRequest(email="nobody@x.io"), grpc.StatusCode.NOT_FOUND),
    ],
)
async def test_errors_map_to_status_codes(billing: Billing, request_: object, code: grpc.StatusCode) -> None:
    is_create = isinstance(request_, billing_pb2.CreateAccountRequest)
    call = billing.stub.CreateAccount if is_create else billing.stub.GetAccount
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(request_)
    assert caught.value.code() == code


async def test_calls_without_the_internal_token_are_refused(billing: Billing) -> None:
    async with grpc.aio.insecure_channel(billing.address) as bare:
        stub = billing_pb2_grpc.BillingStub(bare)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetAccount(billing_pb2.GetAccountRequest(email="a@x.io"))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_usage_events_are_settled_once(billing: Billing, js: JetStreamContext) -> None:
    created = await billing.stub.CreateAccount(
        billing_pb2.CreateAccountRequest(email=f"usage-{uuid.uuid4().hex[:8]}@x.io", plan="pro")
    )
    account_id = created.account.account_id
    last_month = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).timestamp()
    stream_of_events = [
        usage_event(account_id, actual_cost_usd="0.000039"),
        usage_event(account_id, actual_cost_usd="0.25"),
        # No usage reported: charged its estimate.
        usage_event(account_id, actual_cost_usd=None, estimated_cost_usd="0.001"),
        # A provider answered and the stream broke: counts.
        usage_event(account_id, outcome="failed", actual_cost_usd="0.000000000001"),
        # No provider answered: recorded, not counted.
        usage_event(account_id, outcome="failed", provider_answered=False, actual_cost_usd=None),
        # Admitted last month: counts there, not in this month.
        usage_event(account_id, admitted_at=last_month, actual_cost_usd="3"),
    ]
    for event in stream_of_events:
        assert await publish(js, event)
    # A publisher retry with the same id: dropped by the stream's duplicate window.
    assert not await publish(js, stream_of_events[0])
    # The same request under another message id: stored twice, settled once by the ledger.
    assert await publish(js, stream_of_events[1], msg_id=f"retry-{uuid.uuid4().hex}")

    async def settled() -> bool:
        info = await js.consumer_info(events.USAGE_STREAM, "billing")
        account = await billing.account(account_id)
        return account.requests_this_month == 4 and info.num_pending == 0 and info.num_ack_pending == 0

    await eventually(settled)
    account = await billing.account(account_id)
    assert Decimal(account.spend_this_month_usd) == Decimal("0.251039000001")
    assert account.spend_this_month_usd == "0.251039000001"
    assert billing.rows(account_id) == len(stream_of_events)
