"""An account's month read back from the ledger (`usage.py`), and `ListUsage` over gRPC."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal

import grpc
import pytest
from nats.js import JetStreamContext
from sqlmodel import Session

from services.billing import usage
from services.billing.months import month_key
from stepblend.v1 import billing_pb2
from tests.billing.conftest import BACKENDS, service_database_url, settle_event, usage_event
from tests.billing.harness import Billing, FakeClock, eventually, make_settings, publish
from tests.support.procs import NatsServer

# The 10th of March at noon: days 1..10 of the month so far.
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
MONTH = month_key(NOW)


def _at(day: int, hour: int = 12) -> float:
    return datetime(2025, 3, day, hour, tzinfo=UTC).timestamp()


def test_recent_requests_are_this_months_newest_first(session: Session) -> None:
    for day in (2, 5, 9):
        settle_event(session, usage_event("acct", request_id=f"req-{day}", admitted_at=_at(day)))
    settle_event(session, usage_event("acct", request_id="req-feb", admitted_at=_at(1) - 86400))  # February
    settle_event(session, usage_event("other", request_id="req-other", admitted_at=_at(9, 13)))

    rows = usage.recent_requests(session, "acct", MONTH)
    assert [r.request_id for r in rows] == ["req-9", "req-5", "req-2"]
    assert [r.request_id for r in usage.recent_requests(session, "acct", MONTH, limit=2)] == ["req-9", "req-5"]
    newest = rows[0]
    assert newest.admitted_at == datetime.fromtimestamp(_at(9), UTC)
    assert (newest.model, newest.provider, newest.outcome, newest.counted) == (
        "gpt-4o-mini",
        "openai",
        "completed",
        True,
    )
    assert (newest.prompt_tokens, newest.completion_tokens, newest.latency_ms) == (12, 30, 420)
    assert newest.cost_usd == Decimal("0.000039")


def test_limit_is_bounded(session: Session) -> None:
    for n in range(usage.MAX_LIMIT + 5):
        settle_event(session, usage_event("acct", request_id=f"req-{n:04d}", admitted_at=_at(3) + n))
    assert len(usage.recent_requests(session, "acct", MONTH, limit=10_000)) == usage.MAX_LIMIT
    assert len(usage.recent_requests(session, "acct", MONTH, limit=0)) == 1


def test_cost_is_actual_else_estimate_and_zero_when_not_counted(session: Session) -> None:
    settle_event(session, usage_event("acct", request_id="a-actual", admitted_at=_at(4, 1)))
    settle_event(session, usage_event("acct", request_id="b-estimate", admitted_at=_at(4, 2), actual_cost_usd=None))
    settle_event(
        session,
        usage_event(
            "acct",
            request_id="c-failed",
            admitted_at=_at(4, 3),
            outcome="failed",
            provider_answered=False,
            actual_cost_usd=None,
            error_code="provider_timeout",
        ),
    )
    rows = {r.request_id: r for r in usage.recent_requests(session, "acct", MONTH)}
    assert rows["a-actual"].cost_usd == Decimal("0.000039")
    assert rows["b-estimate"].cost_usd == Decimal("0.000042")
    failed = rows["c-failed"]
    assert failed.cost_usd == 0 and failed.outcome == "failed" and not failed.counted
    assert failed.error_code == "provider_timeout"


def test_daily_counts_cover_every_day_so_far_and_only_counted_requests(session: Session) -> None:
    for day, hour in ((1, 0), (1, 23), (4, 9), (10, 11)):
        settle_event(session, usage_event("acct", admitted_at=_at(day, hour)))
    settle_event(session, usage_event("acct", admitted_at=_at(4), outcome="failed", provider_answered=False))
    settle_event(session, usage_event("other", admitted_at=_at(4)))
    settle_event(session, usage_event("acct", admitted_at=_at(1, 0) - 3600))  # 23:00 on Feb 28: another month

    days = usage.daily_counts(session, "acct", NOW)
    assert [d.day for d in days] == [date(2025, 3, n) for n in range(1, 11)]
    assert {d.day.day: d.requests for d in days if d.requests} == {1: 2, 4: 1, 10: 1}


def test_daily_counts_of_a_quiet_month_are_zeros(session: Session) -> None:
    days = usage.daily_counts(session, "acct", datetime(2025, 2, 28, 23, 59, tzinfo=UTC))
    assert len(days) == 28 and all(d.requests == 0 for d in days)


@pytest.fixture(scope="module", params=BACKENDS)
async def billing(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Billing, FakeClock]]:
    url = service_database_url(request, request.param)
    clock = FakeClock(NOW.timestamp())
    running = await Billing(
        make_settings(tmp_path_factory.mktemp("billing"), nats_server.url, url), clock=clock
    ).start()
    yield running, clock
    await running.stop()
    await running.close()


async def test_list_usage_over_grpc(billing: tuple[Billing, FakeClock], js: JetStreamContext) -> None:
    service, _ = billing
    created = await service.stub.CreateAccount(
        billing_pb2.CreateAccountRequest(email=f"usage-{uuid.uuid4().hex[:8]}@x.io", plan="starter")
    )
    account_id = created.account.account_id
    answered = usage_event(account_id, admitted_at=_at(8), actual_cost_usd="0.0125")
    failed = usage_event(
        account_id, admitted_at=_at(9), outcome="failed", provider_answered=False, error_code="provider_error"
    )
    for event in (answered, failed):
        await publish(js, event)

    async def settled() -> bool:
        return service.rows(account_id) == 2

    await eventually(settled)
    reply = await service.stub.ListUsage(billing_pb2.ListUsageRequest(account_id=account_id))
    assert reply.month == "2025-03"
    assert reply.account.requests_this_month == 1 and reply.account.monthly_limit == 50_000
    assert reply.account.spend_this_month_usd == "0.0125"
    assert [r.request_id for r in reply.requests] == [failed.request_id, answered.request_id]
    newest, oldest = reply.requests
    assert (newest.outcome, newest.counted, newest.cost_usd, newest.error_code) == (
        "failed",
        False,
        "0",
        "provider_error",
    )
    assert oldest.created == int(_at(8)) and oldest.cost_usd == "0.0125"
    assert (oldest.model, oldest.provider, oldest.prompt_tokens, oldest.completion_tokens) == (
        "gpt-4o-mini",
        "openai",
        12,
        30,
    )
    assert [d.date for d in reply.daily] == [f"2025-03-{n:02d}" for n in range(1, 11)]
    assert [d.requests for d in reply.daily] == [0] * 7 + [1, 0, 0]

    limited = await service.stub.ListUsage(billing_pb2.ListUsageRequest(account_id=account_id, limit=1))
    assert [r.request_id for r in limited.requests] == [failed.request_id]


async def test_list_usage_of_no_account_is_not_found(billing: tuple[Billing, FakeClock]) -> None:
    service, _ = billing
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await service.stub.ListUsage(billing_pb2.ListUsageRequest(account_id=str(uuid.uuid4())))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await service.stub.ListUsage(billing_pb2.ListUsageRequest())
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
