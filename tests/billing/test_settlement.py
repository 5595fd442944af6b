"""Settlement and expiry against a real database (SQLite and PostgreSQL).

What a usage event does to the month's counters and the ledger, for an admitted
request, a request never admitted, one whose reservation expired, and — test
(c) — the same event delivered again: nothing changes the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from services.billing import accounts, admission, counters, ledger
from services.billing.db import retrying, write_session
from services.billing.models import LedgerEntry, Reservation, ReservationState
from services.billing.plans import PlanBook
from services.billing.reaper import expire_due
from services.common.events import UsageEvent
from tests.billing.conftest import admit_in, settle_event, usage_event

NOW = datetime(2025, 3, 10, 12, tzinfo=UTC)
TTL = timedelta(minutes=15)
PLANS = PlanBook.from_limits({"trial": 5})


def _account(engine: Engine) -> str:
    with write_session(engine) as session:
        return accounts.create_account(session, PLANS, email="ann@example.com", plan="trial").account_id


def _admit(engine: Engine, account_id: str, request_id: str, now: datetime = NOW) -> admission.Admission:
    with write_session(engine) as session:
        return admit_in(session, PLANS, account_id=account_id, request_id=request_id, now=now, ttl=TTL)


def _settle(engine: Engine, event: UsageEvent) -> bool:
    def attempt() -> bool:
        with write_session(engine) as session:
            return settle_event(session, event)

    return retrying(attempt)


def _counts(engine: Engine, account_id: str, month: str = "2025-03") -> counters.Counts:
    """The month's slots: counted and reserved (spend is checked where it matters)."""
    with Session(engine) as session:
        counts = counters.read(session.connection(), counters.ACCOUNTS, account_id, month)
    return counters.Counts(counts.used, counts.reserved)


def _state(engine: Engine, request_id: str) -> str:
    with Session(engine) as session:
        reservation = session.get(Reservation, request_id)
        assert reservation is not None
        return reservation.state


def _ledger(engine: Engine, account_id: str) -> list[tuple[str, str, bool, Decimal | None]]:
    with Session(engine) as session:
        rows = session.exec(
            select(LedgerEntry).where(col(LedgerEntry.account_id) == account_id).order_by(col(LedgerEntry.request_id))
        ).all()
        return [(r.request_id, r.month, r.counted, r.actual_cost_usd) for r in rows]


def _event(account_id: str, request_id: str, **fields: object) -> UsageEvent:
    return usage_event(account_id, request_id=request_id, admitted_at=NOW.timestamp(), **fields)


def test_an_answered_request_counts_and_frees_its_reservation(engine: Engine) -> None:
    account_id = _account(engine)
    assert _admit(engine, account_id, "r1").allowed
    assert _settle(engine, _event(account_id, "r1"))
    assert _counts(engine, account_id) == counters.Counts(used=1, reserved=0)
    assert _state(engine, "r1") == ReservationState.COUNTED
    assert _ledger(engine, account_id) == [("r1", "2025-03", True, Decimal("0.000039"))]


def test_a_broken_stream_counts_and_an_unanswered_request_releases(engine: Engine) -> None:
    account_id = _account(engine)
    for request_id in ("broke", "unanswered"):
        assert _admit(engine, account_id, request_id).allowed
    assert _settle(engine, _event(account_id, "broke", outcome="failed", provider_answered=True))
    assert _settle(engine, _event(account_id, "unanswered", outcome="failed", provider_answered=False))
    assert _counts(engine, account_id) == counters.Counts(used=1, reserved=0)
    assert _state(engine, "unanswered") == ReservationState.RELEASED
    # The released slot is free again: five admits fit beside the one counted.
    assert [_admit(engine, account_id, f"n{i}").allowed for i in range(5)] == [True, True, True, True, False]


def test_a_request_counts_in_the_month_it_was_admitted(engine: Engine) -> None:
    account_id = _account(engine)
    late_on_the_31st = datetime(2025, 3, 31, 23, 59, 59, tzinfo=UTC)
    assert _admit(engine, account_id, "r1", now=late_on_the_31st).month == "2025-03"
    # The gateway's clock ran a little ahead: its admitted_at is already April.
    april = (late_on_the_31st + timedelta(seconds=2)).timestamp()
    assert _settle(engine, usage_event(account_id, request_id="r1", admitted_at=april))
    assert _counts(engine, account_id, "2025-03") == counters.Counts(used=1, reserved=0)
    assert _counts(engine, account_id, "2025-04") == counters.Counts(0, 0)
    assert _ledger(engine, account_id)[0][1] == "2025-03"


def test_an_event_without_a_reservation_counts_in_its_admitted_month(engine: Engine) -> None:
    # Billing was fail-open, or the gateway never asked: no reservation row.
    account_id = _account(engine)
    assert _settle(engine, _event(account_id, "r1"))
    assert _settle(engine, _event(account_id, "r2", outcome="failed", provider_answered=False))
    assert _counts(engine, account_id) == counters.Counts(used=1, reserved=0)
    assert [row[2] for row in _ledger(engine, account_id)] == [True, False]


