"""Plan limits and the ledger through the real system, replicated: two gateways,
two billings sharing one database, a router, providers, nats-server and the
mock provider, each its own process (`python -m stepblend serve NAME`).

(a) A plan of 50 requests a month; 200 concurrent requests split across the two
    gateways: exactly 50 served, 150 refused with 429 `plan_limit_exceeded`, and
    the provider called exactly 50 times.
(b) 500 requests while one billing is killed with SIGKILL and started again: once
    the events have settled, billing's ledger holds exactly one counted row per
    served request, and the month's counter agrees.

(c) An API key's monthly limit of 30 and 200 concurrent requests with it across
    the two gateways: exactly 30 served.
(d) A key's budget at the boundary: 200 concurrent requests whose worst case is a
    50th of the budget: spend never passes it (over-spend 0), every refusal is
    `budget_exceeded`, and billing's spend equals the served requests' cost.
(e) A key revoked through one gateway is refused by the other within a second.
(f) A gateway killed while it holds a lease of the month's slots: the other
    gateway serves what no lease holds, and, once the lease expires, the rest:
    exactly the plan's 100 in all.

All run with billing on SQLite and on PostgreSQL. This module starts its own
processes rather than using the shared `system` fixture: it kills some of them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from services.billing.db import make_engine
from services.billing.models import (
    KeyMonthCounter,
    Lease,
    LeaseState,
    LedgerEntry,
    MonthCounter,
    Reservation,
    ReservationState,
)
from stepblend.v1 import billing_pb2, billing_pb2_grpc
from tests.support.stack import MODEL, Stack, complete, internal_metadata, new_account, running_stack, wait_grpc


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(request, Path(tmp_path_factory.mktemp("plan-limits"))) as running:
        yield running


def _requests_this_month(stack: Stack, account_id: str, billing: int = 0) -> int:
    with grpc.insecure_channel(stack.billing_addrs[billing]) as channel:
        reply = billing_pb2_grpc.BillingStub(channel).GetAccount(
            billing_pb2.GetAccountRequest(account_id=account_id), metadata=internal_metadata(stack), timeout=10
        )
    return int(reply.account.requests_this_month)


def _mock_calls(stack: Stack, marker: str) -> int:
    seen = httpx.get(f"{stack.mock_url}/_mock/requests", timeout=10).json()
    return sum(1 for r in seen if marker in str(r.get("body")))


def _unexpected(responses: list[httpx.Response]) -> list[str]:
    """The bodies of the first few answers that were neither served nor refused by the limit."""
    return [f"{r.status_code} {r.text[:300]}" for r in responses if r.status_code not in (200, 429)][:3]


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout:.0f} s")
        time.sleep(0.2)


def test_a_plan_of_50_serves_exactly_50_of_200_across_two_gateways(stack: Stack) -> None:
    _email, token, account_id = new_account(stack, "trial")
    marker = f"limit-a-{uuid.uuid4().hex}"

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            return await asyncio.gather(
                *(complete(client, stack.gateway_urls[i % 2], token, f"{marker} {i}") for i in range(200))
            )

    responses = asyncio.run(run())
    statuses = Counter(r.status_code for r in responses)
    calls = _mock_calls(stack, marker)
    print(f"\n(a) [{stack.billing_url.split(':')[0]}] statuses {dict(statuses)}, provider calls {calls}")
    assert statuses == {200: 50, 429: 150}, (statuses, _unexpected(responses), stack.logs())
    for response in (r for r in responses if r.status_code == 429):
        error = response.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "plan_limit_exceeded"
        assert response.headers["x-should-retry"] == "false"
    served_per_gateway = Counter(i % 2 for i, r in enumerate(responses) if r.status_code == 200)
    print(f"(a) served per gateway {dict(served_per_gateway)}")
    assert calls == 50
    _wait(lambda: _requests_this_month(stack, account_id) == 50, 60, "50 requests counted")


def test_a_billing_killed_mid_run_loses_and_doubles_nothing(stack: Stack) -> None:
    _email, token, account_id = new_account(stack, "big")
    marker = f"limit-b-{uuid.uuid4().hex}"
    # Slow the provider a little so the kill lands while requests are in flight.
    httpx.post(f"{stack.mock_url}/_mock/behaviour", json={"model": "*", "delay_ms": 20}, timeout=10)
    done = 0

    async def one(client: httpx.AsyncClient, gate: asyncio.Semaphore, i: int) -> httpx.Response:
        nonlocal done
        async with gate:
            try:
                return await complete(client, stack.gateway_urls[i % 2], token, f"{marker} {i}")
            finally:
                done += 1

    async def chaos() -> None:
        while done < 150:  # noqa: ASYNC110 - a counter, not an event
            await asyncio.sleep(0.01)
        stack.kill9("billing-1")
        while done < 300:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        stack.restart("billing-1")

    async def run() -> list[httpx.Response]:
        gate = asyncio.Semaphore(40)
        async with httpx.AsyncClient(timeout=120) as client:
            killer = asyncio.create_task(chaos())
            responses = await asyncio.gather(*(one(client, gate, i) for i in range(500)))
            await killer
            return list(responses)

    try:
        responses = asyncio.run(run())
    finally:
        httpx.delete(f"{stack.mock_url}/_mock/behaviour", timeout=10)
    wait_grpc(stack.billing_addrs[1], stack.procs["billing-1"], "billing-1 after its restart")
    statuses = Counter(r.status_code for r in responses)
    served = {r.headers["x-request-id"] for r in responses if r.status_code == 200}
    assert set(statuses) <= {200, 503}, statuses  # 503: its billing was down, fail-closed

    engine = make_engine(stack.billing_url)

    def counted_rows() -> list[str]:
        with Session(engine) as session:
            return list(
                session.exec(
                    select(col(LedgerEntry.request_id)).where(
                        col(LedgerEntry.account_id) == account_id, col(LedgerEntry.counted).is_(True)
                    )
                ).all()
            )

    try:
        # Events billing-1 held unacked when it died come back after the consumer's ack wait (30 s).
        _wait(lambda: len(counted_rows()) >= len(served), 120, "every served request in the ledger")
        time.sleep(1)  # anything more would be a double count; give it the chance to show
        rows = counted_rows()
        with Session(engine) as session:
            all_rows = session.exec(
                select(func.count()).select_from(LedgerEntry).where(col(LedgerEntry.account_id) == account_id)
            ).one()
            counters = session.exec(select(MonthCounter).where(col(MonthCounter.account_id) == account_id)).all()
            # Requests billing-1 admitted and then died before answering: the gateway
            # got a 503, and the slot stays reserved until the reaper frees it.
            orphans = set(
                session.exec(
                    select(col(Reservation.request_id)).where(
                        col(Reservation.account_id) == account_id,
                        col(Reservation.state) == ReservationState.RESERVED,
                    )
                ).all()
            )
            # And the slots the gateways' leases still hold: unused ones not yet returned
            # (a lease returns after 2 s idle), or granted by billing-1 as it died.
            leased = sum(
                lease.holds - lease.settled
                for lease in session.exec(select(Lease).where(col(Lease.account_id) == account_id)).all()
                if lease.state != LeaseState.ENDED
            )
    finally:
        engine.dispose()
    calls = _mock_calls(stack, marker)
    counter = _requests_this_month(stack, account_id)
    print(
        f"\n(b) [{stack.billing_url.split(':')[0]}] statuses {dict(statuses)}, served {len(served)}, "
        f"counted ledger rows {len(rows)} (all rows {all_rows}), provider calls {calls}, counter {counter}"
    )
    assert len(rows) == len(set(rows)) == len(served)
    assert set(rows) == served
    assert calls == len(served)
    # Counted exactly once each; what GetAccount adds on top (read-your-writes) is only
    # the reservations of requests that were never served.
    (month,) = counters
    assert month.used == len(served)
    assert month.reserved == len(orphans) + leased and not orphans & served
    assert counter == month.used + month.reserved - leased


def _api_key(stack: Stack, token: str, **limits: object) -> dict[str, object]:
    response = httpx.post(
        f"{stack.gateway_urls[0]}/api/v1/account/api-keys",
        headers={"authorization": f"Bearer {token}"},
        json={"name": "replicas", **limits},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def _concurrently(stack: Stack, key: str, marker: str, count: int, **body: object) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{stack.gateway_urls[i % 2]}/api/v1/chat/completions",
                    headers={"authorization": f"Bearer {key}"},
                    json={"model": MODEL, "messages": [{"role": "user", "content": f"{marker} {i}"}], **body},
                )
                for i in range(count)
            )
        )


def test_a_keys_limit_of_30_serves_exactly_30_of_200_across_two_gateways(stack: Stack) -> None:
    _email, token, _account_id = new_account(stack, "big")
    key = _api_key(stack, token, monthly_request_limit=30)
    marker = f"limit-c-{uuid.uuid4().hex}"
    responses = asyncio.run(_concurrently(stack, str(key["key"]), marker, 200))
    statuses = Counter(r.status_code for r in responses)
    print(f"\n(c) [{stack.billing_url.split(':')[0]}] key limit 30: statuses {dict(statuses)}")
    assert statuses == {200: 30, 429: 170}, (statuses, _unexpected(responses), stack.logs())
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"key_limit_exceeded"}
    assert _mock_calls(stack, marker) == 30


def test_a_keys_budget_is_never_overspent_by_200_concurrent_requests(stack: Stack) -> None:
    _email, token, _account_id = new_account(stack, "big")
    marker = f"limit-d-{uuid.uuid4().hex}"
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"{marker} 100"}], "max_tokens": 64}
    route = httpx.post(
        f"{stack.gateway_urls[0]}/api/v1/route", headers={"authorization": f"Bearer {token}"}, json=body, timeout=10
    ).json()
    worst = Decimal(str(route["candidates"][0]["worst_case_cost_usd"]))
    budget = (worst * 50).quantize(Decimal("0.000000000001"))
    key = _api_key(stack, token, monthly_budget_usd=str(budget))
    # Every answer runs to max_tokens, so each request costs close to its worst case:
    # the budget is met at about 50 requests, and the 51st worst case does not fit.
    httpx.post(f"{stack.mock_url}/_mock/behaviour", json={"model": "*", "content": "spend " * 400}, timeout=10)
    try:
        responses = asyncio.run(_concurrently(stack, str(key["key"]), marker, 200, max_tokens=64))
    finally:
        httpx.delete(f"{stack.mock_url}/_mock/behaviour", timeout=10)
    statuses = Counter(r.status_code for r in responses)
    served = [r.json() for r in responses if r.status_code == 200]
    cost = sum((Decimal(str(r["stepblend"]["actual_cost_usd"])) for r in served), Decimal(0))
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} <= {"budget_exceeded"}
    engine = make_engine(stack.billing_url)
    try:

        def spent() -> Decimal:
            with Session(engine) as session:
                row = session.exec(select(KeyMonthCounter).where(col(KeyMonthCounter.key_id) == str(key["id"]))).one()
                return row.spent_usd if row.reserved == 0 else Decimal(-1)

        _wait(lambda: spent() >= 0, 60, "every served request settled")
        settled = spent()
    finally:
        engine.dispose()
    overspend = max(settled - budget, Decimal(0))
    print(
        f"\n(d) [{stack.billing_url.split(':')[0]}] budget ${budget} (50 worst cases of ${worst}): "
        f"statuses {dict(statuses)}, spent ${settled}, over-spend ${overspend}"
    )
    # The 50 worst cases fit; a few more once early ones settle a little below theirs.
    assert all(r["usage"]["completion_tokens"] == 64 for r in served)
    assert 50 <= len(served) < 60
    assert settled == cost
    assert overspend == 0


def test_a_key_revoked_at_one_gateway_is_refused_by_the_other_within_a_second(stack: Stack) -> None:
    _email, token, _account_id = new_account(stack, "big")
    created = _api_key(stack, token)
    key = str(created["key"])
    for url in stack.gateway_urls:  # both gateways now hold the key as verified
        assert asyncio.run(_complete_one(url, key)).status_code == 200
    response = httpx.delete(
        f"{stack.gateway_urls[0]}/api/v1/account/api-keys/{created['id']}",
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200
    # From the revocation's answer; a probe counts from when it was sent (a probe is a
    # whole completion, which a loaded machine may take a while to answer).
    revoked_at = sent = time.monotonic()
    while (status := asyncio.run(_complete_one(stack.gateway_urls[1], key)).status_code) == 200:
        assert sent - revoked_at < 1.0, "the other gateway still served the revoked key 1 s after it was revoked"
        sent = time.monotonic()
    delay = sent - revoked_at
    print(
        f"\n(e) [{stack.billing_url.split(':')[0]}] the other gateway refused the revoked key in a probe sent {delay:.3f} s after the revocation"
    )
    assert status == 401 and delay < 1.0


async def _complete_one(url: str, key: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await complete(client, url, key, "revocation")


@pytest.fixture(params=["sqlite", "postgresql"])
def expiring_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose leases expire 10 s after they are granted (an 8 s window and a 2 s
    TTL), and whose gateways keep an idle lease 8 s (not 2), so that the test kills one holding it."""
    lease_env = {
        "STEPBLEND_LEASE_SECONDS": "8",
        "STEPBLEND_RESERVATION_TTL_SECONDS": "2",
        "STEPBLEND_LEASE_IDLE_SECONDS": "8",
    }
    with running_stack(request, Path(tmp_path_factory.mktemp("lease-expiry")), lease_env) as running:
        yield running


