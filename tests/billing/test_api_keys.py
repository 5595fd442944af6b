"""API keys and budgets in billing (SPEC.md §7), over gRPC from two replicas on one
database (SQLite and PostgreSQL): a key's limits and a budget hold exactly under 200
concurrent Admits, settlement swaps a reservation's worst case for the actual cost, and
a revoked, expired or foreign key admits nothing."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import grpc
import pytest
from sqlmodel import Session

from services.billing import counters
from services.billing.months import moment, month_key
from services.billing.servicer import BillingServicer
from stepblend.v1 import billing_pb2
from tests.billing.conftest import Replica, settle_event, usage_event


async def _account(replica: Replica, plan: str = "enterprise") -> str:
    email = f"keys-{uuid.uuid4().hex[:8]}@example.com"
    reply = await replica.stub.CreateAccount(billing_pb2.CreateAccountRequest(email=email, plan=plan))
    return str(reply.account.account_id)


async def _key(replica: Replica, account_id: str, **limits: object) -> billing_pb2.ApiKey:
    secret = uuid.uuid4().hex
    return await replica.keys.Create(
        billing_pb2.CreateApiKeyRequest(
            account_id=account_id,
            name="ci",
            digest=hashlib.sha256(secret.encode()).hexdigest(),
            hint="sb-…" + secret[-4:],
            limits=billing_pb2.ApiKeyLimits(**limits),  # type: ignore[arg-type]
        )
    )


def _admit(replica: Replica, account_id: str, request_id: str, key_id: str = "", *costs: str) -> object:
    request = billing_pb2.AdmitRequest(
        account_id=account_id, request_id=request_id, api_key_id=key_id, worst_cost_usd=list(costs)
    )
    return replica.stub.Admit(request)


def _counts(replica: Replica, counter: counters.Counter, owner: str) -> counters.Counts:
    with Session(replica.engine) as session:
        return counters.read(session.connection(), counter, owner, month_key(moment(time.time())))


async def test_200_concurrent_admits_hold_a_keys_request_limit_exactly(replicas: list[Replica]) -> None:
    account_id = await _account(replicas[0])
    key = await _key(replicas[0], account_id, monthly_request_limit=30)
    answers = await asyncio.gather(
        *(_admit(replicas[i % 2], account_id, f"k{i}", key.id) for i in range(200))  # type: ignore[misc]
    )
    allowed = [a for a in answers if a.allowed]
    print(f"key limit 30: {len(allowed)} allowed of 200")
    assert len(allowed) == 30
    assert {a.reason for a in answers if not a.allowed} == {"key_limit_exceeded"}
    # The account's counter was given back for every request the key refused.
    assert _counts(replicas[0], counters.ACCOUNTS, account_id).reserved == 30
    assert _counts(replicas[1], counters.KEYS, key.id).reserved == 30


@pytest.mark.parametrize("owner", ["key", "account"])
async def test_200_concurrent_admits_never_reserve_past_a_budget(replicas: list[Replica], owner: str) -> None:
    account_id = await _account(replicas[0])
    if owner == "key":
        key = await _key(replicas[0], account_id, monthly_budget_usd="1.00")
    else:
        key = await _key(replicas[0], account_id)
        await replicas[0].keys.SetBudget(billing_pb2.SetBudgetRequest(account_id=account_id, monthly_budget_usd="1"))
    answers = await asyncio.gather(
        *(_admit(replicas[i % 2], account_id, f"b{i}", key.id, "0.03") for i in range(200))  # type: ignore[misc]
    )
    allowed = [a for a in answers if a.allowed]
    refused = [a for a in answers if not a.allowed]
    # 33 worst cases of $0.03 fit in $1.00; the 34th would not.
    print(f"{owner} budget $1 at $0.03 worst case: {len(allowed)} allowed of 200")
    assert len(allowed) == 33
    assert {(a.reason, a.budget_owner) for a in refused} == {("budget_exceeded", owner)}
    held = _counts(replicas[1], counters.ACCOUNTS, account_id)
    assert held.reserved_usd == Decimal("0.99") and held.spent_usd == 0


async def test_settlement_swaps_the_worst_case_for_the_actual_cost(replicas: list[Replica]) -> None:
    account_id = await _account(replicas[0])
    key = await _key(replicas[0], account_id, monthly_budget_usd="0.10")
    first = await _admit(replicas[0], account_id, "s1", key.id, "0.08")  # type: ignore[misc]
    # The first holds $0.08 of $0.10: a second $0.08 worst case does not fit...
    second = await _admit(replicas[1], account_id, "s2", key.id, "0.08")  # type: ignore[misc]
    assert first.allowed and not second.allowed
    assert (second.reason, Decimal(second.budget_left_usd)) == ("budget_exceeded", Decimal("0.02"))
    with Session(replicas[0].engine) as session:
        settle_event(session, usage_event(account_id, request_id="s1", actual_cost_usd="0.001"))
    # ...until the first settles at its actual cost, $0.001.
    assert (await _admit(replicas[1], account_id, "s3", key.id, "0.08")).allowed  # type: ignore[misc]
    spent = _counts(replicas[0], counters.KEYS, key.id)
    assert (spent.used, spent.reserved, spent.spent_usd, spent.reserved_usd) == (
        1,
        1,
        Decimal("0.001"),
        Decimal("0.08"),
    )
    listed = (await replicas[1].keys.List(billing_pb2.ListApiKeysRequest(account_id=account_id))).keys
    assert [(k.id, k.requests_this_month, k.spend_this_month_usd) for k in listed] == [(key.id, 2, "0.001")]


async def test_only_candidates_whose_worst_case_fits_may_serve(replicas: list[Replica]) -> None:
    account_id = await _account(replicas[0])
    key = await _key(replicas[0], account_id, monthly_budget_usd="0.05")
    answer = await _admit(replicas[0], account_id, "f1", key.id, "0.09", "0.01", "0.04")  # type: ignore[misc]
    assert answer.allowed and list(answer.fits) == [False, True, True]
    # The largest worst case that fits is what the request holds.
    assert _counts(replicas[0], counters.KEYS, key.id).reserved_usd == Decimal("0.04")


async def test_a_keys_rolling_minute_refuses_past_its_rpm(replicas: list[Replica]) -> None:
    account_id = await _account(replicas[0])
    key = await _key(replicas[0], account_id, rpm=5)
    answers = await asyncio.gather(
        *(_admit(replicas[i % 2], account_id, f"m{i}", key.id) for i in range(20))  # type: ignore[misc]
    )
    assert sum(a.allowed for a in answers) == 5
    refused = [a for a in answers if not a.allowed]
    assert {a.reason for a in refused} == {"rate_limit_exceeded"}
    assert all(1 <= a.retry_after_s <= 60 for a in refused)


async def test_revoked_expired_and_foreign_keys_admit_nothing(
    replicas: list[Replica], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Billing's clock (time.time in `replicas`), moved on by the test when the key is to expire.
    ahead = timedelta(0)
    real_now = BillingServicer.now
    monkeypatch.setattr(BillingServicer, "now", lambda servicer: real_now(servicer) + ahead)
    account_id = await _account(replicas[0])
    other = await _account(replicas[0])
    revoked = await _key(replicas[0], account_id)
    await replicas[1].keys.Revoke(billing_pb2.RevokeApiKeyRequest(account_id=account_id, id=revoked.id))
    expiring = await _key(replicas[0], account_id, expires_at=int(time.time()) + 600)
    foreign = await _key(replicas[0], other)
    assert (await _admit(replicas[0], account_id, "e0", expiring.id)).allowed  # type: ignore[misc]
    # Billing's clock reaches the expiry (a key expires at its expires_at, not after it).
    ahead = timedelta(seconds=expiring.limits.expires_at - time.time())
    for i, key_id in enumerate([revoked.id, expiring.id, foreign.id, "key_nope"]):
        answer = await _admit(replicas[i % 2], account_id, f"x{i}", key_id)  # type: ignore[misc]
        assert (answer.allowed, answer.reason) == (False, "key_revoked")
    assert _counts(replicas[0], counters.ACCOUNTS, account_id).reserved == 1


async def test_keys_are_listed_without_their_digest_and_revoked_by_their_account_only(
    replicas: list[Replica],
) -> None:
    account_id = await _account(replicas[0])
    key = await _key(replicas[0], account_id, allowed_models=["gpt-4o", "lowest-cost"], rpm=10)
    assert key.hint.startswith("sb-…") and key.limits.rpm == 10
    assert list(key.limits.allowed_models) == ["gpt-4o", "lowest-cost"]
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await replicas[0].keys.Revoke(
            billing_pb2.RevokeApiKeyRequest(account_id=await _account(replicas[0]), id=key.id)
        )
    assert denied.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await _key(replicas[0], account_id, monthly_budget_usd="-1")
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    revoked = await replicas[0].keys.Revoke(billing_pb2.RevokeApiKeyRequest(account_id=account_id, id=key.id))
    assert revoked.revoked
    assert "digest" not in str(revoked)
