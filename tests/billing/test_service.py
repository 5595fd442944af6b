"""Billing end to end: `serve()` with a real gRPC server, a real nats-server, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import nats
import pytest
from nats.js import JetStreamContext

from services.billing.passwords import hash_password, verify_password
from services.common import events
from stepblend.v1 import billing_pb2, billing_pb2_grpc
from tests.billing.conftest import BACKENDS, service_database_url, usage_event
from tests.billing.harness import Billing, eventually, make_settings, publish
from tests.support.procs import NatsServer


@pytest.fixture(scope="module", params=BACKENDS)
async def billing(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Billing]:
    url = service_database_url(request, request.param)
    running = await Billing(make_settings(tmp_path_factory.mktemp("billing"), nats_server.url, url)).start()
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
    # Events are settled in stream order: once this later one is, every one above is
    # too (whatever else other tests left on the shared stream).
    marker = await billing.stub.CreateAccount(
        billing_pb2.CreateAccountRequest(email=f"marker-{uuid.uuid4().hex[:8]}@x.io", plan="pro")
    )
    assert await publish(js, usage_event(marker.account.account_id, actual_cost_usd="0.01"))

    async def settled() -> bool:
        return billing.rows(marker.account.account_id) == 1

    await eventually(settled)
    account = await billing.account(account_id)
    assert account.requests_this_month == 4
    account = await billing.account(account_id)
    assert Decimal(account.spend_this_month_usd) == Decimal("0.251039000001")
    assert account.spend_this_month_usd == "0.251039000001"
    assert billing.rows(account_id) == len(stream_of_events)


async def _create(billing: Billing, plan: str = "starter", password: str = "") -> billing_pb2.Account:
    email = f"svc-{uuid.uuid4().hex[:8]}@x.io"
    reply = await billing.stub.CreateAccount(
        billing_pb2.CreateAccountRequest(email=email, plan=plan, password=password)
    )
    account: billing_pb2.Account = reply.account
    return account


async def test_verify_password(billing: Billing) -> None:
    account = await _create(billing, password="correct horse")
    reply = await billing.stub.VerifyPassword(
        billing_pb2.VerifyPasswordRequest(email=account.email.upper(), password="correct horse")
    )
    assert reply.account == account
    token_only = await _create(billing)
    refusals = []
    for email, password in [
        (account.email, "wrong horse"),
        ("nobody-" + account.email, "correct horse"),
        (token_only.email, ""),
        ("not an email", "x"),
    ]:
        started = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await billing.stub.VerifyPassword(billing_pb2.VerifyPasswordRequest(email=email, password=password))
        refusals.append((caught.value.code(), caught.value.details(), time.perf_counter() - started))
    # One answer for every way of being wrong, so none tells whether the email has an account.
    assert {(code, details) for code, details, _ in refusals} == {
        (grpc.StatusCode.UNAUTHENTICATED, "the email or the password is wrong")
    }
    # And each took one scrypt check (tens of ms), not an instant "no such email": none
    # is faster than half of one check's own time here (an upper bound would only
    # measure how busy the machine is). The fastest of five: a stall inflates a single timing.
    stored = hash_password("calibration")
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        verify_password(stored, "calibration")
        timings.append(time.perf_counter() - started)
    one_check = min(timings)
    durations = [elapsed for _, _, elapsed in refusals]
    assert min(durations) > 0.5 * one_check, (durations, one_check)


async def test_a_disabled_account_cannot_sign_in(billing: Billing) -> None:
    account = await _create(billing, password="pw-123456")
    await billing.stub.SetDisabled(billing_pb2.SetDisabledRequest(account_id=account.account_id, disabled=True))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.stub.VerifyPassword(billing_pb2.VerifyPasswordRequest(email=account.email, password="pw-123456"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_set_plan_and_disable_announce_the_change(billing: Billing, nats_server: NatsServer) -> None:
    account = await _create(billing, plan="free")
    nc = await nats.connect(nats_server.url)
    try:
        subscription = await nc.subscribe(events.ACCOUNTS_CHANGED)
        moved = await billing.stub.SetPlan(billing_pb2.SetPlanRequest(email=account.email, plan=" PRO "))
        assert moved.account.plan == "pro" and moved.account.monthly_limit == 1_000_000
        disabled = await billing.stub.SetDisabled(
            billing_pb2.SetDisabledRequest(account_id=account.account_id, disabled=True)
        )
        assert disabled.account.disabled
        again = await billing.stub.SetDisabled(
            billing_pb2.SetDisabledRequest(account_id=account.account_id, disabled=False)
        )
        assert not again.account.disabled
        seen = [await subscription.next_msg(timeout=5) for _ in range(3)]
    finally:
        await nc.close()
    assert {events.AccountsChanged.model_validate_json(m.data).account_id for m in seen} == {account.account_id}
    # Each change its own message: a shared id would let the stream drop the second as a duplicate.
    msg_ids = {(m.headers or {}).get(events.MSG_ID) for m in seen}
    assert len(msg_ids) == 3 and None not in msg_ids


@pytest.mark.parametrize(
    ("call", "request_", "code"),
    [
        ("SetPlan", billing_pb2.SetPlanRequest(email="nobody@x.io", plan="pro"), grpc.StatusCode.NOT_FOUND),
        ("SetPlan", billing_pb2.SetPlanRequest(email="nobody@x.io", plan="gold"), grpc.StatusCode.INVALID_ARGUMENT),
        ("SetPlan", billing_pb2.SetPlanRequest(plan="pro"), grpc.StatusCode.INVALID_ARGUMENT),
        ("SetDisabled", billing_pb2.SetDisabledRequest(email="nobody@x.io", disabled=True), grpc.StatusCode.NOT_FOUND),
        ("Admit", billing_pb2.AdmitRequest(account_id="a"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_account_changes_and_admit_map_errors(
    billing: Billing, call: str, request_: object, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(billing.stub, call)(request_)
    assert caught.value.code() == code


async def test_admit_then_settle(billing: Billing, js: JetStreamContext) -> None:
    account = await _create(billing, plan="free")
    tag = uuid.uuid4().hex  # request ids unique per run: the stream drops a repeated Nats-Msg-Id
    answers = [
        await billing.stub.Admit(billing_pb2.AdmitRequest(account_id=account.account_id, request_id=request_id))
        for request_id in (f"{tag}-1", f"{tag}-2", f"{tag}-1")
    ]
    assert [a.allowed for a in answers] == [True, True, True]
    assert [a.remaining for a in answers] == [999, 998, 998]
    this_month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    assert {a.month_start for a in answers} == {int(this_month.timestamp())}
    assert all(a.plan == "free" and a.limit == 1000 and a.reason == "" for a in answers)
    await publish(js, usage_event(account.account_id, request_id=f"{tag}-1"))
    await publish(js, usage_event(account.account_id, request_id=f"{tag}-2", outcome="failed", provider_answered=False))

    async def settled() -> bool:
        return (await billing.account(account.account_id)).requests_this_month == 1 and billing.rows(
            account.account_id
        ) == 2

    await eventually(settled)
    # The second request's slot was released: 998 left after the next one, not 997.
    after = await billing.stub.Admit(billing_pb2.AdmitRequest(account_id=account.account_id, request_id=f"{tag}-3"))
    assert after.remaining == 998

    refused = await billing.stub.Admit(billing_pb2.AdmitRequest(account_id=str(uuid.uuid4()), request_id=f"{tag}-4"))
    assert not refused.allowed and refused.reason == "account_not_found"
    await billing.stub.SetDisabled(billing_pb2.SetDisabledRequest(account_id=account.account_id, disabled=True))
    disabled = await billing.stub.Admit(billing_pb2.AdmitRequest(account_id=account.account_id, request_id=f"{tag}-5"))
    assert not disabled.allowed and disabled.reason == "account_disabled"


async def test_get_account_counts_admitted_requests_before_they_settle(billing: Billing) -> None:
    account = await _create(billing)
    for i in range(3):
        admitted = await billing.stub.Admit(
            billing_pb2.AdmitRequest(account_id=account.account_id, request_id=f"ryw-{uuid.uuid4().hex}-{i}")
        )
        assert admitted.allowed
    # No usage event has been published: the three are reserved, not settled.
    assert (await billing.account(account.account_id)).requests_this_month == 3