def test_redelivered_and_duplicated_events_change_nothing(engine: Engine) -> None:
    # Test (c), at the database: every event of a month settled, then all of them again,
    # and again with different numbers under the same request id.
    account_id = _account(engine)
    events = [
        _event(account_id, "admitted-ok", actual_cost_usd="0.25"),
        _event(account_id, "admitted-unanswered", outcome="failed", provider_answered=False),
        _event(account_id, "never-admitted", actual_cost_usd="0.5"),
    ]
    for request_id in ("admitted-ok", "admitted-unanswered"):
        assert _admit(engine, account_id, request_id).allowed
    assert [_settle(engine, event) for event in events] == [True, True, True]
    counts, rows = _counts(engine, account_id), _ledger(engine, account_id)
    with Session(engine) as session:
        usage = ledger.month_usage(session, account_id, "2025-03")
    assert counts == counters.Counts(used=2, reserved=0)
    assert usage == ledger.MonthUsage(requests=2, spend_usd=Decimal("0.75"))

    redelivered = [*events, *(e.model_copy(update={"actual_cost_usd": "9", "provider_answered": True}) for e in events)]
    assert [_settle(engine, event) for event in redelivered] == [False] * 6
    with Session(engine) as session:
        assert ledger.month_usage(session, account_id, "2025-03") == usage
    assert _counts(engine, account_id) == counts
    assert _ledger(engine, account_id) == rows


def test_replicas_settling_the_same_events_at_once_settle_each_once(engine: Engine) -> None:
    account_id = _account(engine)
    request_ids = [f"r{i}" for i in range(5)]
    for request_id in request_ids:
        assert _admit(engine, account_id, request_id).allowed
    events = [_event(account_id, request_id) for request_id in request_ids] * 6  # each delivered six times
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda event: _settle(engine, event), events))
    assert results.count(True) == 5
    assert _counts(engine, account_id) == counters.Counts(used=5, reserved=0)
    assert len(_ledger(engine, account_id)) == 5


def test_the_reaper_frees_only_reservations_past_their_expiry(engine: Engine) -> None:
    account_id = _account(engine)
    assert _admit(engine, account_id, "early").allowed
    assert _admit(engine, account_id, "later", now=NOW + timedelta(minutes=10)).allowed
    assert expire_due(engine, (NOW + TTL - timedelta(seconds=1)).timestamp()) == 0
    assert expire_due(engine, (NOW + TTL + timedelta(seconds=1)).timestamp()) == 1
    assert expire_due(engine, (NOW + TTL + timedelta(seconds=1)).timestamp()) == 0  # once
    assert _state(engine, "early") == ReservationState.EXPIRED
    assert _state(engine, "later") == ReservationState.RESERVED
    assert _counts(engine, account_id) == counters.Counts(used=0, reserved=1)


def test_a_late_event_for_an_expired_reservation_still_counts(engine: Engine) -> None:
    account_id = _account(engine)
    for request_id in ("answered", "unanswered"):
        assert _admit(engine, account_id, request_id).allowed
    assert expire_due(engine, (NOW + 2 * TTL).timestamp()) == 2
    assert _counts(engine, account_id) == counters.Counts(used=0, reserved=0)
    assert _settle(engine, _event(account_id, "answered"))
    assert _settle(engine, _event(account_id, "unanswered", outcome="failed", provider_answered=False))
    # Counted once, and the expired slot is not freed a second time.
    assert _counts(engine, account_id) == counters.Counts(used=1, reserved=0)
    assert _state(engine, "answered") == ReservationState.COUNTED
    assert _state(engine, "unanswered") == ReservationState.EXPIRED


def test_the_reaper_and_settlement_racing_free_each_slot_once(engine: Engine) -> None:
    account_id = _account(engine)
    with write_session(engine) as session:
        accounts.set_plan(session, PlanBook.from_limits({"big": 1000}), account_id=account_id, plan="big")
    plans = PlanBook.from_limits({"big": 1000})
    request_ids = [f"r{i}" for i in range(60)]
    for request_id in request_ids:
        with write_session(engine) as session:
            assert admit_in(session, plans, account_id=account_id, request_id=request_id, now=NOW, ttl=TTL).allowed
    after_expiry = (NOW + 2 * TTL).timestamp()
    jobs: list[Callable[[], object]] = [partial(_settle, engine, _event(account_id, rid)) for rid in request_ids[::2]]
    jobs += [partial(_settle, engine, _event(account_id, rid, provider_answered=False)) for rid in request_ids[1::2]]
    jobs += [partial(expire_due, engine, after_expiry)] * 4
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda job: job(), jobs))
    # Every answered request counted once; every slot freed once, by whichever came first.
    assert _counts(engine, account_id) == counters.Counts(used=30, reserved=0)
    with Session(engine) as session:
        reserved = session.exec(
            select(func.count()).select_from(Reservation).where(col(Reservation.state) == ReservationState.RESERVED)
        ).one()
    assert reserved == 0
