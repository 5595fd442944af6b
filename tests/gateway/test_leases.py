"""Admission from leases (services/gateway/leases.py) with the real billing behind
the gateway (conftest.py): a run of requests costs a few Lease calls, not an Admit
each; the slots a gateway holds come back when it stops; an account with a budget
leases USD of it too, and near the budget is admitted one request at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from services.billing.db import database_url, make_engine
from services.billing.models import Lease, LeaseState, MonthCounter, Reservation
from services.gateway.settings import GatewaySettings
from tests.gateway.conftest import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


@contextmanager
def _billing_db(gateway: Stack) -> Iterator[Engine]:
    engine = make_engine(database_url(gateway.settings))
    try:
        yield engine
    finally:
        engine.dispose()


def _leases(gateway: Stack, account_id: str) -> list[Lease]:
    with _billing_db(gateway) as engine, Session(engine) as session:
        rows = session.exec(select(Lease).where(col(Lease.account_id) == account_id)).all()
        return sorted(rows, key=lambda lease: lease.created_at)


def _reservations(gateway: Stack, account_id: str) -> int:
    with _billing_db(gateway) as engine, Session(engine) as session:
        return len(session.exec(select(Reservation).where(col(Reservation.account_id) == account_id)).all())


def _money(gateway: Stack, account_id: str) -> tuple[Decimal, Decimal]:
    """The account's month: spent, and held for requests in flight (USD)."""
    with _billing_db(gateway) as engine, Session(engine) as session:
        row = session.exec(select(MonthCounter).where(col(MonthCounter.account_id) == account_id)).one()
        return row.spent_usd, row.reserved_usd


def _counter(gateway: Stack, account_id: str) -> tuple[int, int]:
    with _billing_db(gateway) as engine, Session(engine) as session:
        row = session.exec(select(MonthCounter).where(col(MonthCounter.account_id) == account_id)).one()
        return row.used, row.reserved


async def _wait(check: object, what: str) -> None:
    for _ in range(200):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not true after 10 s")


async def test_thirty_requests_in_a_row_take_three_leases_and_no_admit(gateway: Stack) -> None:
    account_id, headers = await gateway.account()
    for _ in range(30):
        response = await gateway.http.post("/v1/chat/completions", headers=headers, json=BODY)
        assert response.status_code == 200
    leases = _leases(gateway, account_id)
    # Each ran dry within its window, so the next was twice its size: 4 + 8 + 16 + 32 covers 30.
    assert [lease.granted for lease in leases] == [4, 8, 16, 32]
    assert _reservations(gateway, account_id) == 0
    await _wait(lambda: _counter(gateway, account_id)[0] == 30, "the 30 requests counted")


async def test_a_lease_down_to_a_quarter_is_renewed_before_it_runs_dry(gateway: Stack) -> None:
    account_id, headers = await gateway.account()
    for _ in range(3):
        assert (await gateway.http.post("/v1/chat/completions", headers=headers, json=BODY)).status_code == 200
    # One slot of the first 4 is left, and the next lease (8) is already held, so
    # the request that takes the last slot and the one after it ask billing nothing.
    await _wait(lambda: [lease.granted for lease in _leases(gateway, account_id)] == [4, 8], "the next lease held")
    await _wait(lambda: _counter(gateway, account_id) == (3, 1 + 8), "3 counted, 1 + 8 held")
    for _ in range(2):
        assert (await gateway.http.post("/v1/chat/completions", headers=headers, json=BODY)).status_code == 200
    assert [lease.granted for lease in _leases(gateway, account_id)] == [4, 8]
    await _wait(lambda: _counter(gateway, account_id) == (5, 7), "5 counted, 7 held")


async def test_a_stopping_gateway_returns_its_unused_slots(gateway: Stack) -> None:
    account_id, headers = await gateway.account()
    async with gateway.another_gateway(GatewaySettings()) as other:
        for _ in range(5):
            assert (await other.post("/v1/chat/completions", headers=headers, json=BODY)).status_code == 200
        # Two leases (4, then 8): 7 slots held unused while it runs.
        await _wait(lambda: _counter(gateway, account_id) == (5, 7), "5 counted, 7 held")
    # Its shutdown returned them: nothing is held, and every lease has ended.
    await _wait(lambda: _counter(gateway, account_id) == (5, 0), "the unused slots returned")
    assert {lease.state for lease in _leases(gateway, account_id)} == {LeaseState.ENDED}


