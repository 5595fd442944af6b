"""Admission against a real database (SQLite and PostgreSQL): exact, idempotent, refusing right."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from services.billing import accounts, admission, counters
from services.billing.db import make_engine, retrying, write_session
from services.billing.models import Reservation
from services.billing.plans import PlanBook
from tests.billing.conftest import admit_in

NOW = datetime(2025, 3, 10, 12, tzinfo=UTC)
TTL = timedelta(minutes=15)
PLANS = PlanBook.from_limits({"trial": 3, "enterprise": None, "free": 1000})


def _account(engine: Engine, plan: str = "trial", email: str = "ann@example.com") -> str:
    with write_session(engine) as session:
        return accounts.create_account(session, PLANS, email=email, plan=plan).account_id


def _admit(engine: Engine, account_id: str, request_id: str, now: datetime = NOW) -> admission.Admission:
    def attempt() -> admission.Admission:
        with write_session(engine) as session:
            return admit_in(session, PLANS, account_id=account_id, request_id=request_id, now=now, ttl=TTL)

    return retrying(attempt)


def _counts(engine: Engine, account_id: str, month: str = "2025-03") -> counters.Counts:
    with Session(engine) as session:
        return counters.read(session.connection(), counters.ACCOUNTS, account_id, month)


def _reservations(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Reservation)).one()


def test_admits_up_to_the_limit_then_refuses(engine: Engine) -> None:
    account_id = _account(engine)
    answers = [_admit(engine, account_id, f"r{i}") for i in range(5)]
    assert [a.allowed for a in answers] == [True, True, True, False, False]
    assert [a.remaining for a in answers] == [2, 1, 0, 0, 0]
    assert answers[3].reason == admission.PLAN_LIMIT_EXCEEDED
    assert all(a.plan == "trial" and a.limit == 3 and a.month == "2025-03" for a in answers)
    assert _counts(engine, account_id) == counters.Counts(used=0, reserved=3)
    assert _reservations(engine) == 3  # a refusal leaves no reservation behind


def test_admitting_the_same_request_twice_reserves_once(engine: Engine) -> None:
    account_id = _account(engine)
    first = _admit(engine, account_id, "same")
    again = _admit(engine, account_id, "same")
    assert first.allowed and again.allowed
    assert first.remaining == again.remaining == 2
    assert _counts(engine, account_id).reserved == 1
    # Even a month later, the request stays in the month it was admitted in.
    later = _admit(engine, account_id, "same", now=NOW + timedelta(days=30))
    assert later.allowed and later.month == "2025-03"
    assert _counts(engine, account_id, "2025-04") == counters.Counts(0, 0)


def test_a_full_month_still_answers_a_request_it_admitted(engine: Engine) -> None:
    account_id = _account(engine)
    for i in range(3):
        assert _admit(engine, account_id, f"r{i}").allowed
    assert not _admit(engine, account_id, "r3").allowed
    assert _admit(engine, account_id, "r0").allowed  # a retried call of an admitted request


def test_unlimited_plans_always_admit_and_still_reserve(engine: Engine) -> None:
    account_id = _account(engine, plan="enterprise")
    answers = [_admit(engine, account_id, f"r{i}") for i in range(10)]
    assert all(a.allowed and a.limit is None and a.remaining == 0 for a in answers)
    assert _counts(engine, account_id).reserved == 10


def test_disabled_and_unknown_accounts_are_refused(engine: Engine) -> None:
    account_id = _account(engine)
    with write_session(engine) as session:
        accounts.set_disabled(session, PLANS, account_id=account_id, disabled=True)
    disabled = _admit(engine, account_id, "r1")
    assert not disabled.allowed and disabled.reason == admission.ACCOUNT_DISABLED and disabled.plan == "trial"
    unknown = _admit(engine, "00000000-0000-0000-0000-000000000000", "r2")
    assert not unknown.allowed and unknown.reason == admission.ACCOUNT_NOT_FOUND
    assert _reservations(engine) == 0


@pytest.mark.parametrize(("account_id", "request_id"), [("", "r"), ("a", ""), ("a", "r" * 129), ("a" * 65, "r")])
def test_malformed_admits_are_invalid(engine: Engine, account_id: str, request_id: str) -> None:
    with pytest.raises(admission.InvalidAdmission), write_session(engine) as session:
        admit_in(session, PLANS, account_id=account_id, request_id=request_id, now=NOW, ttl=TTL)


def test_a_new_plan_applies_to_the_next_admit(engine: Engine) -> None:
    account_id = _account(engine)
    for i in range(3):
        assert _admit(engine, account_id, f"r{i}").allowed
    with write_session(engine) as session:
        accounts.set_plan(session, PLANS, account_id=account_id, plan="free")
    upgraded = _admit(engine, account_id, "r3")
    assert upgraded.allowed and upgraded.plan == "free" and upgraded.remaining == 1000 - 4


def test_concurrent_admits_from_two_replicas_are_exact(engine: Engine) -> None:
    # Two engines are two replicas' connection pools on one database; 48 threads
    # race 400 distinct requests for 50 slots, and 100 retried calls of some of them.
    url = engine.url.render_as_string(hide_password=False)
    replicas = [engine, make_engine(url)]
    with write_session(engine) as session:
        account_id = accounts.create_account(
            session, PlanBook.from_limits({"trial": 50}), email="race@example.com", plan="trial"
        ).account_id
    plans = PlanBook.from_limits({"trial": 50})

    def call(i: int) -> tuple[str, bool]:
        request_id = f"r{i % 400}"

        def attempt() -> bool:
            with write_session(replicas[i % 2]) as session:
                answer = admit_in(session, plans, account_id=account_id, request_id=request_id, now=NOW, ttl=TTL)
                return answer.allowed

        return request_id, retrying(attempt)

    try:
        with ThreadPoolExecutor(48) as pool:
            results = list(pool.map(call, range(500)))
    finally:
        replicas[1].dispose()
    allowed_ids = {request_id for request_id, allowed in results if allowed}
    assert len(allowed_ids) == 50
    # Every call of an admitted request was admitted; none of a refused one.
    assert all(allowed == (request_id in allowed_ids) for request_id, allowed in results)
    assert _counts(engine, account_id) == counters.Counts(used=0, reserved=50)
    with Session(engine) as session:
        stored = session.exec(select(col(Reservation.request_id))).all()
    assert set(stored) == allowed_ids


def test_the_first_requests_of_a_month_racing_are_all_admitted(engine: Engine) -> None:
    # A month's counter row is created by its first request; requests racing that
    # creation must wait for it, not read "no row" and refuse with slots to spare.
    url = engine.url.render_as_string(hide_password=False)
    replicas = [engine, make_engine(url)]
    plans = PlanBook.from_limits({"trial": 1000})
    with write_session(engine) as session:
        account_id = accounts.create_account(session, plans, email="first@example.com", plan="trial").account_id

    def call(i: int) -> bool:
        month = NOW + timedelta(days=31 * (i // 12))  # twelve racers per fresh month

        def attempt() -> bool:
            with write_session(replicas[i % 2]) as session:
                return admit_in(session, plans, account_id=account_id, request_id=f"r{i}", now=month, ttl=TTL).allowed

        return retrying(attempt)

    try:
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(call, range(240)))
    finally:
        replicas[1].dispose()
    assert results.count(True) == 240
