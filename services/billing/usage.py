"""An account's month read back from the ledger: its newest requests and requests per day.

What the console shows. Both queries stay inside the `(account_id, month)`
index. Days are UTC days of `admitted_at`; a row's month is the one settlement
gave it (the reservation's), so in the rare case of a gateway clock off across
a month boundary its day is clamped into that month rather than lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from services.billing.models import LedgerEntry
from services.billing.months import as_utc, month_key

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "DayCount", "UsageRow", "daily_counts", "recent_requests"]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class UsageRow:
    """One request as the ledger recorded it."""

    request_id: str
    admitted_at: datetime  # aware, UTC
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    # What it cost: the actual cost, or the estimate where the provider reported
    # no usage; 0 for a request that does not count (no provider answered).
    cost_usd: Decimal
    latency_ms: int
    outcome: str  # "completed" | "failed"
    counted: bool
    error_code: str
    dialect: str = "openai_chat"
    stream: bool | None = None
    api_key_id: str | None = None


@dataclass(frozen=True)
class DayCount:
    """Requests that count against the plan, admitted on one UTC day."""

    day: date
    requests: int


def recent_requests(
    session: Session, account_id: str, month: str, limit: int = DEFAULT_LIMIT, api_key_id: str = ""
) -> list[UsageRow]:
    """The newest `limit` (1 to MAX_LIMIT) requests of `account_id` in `month` ("YYYY-MM"),
    newest first; only `api_key_id`'s when given."""
    only_key = [col(LedgerEntry.api_key_id) == api_key_id] if api_key_id else []
    statement = (
        select(LedgerEntry)
        .where(col(LedgerEntry.account_id) == account_id, col(LedgerEntry.month) == month, *only_key)
        .order_by(col(LedgerEntry.admitted_at).desc(), col(LedgerEntry.request_id).desc())
        .limit(max(1, min(limit, MAX_LIMIT)))
    )
    return [_row(entry) for entry in session.exec(statement)]


def daily_counts(session: Session, account_id: str, now: datetime) -> list[DayCount]:
    """Counted requests per UTC day of `now`'s month, every day from the 1st through `now`'s, oldest first."""
    month = month_key(now)
    today = now.astimezone(UTC).date()
    first = today.replace(day=1)
    day = _utc_day(session, col(LedgerEntry.admitted_at))
    statement = (
        select(day, func.count())
        .where(
            col(LedgerEntry.account_id) == account_id,
            col(LedgerEntry.month) == month,
            col(LedgerEntry.counted).is_(True),
        )
        .group_by(day)
    )
    counts: dict[date, int] = {}
    for value, requests in session.exec(statement):
        when = min(max(_as_date(value), first), today)
        counts[when] = counts.get(when, 0) + int(requests)
    return [DayCount(d, counts.get(d, 0)) for d in _days(first, today)]


def _row(entry: LedgerEntry) -> UsageRow:
    cost = Decimal(0)
    if entry.counted:
        cost = entry.actual_cost_usd if entry.actual_cost_usd is not None else entry.estimated_cost_usd
    return UsageRow(
        request_id=entry.request_id,
        admitted_at=as_utc(entry.admitted_at),
        model=entry.routed_model,
        provider=entry.provider,
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        cost_usd=cost,
        latency_ms=entry.latency_ms,
        outcome=entry.outcome,
        counted=entry.counted,
        error_code=entry.error_code,
        dialect=entry.dialect,
        stream=entry.stream,
        api_key_id=entry.api_key_id,
    )


def _utc_day(session: Session, column: Any) -> ColumnElement[Any]:
    # SQLite keeps the UTC wall time as text, so date() is the UTC day. PostgreSQL's
    # date() of a timestamptz would use the session's time zone: convert first.
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _as_date(value: date | str) -> date:
    # PostgreSQL returns a date, SQLite the text "YYYY-MM-DD".
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
