"""Admit over gRPC from two billing replicas sharing one database (SQLite and PostgreSQL).

Two real gRPC servers, each a `BillingServicer` with its own engine (its own
connection pool, as two processes would have), on one database. 200 concurrent
Admit calls split between them for an account whose plan allows 50: exactly 50
are allowed, 150 refused with `plan_limit_exceeded`, and no call fails.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlmodel import Session

from services.billing import counters
from services.billing.months import moment, month_key
from stepblend.v1 import billing_pb2
from tests.billing.conftest import Replica


async def _create(replica: Replica, plan: str) -> str:
    email = f"race-{uuid.uuid4().hex[:8]}@example.com"
    reply = await replica.stub.CreateAccount(billing_pb2.CreateAccountRequest(email=email, plan=plan))
    return str(reply.account.account_id)


async def test_200_concurrent_admits_over_two_replicas_allow_exactly_50(replicas: list[Replica]) -> None:
    account_id = await _create(replicas[0], "trial")
    calls = [
        replicas[i % 2].stub.Admit(billing_pb2.AdmitRequest(account_id=account_id, request_id=f"req-{i}"))
        for i in range(200)
    ]
    answers = await asyncio.gather(*calls)  # any failed call fails the test
    allowed = [a for a in answers if a.allowed]
    refused = [a for a in answers if not a.allowed]
    print(f"admits: {len(allowed)} allowed, {len(refused)} refused of {len(answers)}")
    assert len(allowed) == 50 and len(refused) == 150
    assert {a.reason for a in refused} == {"plan_limit_exceeded"}
    assert all(a.remaining == 0 and a.limit == 50 and a.plan == "trial" for a in refused)
    # Each allowed call saw a different number of slots left: 49 … 0.
    assert sorted(a.remaining for a in allowed) == list(range(50))
    month = month_key(moment(time.time()))
    with Session(replicas[0].engine) as session:
        assert counters.read(session.connection(), counters.ACCOUNTS, account_id, month) == counters.Counts(
            used=0, reserved=50
        )


async def test_retried_admits_across_replicas_reserve_once(replicas: list[Replica]) -> None:
    # 100 requests, each asked of both replicas at once (a gateway retrying
    # elsewhere): 50 admitted by both replicas, 50 refused by both.
    account_id = await _create(replicas[0], "trial")
    calls = [
        replica.stub.Admit(billing_pb2.AdmitRequest(account_id=account_id, request_id=f"req-{i}"))
        for i in range(100)
        for replica in replicas
    ]
    answers = await asyncio.gather(*calls)
    pairs = [(answers[2 * i].allowed, answers[2 * i + 1].allowed) for i in range(100)]
    assert pairs.count((True, True)) == 50 and pairs.count((False, False)) == 50
    month = month_key(moment(time.time()))
    with Session(replicas[1].engine) as session:
        assert counters.read(session.connection(), counters.ACCOUNTS, account_id, month).reserved == 50


async def test_unlimited_accounts_are_admitted_with_no_limit_on_the_wire(replicas: list[Replica]) -> None:
    account_id = await _create(replicas[1], "enterprise")
    answers = await asyncio.gather(
        *(
            replicas[i % 2].stub.Admit(billing_pb2.AdmitRequest(account_id=account_id, request_id=f"e{i}"))
            for i in range(40)
        )
    )
    assert all(a.allowed and a.limit == 0 and a.remaining == 0 and a.plan == "enterprise" for a in answers)
