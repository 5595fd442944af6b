"""Leases in billing (leases.py), on SQLite and PostgreSQL: what a gateway replica
may admit without a call, and that every slot comes back.

Over gRPC from two replicas on one database: concurrent Leases never hold more than
a plan's or a key's limit, a budget or a key's minute, and near one (or from a
gateway that names no worst case) the answer is `per_request`. In one process:
settlement moves a leased slot (and its worst case) to `used`, a return frees the
rest at once, a lease whose gateway died frees what it holds at expiry, and a late
event still counts its request.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

from sqlalchemy import Engine
from sqlmodel import Session

from services.billing import accounts, counters, leases
from services.billing.db import write_session
from services.billing.models import Lease, LeaseState
from services.billing.months import moment, month_key
from services.billing.plans import PlanBook
from services.billing.reaper import expire_due
from stepblend.v1 import billing_pb2
from tests.billing.conftest import Replica, settle_event, usage_event

NOW = datetime(2025, 3, 10, 12, tzinfo=UTC)
WINDOW = timedelta(seconds=10)
TTL = timedelta(minutes=15)
PLANS = PlanBook.from_limits({"trial": 50, "enterprise": None})


async def _account(replica: Replica, plan: str) -> str:
    email = f"lease-{uuid.uuid4().hex[:8]}@example.com"
    reply = await replica.stub.CreateAccount(billing_pb2.CreateAccountRequest(email=email, plan=plan))
    return str(reply.account.account_id)


async def _key(replica: Replica, account_id: str, **limits: object) -> str:
    """A new API key of the account with `limits` (ApiKeyLimits' fields); its id."""
    created = await replica.keys.Create(
        billing_pb2.CreateApiKeyRequest(
            account_id=account_id,
            name="ci",
            digest=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
            hint="sb-…abcd",
            limits=billing_pb2.ApiKeyLimits(**limits),  # type: ignore[arg-type]
        )
    )
    return str(created.id)


def _lease(replica: Replica, account_id: str, want: int, key_id: str = "", worst: str = "") -> object:
    """A Lease call; `worst` empty: from a gateway that names no worst case (before leases held money)."""
    request = billing_pb2.LeaseRequest(
        lease_id=uuid.uuid4().hex,
        account_id=account_id,
        api_key_id=key_id,
        gateway="test",
        want=want,
        worst_cost_usd=worst,
    )
    return replica.stub.Lease(request)


def _taken(replica: Replica, counter: counters.Counter, owner: str) -> counters.Counts:
    with Session(replica.engine) as session:
        return counters.read(session.connection(), counter, owner, month_key(moment(time.time())))


async def test_concurrent_leases_from_two_replicas_hold_a_plan_limit_exactly(replicas: list[Replica]) -> None:
    account_id = await _account(replicas[0], "trial")
    answers = await asyncio.gather(*(_lease(replicas[i % 2], account_id, 8) for i in range(60)))  # type: ignore[misc]
    granted = [a.granted for a in answers]
    print(f"plan limit 50: leases of {sorted(g for g in granted if g)}")
    # Demand is far over the limit: every slot is leased, none twice.
    assert sum(granted) == 50
    assert _taken(replicas[0], counters.ACCOUNTS, account_id).reserved == 50
    assert {a.reason for a in answers if not a.granted} == {"plan_limit_exceeded"}
    assert max(granted) <= 8


async def test_a_keys_limit_bounds_its_leases_and_the_accounts(replicas: list[Replica]) -> None:
    account_id = await _account(replicas[0], "enterprise")
    key_id = await _key(replicas[0], account_id, monthly_request_limit=12)
    answers = await asyncio.gather(*(_lease(replicas[i % 2], account_id, 5, key_id) for i in range(20)))  # type: ignore[misc]
    assert sum(a.granted for a in answers) == 12
    assert {a.reason for a in answers if not a.granted} == {"key_limit_exceeded"}
    # The account's counter holds what the key's does, and no slot a refused lease asked for.
    assert _taken(replicas[1], counters.ACCOUNTS, account_id).reserved == 12
    assert _taken(replicas[1], counters.KEYS, key_id).reserved == 12


async def test_concurrent_leases_from_two_replicas_never_hold_more_than_a_budget(replicas: list[Replica]) -> None:
    account_id = await _account(replicas[0], "enterprise")
    await replicas[0].keys.SetBudget(billing_pb2.SetBudgetRequest(account_id=account_id, monthly_budget_usd="1"))
    key_id = await _key(replicas[0], account_id, monthly_budget_usd="0.5")
    answers = await asyncio.gather(*(_lease(replicas[i % 2], account_id, 8, key_id, "0.01") for i in range(60)))  # type: ignore[misc]
    held = [Decimal(a.granted_usd) for a in answers if a.granted]
    print(f"key budget $0.5: leases of {sorted(held, reverse=True)}")
    # Each takes at most a quarter of what is left (and 8 worst cases): the key's
    # smaller budget bounds them all, and near it the answer is one Admit at a time.
    assert held and sum(held) <= Decimal("0.5")
    assert max(held) <= Decimal("0.08")
    assert all(a.per_request for a in answers if not a.granted)
    assert _taken(replicas[1], counters.KEYS, key_id).reserved_usd == sum(held)
    assert _taken(replicas[1], counters.ACCOUNTS, account_id).reserved_usd == sum(held)


async def test_concurrent_leases_from_two_replicas_never_hold_more_than_a_keys_minute(replicas: list[Replica]) -> None:
    account_id = await _account(replicas[0], "enterprise")
    key_id = await _key(replicas[0], account_id, rpm=20)
    answers = await asyncio.gather(*(_lease(replicas[i % 2], account_id, 8, key_id, "0") for i in range(30)))  # type: ignore[misc]
    granted = [a.granted for a in answers if a.granted]
    print(f"rpm 20: leases of {granted}")
    # A quarter of what the minute has left each (5, 3, 3, 2, 1 ...), then one Admit at a time.
    assert granted and sum(granted) <= 20 and max(granted) <= 5
    assert all(a.per_request for a in answers if not a.granted)
    # The leased slots are the minute's: an Admit finds it full once the leases hold it.
    admitted = 0
    for i in range(20):
        answer = await replicas[1].stub.Admit(
            billing_pb2.AdmitRequest(account_id=account_id, request_id=f"rpm-{i}", api_key_id=key_id)
        )
        if not answer.allowed:
            assert answer.reason == "rate_limit_exceeded" and answer.retry_after_s > 0
            break
        admitted += 1
    assert sum(granted) + admitted == 20


async def test_a_gateway_naming_no_worst_case_admits_budgets_and_rpm_one_at_a_time(replicas: list[Replica]) -> None:
    account_id = await _account(replicas[0], "enterprise")
    key = partial(_key, replicas[0], account_id)
    budgeted, limited, plain = await key(monthly_budget_usd="5"), await key(rpm=10), await key()
    # A gateway that names no worst case cannot carry money: budgets go per request too.
    for key_id in (budgeted, limited):
        answer = await _lease(replicas[0], account_id, 8, key_id)  # type: ignore[misc]
        assert answer.per_request and answer.granted == 0
    # One that does leases USD of a budget, and a quarter of a key's minute.
    assert (await _lease(replicas[0], account_id, 8, budgeted, "0.01")).granted_usd == "0.08"  # type: ignore[misc]
    assert (await _lease(replicas[0], account_id, 8, limited, "0.01")).granted == 2  # type: ignore[misc]
    assert (await _lease(replicas[0], account_id, 8, plain)).granted == 8  # type: ignore[misc]
    await replicas[1].keys.SetBudget(billing_pb2.SetBudgetRequest(account_id=account_id, monthly_budget_usd="9"))
    for key_id in ("", plain):
        assert (await _lease(replicas[1], account_id, 8, key_id)).per_request  # type: ignore[misc]
    revoked = await key()
    await replicas[0].keys.Revoke(billing_pb2.RevokeApiKeyRequest(account_id=account_id, id=revoked))
    assert (await _lease(replicas[0], account_id, 8, revoked)).reason == "key_revoked"  # type: ignore[misc]


async def test_a_retried_lease_reserves_once(replicas: list[Replica]) -> None:
    account_id = await _account(replicas[0], "trial")
    request = billing_pb2.LeaseRequest(lease_id="retried", account_id=account_id, gateway="test", want=4)
    first, again = await replicas[0].stub.Lease(request), await replicas[1].stub.Lease(request)
    assert first.granted == again.granted == 4
    assert _taken(replicas[0], counters.ACCOUNTS, account_id).reserved == 4


# In one process, at a fixed time: settlement, return and expiry.


def _new_account(engine: Engine) -> str:
    with write_session(engine) as session:
        return accounts.create_account(session, PLANS, email="lea@example.com", plan="trial").account_id


def _grant(
    engine: Engine, account_id: str, want: int, lease_id: str = "L1", worst: Decimal | None = None
) -> leases.LeaseGrant:
    with write_session(engine) as session:
        answer = leases.grant(
            session.connection(),
            PLANS,
            lease_id=lease_id,
            account_id=account_id,
            api_key_id="",
            gateway="test",
            want=want,
            now=NOW,
            window=WINDOW,
            ttl=TTL,
            worst=worst,
        )
        session.commit()
        return answer


def _give_back(
    engine: Engine, account_id: str, admitted: int, lease_id: str = "L1", admitted_usd: Decimal | None = None
) -> int:
    with write_session(engine) as session:
        freed = leases.give_back(
            session.connection(),
            lease_id=lease_id,
            account_id=account_id,
            admitted=admitted,
            now=NOW,
            admitted_usd=admitted_usd,
        )
        session.commit()
        return freed


def _budgeted_account(engine: Engine, budget: str) -> str:
    account_id = _new_account(engine)
    with write_session(engine) as session:
        accounts.set_budget(session, PLANS, account_id=account_id, budget_usd=budget, now=NOW)
    return account_id


def _money(engine: Engine, account_id: str) -> tuple[Decimal, Decimal]:
    """The month's spent and held USD."""
    with Session(engine) as session:
        counts = counters.read(session.connection(), counters.ACCOUNTS, account_id, "2025-03")
    return counts.spent_usd, counts.reserved_usd


def _settle(engine: Engine, account_id: str, lease_id: str = "L1", **fields: object) -> bool:
    event = usage_event(account_id, admitted_at=NOW.timestamp(), lease_id=lease_id, **fields)
    with write_session(engine) as session:
        return settle_event(session, event)


def _slots(engine: Engine, account_id: str) -> tuple[int, int]:
    with Session(engine) as session:
        counts = counters.read(session.connection(), counters.ACCOUNTS, account_id, "2025-03")
    return counts.used, counts.reserved


def _state(engine: Engine, lease_id: str = "L1") -> str:
    with Session(engine) as session:
        lease = session.get(Lease, lease_id)
        assert lease is not None
        return lease.state


def test_settled_requests_take_leased_slots_and_a_return_frees_the_rest(engine: Engine) -> None:
    account_id = _new_account(engine)
    grant = _grant(engine, account_id, 8)
    assert grant.granted == 8 and grant.remaining == 42
    assert grant.admit_until == NOW + WINDOW
    for _ in range(3):
        assert _settle(engine, account_id)
    # No provider answered this one: its gateway reused the slot, billing changes nothing.
    assert _settle(engine, account_id, provider_answered=False, outcome="failed")
    assert _slots(engine, account_id) == (3, 5)
    assert _give_back(engine, account_id, admitted=3) == 5
    assert _slots(engine, account_id) == (3, 0)
    assert _state(engine) == LeaseState.ENDED
    # A second return (a retry) frees nothing more.
    assert _give_back(engine, account_id, admitted=0) == 0
    assert _slots(engine, account_id) == (3, 0)


def test_leases_shrink_to_one_request_near_the_limit(engine: Engine) -> None:
    account_id = _new_account(engine)
    sizes = [_grant(engine, account_id, 8, lease_id=f"L{i}").granted for i in range(16)]
    # At most a quarter of what is left: 50 → 8, 8, 8, then 26 left → 6, and so on down to ones.
    assert sizes == [8, 8, 8, 6, 5, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 0]
    assert sum(sizes) == 50


def test_an_accounts_count_is_its_settled_requests_not_the_slots_its_leases_hold(engine: Engine) -> None:
    account_id = _new_account(engine)
    _grant(engine, account_id, 8)
    assert _settle(engine, account_id) and _settle(engine, account_id)
    with Session(engine) as session:
        assert leases.holding(session.connection(), month="2025-03", account_id=account_id) == 6
        view = accounts.get_account(session, PLANS, account_id=account_id, now=NOW)
    assert view.requests_this_month == 2


def test_ended_leases_are_forgotten_after_a_day(engine: Engine) -> None:
    account_id = _new_account(engine)
    _grant(engine, account_id, 4)
    _give_back(engine, account_id, admitted=0)
    expire_due(engine, (NOW + timedelta(hours=23)).timestamp())
    assert _state(engine) == LeaseState.ENDED
    expire_due(engine, (NOW + timedelta(hours=25)).timestamp())
    with Session(engine) as session:
        assert session.get(Lease, "L1") is None


def test_a_return_keeps_the_slots_of_requests_whose_events_are_still_coming(engine: Engine) -> None:
    account_id = _new_account(engine)
    _grant(engine, account_id, 8)
    assert _settle(engine, account_id)
    assert _give_back(engine, account_id, admitted=3) == 5
    assert _slots(engine, account_id) == (1, 2)
    assert _state(engine) == LeaseState.RETURNED
    assert _settle(engine, account_id) and _settle(engine, account_id)
    assert _slots(engine, account_id) == (3, 0)
    assert _state(engine) == LeaseState.ENDED


def test_a_lease_its_gateway_never_returned_frees_its_slots_at_expiry(engine: Engine) -> None:
    account_id = _new_account(engine)
    _grant(engine, account_id, 8)
    assert _settle(engine, account_id)
    expiry = NOW + WINDOW + TTL
    assert expire_due(engine, (expiry - timedelta(seconds=1)).timestamp()) == 0
    assert _slots(engine, account_id) == (1, 7)
    assert expire_due(engine, (expiry + timedelta(seconds=1)).timestamp()) == 7
    assert _slots(engine, account_id) == (1, 0)
    assert _state(engine) == LeaseState.ENDED
    # A late event still counts its request, without a slot to take.
    assert _settle(engine, account_id)
    assert _slots(engine, account_id) == (2, 0)
    # A return after expiry frees nothing twice.
    assert _give_back(engine, account_id, admitted=1) == 0
    assert _slots(engine, account_id) == (2, 0)


def test_the_same_event_twice_takes_one_slot(engine: Engine) -> None:
    account_id = _new_account(engine)
    _grant(engine, account_id, 4)
    event = usage_event(account_id, admitted_at=NOW.timestamp(), lease_id="L1")
    with write_session(engine) as session:
        assert settle_event(session, event)
    with write_session(engine) as session:
        assert not settle_event(session, event)
    assert _slots(engine, account_id) == (1, 3)


def test_a_lease_admits_only_until_the_month_ends(engine: Engine) -> None:
    account_id = _new_account(engine)
    late = datetime(2025, 3, 31, 23, 59, 55, tzinfo=UTC)
    with write_session(engine) as session:
        answer = leases.grant(
            session.connection(),
            PLANS,
            lease_id="L-late",
            account_id=account_id,
            api_key_id="",
            gateway="test",
            want=4,
            now=late,
            window=WINDOW,
            ttl=TTL,
        )
        session.commit()
    assert answer.month == "2025-03"
    assert answer.admit_until == datetime(2025, 4, 1, tzinfo=UTC)


# Leases that hold money (a budget bounds the account).


def test_a_budgeted_lease_holds_usd_settles_worst_cases_and_frees_the_rest_on_return(engine: Engine) -> None:
    account_id = _budgeted_account(engine, "20")
    grant = _grant(engine, account_id, 8, worst=Decimal("0.5"))
    # 8 requests of up to $0.5 each: $4, within a quarter of the $20 left.
    assert grant.granted == 8 and grant.usd == Decimal(4)
    assert _money(engine, account_id) == (0, 4)
    for cost in ("0.01", "0.02"):
        assert _settle(engine, account_id, actual_cost_usd=cost, lease_usd="0.5")
    # Each frees the worst case it took and spends its actual cost.
    assert _money(engine, account_id) == (Decimal("0.03"), 3)
    # A third request (worst $0.5) is still in flight when its gateway returns the lease.
    assert _give_back(engine, account_id, admitted=3, admitted_usd=Decimal("1.5")) == 5
    assert _money(engine, account_id) == (Decimal("0.03"), Decimal("0.5"))
    assert _state(engine) == LeaseState.RETURNED
    assert _settle(engine, account_id, actual_cost_usd="0.04", lease_usd="0.5")
    assert _money(engine, account_id) == (Decimal("0.07"), 0)
    assert _slots(engine, account_id) == (3, 0)
    assert _state(engine) == LeaseState.ENDED


def test_a_budgeted_lease_its_gateway_never_returned_frees_its_usd_at_expiry(engine: Engine) -> None:
    account_id = _budgeted_account(engine, "10")
    _grant(engine, account_id, 4, worst=Decimal("0.25"))
    assert _settle(engine, account_id, actual_cost_usd="0.01", lease_usd="0.25")
    assert _money(engine, account_id) == (Decimal("0.01"), Decimal("0.75"))
    assert expire_due(engine, (NOW + WINDOW + TTL + timedelta(seconds=1)).timestamp()) == 3
    assert _money(engine, account_id) == (Decimal("0.01"), 0)
    # A late event spends its cost and frees nothing it no longer holds.
    assert _settle(engine, account_id, actual_cost_usd="0.02", lease_usd="0.25")
    assert _money(engine, account_id) == (Decimal("0.03"), 0)


def test_near_the_budget_a_lease_is_refused_for_one_admit_at_a_time(engine: Engine) -> None:
    account_id = _budgeted_account(engine, "1")
    sizes = [_grant(engine, account_id, 8, lease_id=f"L{i}", worst=Decimal("0.05")).usd for i in range(8)]
    # A quarter of what is left each time ($0.25, then $0.1875, ...), until a quarter
    # would not hold one $0.05 request: then per_request, and Admit decides exactly.
    assert sizes[:3] == [Decimal("0.25"), Decimal("0.1875"), Decimal("0.140625")]
    assert sizes[-1] is None
    answer = _grant(engine, account_id, 8, lease_id="last", worst=Decimal("0.05"))
    assert answer.per_request and answer.granted == 0
    assert _money(engine, account_id)[1] == sum(size for size in sizes if size is not None)
    assert _money(engine, account_id)[1] <= 1