async def test_an_idle_lease_is_returned(gateway: Stack) -> None:
    account_id, headers = await gateway.account()
    async with gateway.another_gateway(GatewaySettings(lease_idle_s=0.3)) as other:
        assert (await other.post("/v1/chat/completions", headers=headers, json=BODY)).status_code == 200
        await _wait(lambda: _counter(gateway, account_id) == (1, 0), "the idle lease's 3 unused slots returned")


async def test_setting_a_budget_ends_the_lease_and_the_next_one_holds_money(gateway: Stack) -> None:
    account_id, headers = await gateway.account()
    assert (await gateway.http.post("/v1/chat/completions", headers=headers, json=BODY)).status_code == 200
    applied = gateway.invalidations.applied
    patched = await gateway.http.patch("/api/v1/account", headers=headers, json={"monthly_budget_usd": 5})
    assert patched.status_code == 200, patched.text
    await asyncio.wait_for(gateway.invalidations.applied_past(applied), 10)
    await _wait(lambda: _counter(gateway, account_id) == (1, 0), "the lease returned on the change")
    for _ in range(2):
        assert (await gateway.http.post("/v1/chat/completions", headers=headers, json=BODY)).status_code == 200
    # No Admit: the leases since hold USD of the budget for their requests' worst
    # cases, each at most a quarter of what the budget leaves.
    assert _reservations(gateway, account_id) == 0
    before, *since = _leases(gateway, account_id)
    assert before.usd_holds == 0
    assert since and all(Decimal(0) < lease.usd_holds <= Decimal(5) / 4 for lease in since)
    # Settled, the two requests free the worst cases they took and spend their cost:
    # the counter holds exactly what the leases still hold.
    await _wait(lambda: _counter(gateway, account_id)[0] == 3, "the 3 requests counted")
    spent, reserved_usd = _money(gateway, account_id)
    leases = _leases(gateway, account_id)
    assert reserved_usd == sum(lease.usd_holds - lease.usd_settled for lease in leases)
    assert Decimal(0) < spent <= sum(lease.usd_settled for lease in leases)
    # Returned when idle: nothing of the budget is held any more.
    async with gateway.another_gateway(GatewaySettings(lease_idle_s=0.3)) as other:
        assert (await other.post("/v1/chat/completions", headers=headers, json=BODY)).status_code == 200
    await _wait(lambda: _counter(gateway, account_id) == (4, 0), "the fourth counted, every slot returned")
    await _wait(lambda: _money(gateway, account_id)[1] == 0, "no USD held")


async def test_near_the_budget_each_request_is_admitted_alone(gateway: Stack) -> None:
    account_id, headers = await gateway.account()
    # A quarter of $0.02 holds less than one worst case of gpt-4o-mini with no
    # max_tokens (its whole output, about $0.01): billing answers per_request.
    patched = await gateway.http.patch("/api/v1/account", headers=headers, json={"monthly_budget_usd": "0.02"})
    assert patched.status_code == 200, patched.text
    for _ in range(2):
        assert (await gateway.http.post("/v1/chat/completions", headers=headers, json=BODY)).status_code == 200
    assert _reservations(gateway, account_id) == 2
    assert _leases(gateway, account_id) == []


async def test_a_keys_rpm_is_leased_and_exact(gateway: Stack) -> None:
    account_id, headers = await gateway.account()
    created = await gateway.http.post("/api/v1/account/api-keys", headers=headers, json={"name": "paced", "rpm": 20})
    assert created.status_code == 201, created.text
    keyed = {"authorization": f"Bearer {created.json()['key']}"}
    statuses = [(await gateway.http.post("/v1/chat/completions", headers=keyed, json=BODY)) for _ in range(24)]
    # Exactly the minute's 20, most of them from leases (a quarter of what the minute
    # has left each), the last few one Admit at a time; then 429 with a retry-after.
    assert [r.status_code for r in statuses] == [200] * 20 + [429] * 4
    refused = statuses[-1]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 70
    leased = sum(lease.granted for lease in _leases(gateway, account_id))
    assert leased >= 10 and _reservations(gateway, account_id) <= 20 - leased + 4