def _month_counter(stack: Stack, account_id: str) -> tuple[int, int]:
    engine = make_engine(stack.billing_url)
    try:
        with Session(engine) as session:
            row = session.exec(select(MonthCounter).where(col(MonthCounter.account_id) == account_id)).one()
            return row.used, row.reserved
    finally:
        engine.dispose()


def test_a_gateway_killed_holding_a_lease_gives_its_slots_back_at_expiry(expiring_stack: Stack) -> None:
    stack = expiring_stack
    _email, token, account_id = new_account(stack, "hundred")
    marker = f"limit-f-{uuid.uuid4().hex}"

    async def one(gateway: int) -> httpx.Response:
        async with httpx.AsyncClient(timeout=60) as client:
            return await complete(client, stack.gateway_urls[gateway], token, f"{marker} {uuid.uuid4().hex}")

    # Gateway 0 serves 13 in a row; its leases grow as they run dry: 4, 8, then 16 slots.
    for _ in range(13):
        assert asyncio.run(one(0)).status_code == 200
    _wait(lambda: _month_counter(stack, account_id)[0] == 13, 30, "the 13 requests counted")
    _used, held = _month_counter(stack, account_id)
    print(f"\n(f) [{stack.billing_url.split(':')[0]}] gateway 0 served 13 and holds {held} unused slots")
    assert held >= 10, "gateway 0 holds no large lease to lose"
    stack.kill9("gateway-0")

    # Gateway 1 serves what no lease holds, then is refused while the dead gateway's lease
    # lives: 8 at a time, so that the ~70 requests end well before that lease expires.
    async def until_refused(gateway: int) -> tuple[int, httpx.Response]:
        served = 0
        async with httpx.AsyncClient(timeout=60) as client:
            while True:
                batch = await asyncio.gather(
                    *(
                        complete(client, stack.gateway_urls[gateway], token, f"{marker} {uuid.uuid4().hex}")
                        for _ in range(8)
                    )
                )
                served += sum(r.status_code == 200 for r in batch)
                refused = [r for r in batch if r.status_code != 200]
                if refused:
                    return served, refused[0]

    served, response = asyncio.run(until_refused(1))
    assert response.status_code == 429 and response.json()["error"]["code"] == "plan_limit_exceeded"
    assert served == 100 - 13 - held
    # At the lease's expiry its slots are the month's again, and gateway 1 serves them: 100 in all, exactly.
    started = time.monotonic()
    while (response := asyncio.run(one(1))).status_code == 429:
        assert time.monotonic() - started < 30, "the dead gateway's slots never came back"
        time.sleep(0.25)
    print(f"(f) its slots came back after {time.monotonic() - started:.1f} s")
    more, response = asyncio.run(until_refused(1))
    assert response.json()["error"]["code"] == "plan_limit_exceeded"
    assert 13 + served + 1 + more == 100
    assert _mock_calls(stack, marker) == 100
    _wait(lambda: _month_counter(stack, account_id) == (100, 0), 30, "100 counted and nothing held")
