from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from services.billing import ledger
from services.billing.db import retrying, write_session
from services.billing.models import LedgerEntry
from services.billing.months import month_key
from tests.billing.conftest import settle_event, usage_event


def _rows(session: Session) -> int:
    return session.exec(select(func.count()).select_from(LedgerEntry)).one()


def test_the_same_event_twice_is_one_row(session: Session) -> None:
    event = usage_event("acct")
    assert settle_event(session, event) is True
    assert settle_event(session, event) is False
    # A redelivery that differs (a publisher retry with new numbers) still changes nothing.
    assert settle_event(session, event.model_copy(update={"actual_cost_usd": "5"})) is False
    assert _rows(session) == 1
    row = session.get(LedgerEntry, event.request_id)
    assert row is not None and row.actual_cost_usd == Decimal("0.000039")


def test_row_mirrors_the_event(session: Session) -> None:
    # 23:30 on Jan 31 in New York is Feb 1 in UTC: the month is UTC's.
    admitted = datetime(2025, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    event = usage_event(
        "acct",
        admitted_at=admitted.timestamp(),
        outcome="failed",
        provider_answered=False,
        actual_cost_usd=None,
        error_code="provider_timeout",
    )
    settle_event(session, event)
    row = session.get(LedgerEntry, event.request_id)
    assert row is not None
    assert row.month == "2025-02"
    assert row.outcome == "failed" and row.counted is False
    assert row.actual_cost_usd is None and row.estimated_cost_usd == Decimal("0.000042")
    assert (row.routed_model, row.provider, row.strategy) == ("gpt-4o-mini", "openai", "lowest_cost")
    assert (row.prompt_tokens, row.completion_tokens, row.latency_ms) == (12, 30, 420)
    assert row.catalog_version == "2025-01-01" and row.error_code == "provider_timeout"
    assert row.admitted_at.replace(tzinfo=UTC) == admitted


@pytest.mark.parametrize(
    "fields",
    [
        {"estimated_cost_usd": "free"},
        {"actual_cost_usd": "-0.1"},
        {"actual_cost_usd": "NaN"},
        {"admitted_at": 1e20},
        {"request_id": ""},
        {"request_id": "r" * 129},
        {"prompt_tokens": -1},
        {"completion_tokens": 2**31},
    ],
)
def test_unrecordable_events_are_invalid(session: Session, fields: dict[str, object]) -> None:
    with pytest.raises(ledger.InvalidEvent):
        settle_event(session, usage_event("acct", **fields))
    assert _rows(session) == 0


def test_concurrent_writers_record_once(engine: Engine) -> None:
    # Replicas racing on one redelivered event: exactly one write wins.
    event = usage_event("acct")

    def write() -> bool:
        def attempt() -> bool:
            with write_session(engine) as session:
                return settle_event(session, event)

        return retrying(attempt)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: write(), range(8)))
    assert results.count(True) == 1
    with Session(engine) as session:
        assert _rows(session) == 1


def test_month_usage_counts_and_sums(session: Session) -> None:
    now = datetime.now(UTC)
    for event in [
        usage_event("acct", actual_cost_usd="0.1"),
        usage_event("acct", actual_cost_usd="0.2"),
        usage_event("acct", actual_cost_usd=None, estimated_cost_usd="0.3"),
        usage_event("acct", provider_answered=False, outcome="failed", actual_cost_usd="1"),
    ]:
        settle_event(session, event)
    usage = ledger.month_usage(session, "acct", month_key(now))
    assert usage == ledger.MonthUsage(requests=3, spend_usd=Decimal("0.6"))
    assert ledger.month_usage(session, "acct", "1999-01") == ledger.MonthUsage(0, Decimal(0))
