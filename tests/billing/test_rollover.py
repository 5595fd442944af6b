"""Test (d): month rollover with an injected clock, through a running billing.

Billing's clock stands at 23:59:59 UTC on January 31st, then steps into
February. A request admitted in that last second counts in January whenever
its usage event arrives (even one whose admitted_at, from the gateway's clock,
already says February); February starts at zero. Also: a reservation whose
event never comes is freed once its TTL has passed on billing's clock.

In its own module: every running billing shares the durable consumer
"billing" (see test_restart.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from sqlmodel import Session

from services.billing import counters
from services.billing.db import database_url, make_engine
from services.billing.options import BillingOptions
from stepblend.v1 import billing_pb2
from tests.billing.conftest import BACKENDS, service_database_url, usage_event
from tests.billing.harness import Billing, FakeClock, eventually, make_settings, publish
from tests.support.procs import NatsServer

LAST_SECOND_OF_JANUARY = datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC)
FEBRUARY = datetime(2025, 2, 1, tzinfo=UTC)
TTL = timedelta(seconds=1)


@pytest.fixture(params=BACKENDS)
async def billing(
    request: pytest.FixtureRequest, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[tuple[Billing, FakeClock]]:
    plans = tmp_path / "plans.toml"
    plans.write_text("[plans]\ntrial = 3\n")
    settings = make_settings(
        tmp_path / "data", nats_server.url, service_database_url(request, request.param), str(plans)
    )
    clock = FakeClock(LAST_SECOND_OF_JANUARY.timestamp())
    running = await Billing(settings, clock=clock, options=BillingOptions(reservation_ttl=TTL)).start()
    yield running, clock
    await running.stop()
    await running.close()


def _counts(billing: Billing, account_id: str, month: str) -> counters.Counts:
    engine = make_engine(database_url(billing.settings))
    try:
        with Session(engine) as session:
            counts = counters.read(session.connection(), counters.ACCOUNTS, account_id, month)
            return counters.Counts(counts.used, counts.reserved)
    finally:
        engine.dispose()


async def test_a_request_admitted_in_the_last_second_counts_in_that_month(
    billing: tuple[Billing, FakeClock], js: JetStreamContext
) -> None:
    service, clock = billing
    reply = await service.stub.CreateAccount(billing_pb2.CreateAccountRequest(email="rollover@x.io"))
    account_id = reply.account.account_id
    tag = reply.account.account_id[:8]  # request ids unique per run: the stream drops a repeated Nats-Msg-Id

    async def admit(n: int) -> billing_pb2.AdmitResponse:
        answer: billing_pb2.AdmitResponse = await service.stub.Admit(
            billing_pb2.AdmitRequest(account_id=account_id, request_id=f"{tag}-{n}")
        )
        return answer

    january = [await admit(n) for n in range(4)]
    assert [a.allowed for a in january] == [True, True, True, False]
    assert {a.month_start for a in january} == {int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())}
    # The gateway's clock is two seconds ahead: its admitted_at says February.
    gateway_time = (LAST_SECOND_OF_JANUARY + timedelta(seconds=2)).timestamp()
    await publish(js, usage_event(account_id, request_id=f"{tag}-0", admitted_at=gateway_time))

    async def counted_in_january() -> bool:
        return _counts(service, account_id, "2025-01") == counters.Counts(used=1, reserved=2)

    await eventually(counted_in_january)
    # Read-your-writes: the two admitted, not yet settled, count in January too.
    assert (await service.account(account_id)).requests_this_month == 3

    clock.now = FEBRUARY.timestamp()
    fresh = await service.account(account_id)
    assert fresh.requests_this_month == 0 and fresh.spend_this_month_usd == "0"
    february = [await admit(n) for n in range(10, 14)]
    assert [a.allowed for a in february] == [True, True, True, False]
    assert [a.remaining for a in february] == [2, 1, 0, 0]
    assert {a.month_start for a in february} == {int(FEBRUARY.timestamp())}

    # January's other two requests settle after midnight: they count in January.
    await publish(js, usage_event(account_id, request_id=f"{tag}-1", admitted_at=gateway_time))
    await publish(js, usage_event(account_id, request_id=f"{tag}-2", admitted_at=gateway_time))

    async def settled() -> bool:
        return service.rows(account_id) == 3

    await eventually(settled)
    assert _counts(service, account_id, "2025-01") == counters.Counts(used=3, reserved=0)
    # February shows its own three admitted requests (unsettled, read-your-writes), none of January's.
    assert _counts(service, account_id, "2025-02") == counters.Counts(used=0, reserved=3)
    assert (await service.account(account_id)).requests_this_month == 3
    print(f"rollover: January used=3, February taken={_counts(service, account_id, '2025-02').taken}")


async def test_a_reservation_without_an_event_expires_on_billings_clock(billing: tuple[Billing, FakeClock]) -> None:
    service, clock = billing
    reply = await service.stub.CreateAccount(billing_pb2.CreateAccountRequest(email="expiry@x.io"))
    account_id = reply.account.account_id
    for n in range(3):
        assert (await service.stub.Admit(billing_pb2.AdmitRequest(account_id=account_id, request_id=f"x{n}"))).allowed
    full = await service.stub.Admit(billing_pb2.AdmitRequest(account_id=account_id, request_id="x3"))
    assert not full.allowed
    clock.now += TTL.total_seconds() + 1  # the gateways that asked crashed; no event will come

    async def freed() -> bool:
        return _counts(service, account_id, "2025-01") == counters.Counts(used=0, reserved=0)

    await eventually(freed)
    assert (await service.stub.Admit(billing_pb2.AdmitRequest(account_id=account_id, request_id="x3"))).allowed
