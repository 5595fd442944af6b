"""The usage ledger: the row a usage event becomes, and a month's totals read back.

Writing rows (idempotently, together with the counters) is `settlement.py`'s.
`InvalidEvent` means an event can never become a row: the consumer terminates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from services.billing.models import LedgerEntry, utcnow
from services.billing.money import parse_usd, sum_usd
from services.billing.months import month_key
from services.common.events import UsageEvent

__all__ = ["InvalidEvent", "MonthUsage", "entry_from_event", "month_usage"]


class InvalidEvent(ValueError):
    """A usage event that parses but can never be recorded (bad amount, bad time)."""


@dataclass(frozen=True)
class MonthUsage:
    """An account's counted requests and spend in one calendar month (UTC)."""

    requests: int
    spend_usd: Decimal


def entry_from_event(event: UsageEvent) -> dict[str, Any]:
    """The ledger row for `event`, as the columns of a `LedgerEntry`; raises
    InvalidEvent when one cannot be made."""
    if not event.request_id or not event.account_id:
        raise InvalidEvent("request_id and account_id are required")
    if (
        len(event.request_id) > 128
        or len(event.account_id) > 64
        or max(len(event.api_key_id), len(event.lease_id)) > 64
    ):
        raise InvalidEvent("request_id, account_id, api_key_id or lease_id is too long")
    try:
        admitted_at = datetime.fromtimestamp(event.admitted_at, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidEvent(f"admitted_at {event.admitted_at!r} is not a time: {exc}") from None
    try:
        estimated = parse_usd(event.estimated_cost_usd)
        actual = None if event.actual_cost_usd is None else parse_usd(event.actual_cost_usd)
        lease_usd = None if event.lease_usd is None or not event.lease_id else parse_usd(event.lease_usd)
    except ValueError as exc:
        raise InvalidEvent(str(exc)) from None
    counts = (event.prompt_tokens, event.completion_tokens, event.latency_ms)
    # The columns are 32-bit INTEGER on PostgreSQL: an out-of-range value would fail
    # the insert on every redelivery, so it is refused here, once.
    if not all(0 <= count < 2**31 for count in counts):
        raise InvalidEvent(f"token counts and latency out of range: {counts}")
    return {
        "request_id": event.request_id,
        "account_id": event.account_id,
        "month": month_key(admitted_at),
        "outcome": event.outcome,
        # SPEC.md §3: a request counts once a provider answered, even if it failed later.
        "counted": event.provider_answered,
        # A request no provider answered has no routed model: it is listed under the
        # model the client asked for (cut to a sane length; the client chose it).
        "routed_model": event.routed_model or event.requested_model[:256],
        "provider": event.provider,
        "strategy": event.strategy_used,
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "estimated_cost_usd": estimated,
        "actual_cost_usd": actual,
        "catalog_version": event.catalog_version,
        "latency_ms": event.latency_ms,
        "error_code": event.error_code,
        "dialect": event.dialect[:32],
        "stream": event.stream,
        # Settlement takes the reservation's key where there is one; a request admitted
        # without one (billing was fail-open) has only the event's word.
        "api_key_id": event.api_key_id or None,
        "lease_id": event.lease_id or None,
        "lease_usd": lease_usd,
        "admitted_at": admitted_at,
        "created_at": utcnow(),
    }


def month_usage(session: Session, account_id: str, month: str) -> MonthUsage:
    """Counted requests and their spend for `account_id` in `month` ("YYYY-MM"), from the ledger.

    Spend is the actual cost, or the estimate where the provider reported no usage.
    The count equals the month counter's `used` (settlement writes both in one
    transaction); the counter is what admission and GetAccount read.
    """
    cost = func.coalesce(col(LedgerEntry.actual_cost_usd), col(LedgerEntry.estimated_cost_usd))
    statement = select(func.count(), sum_usd(cost)).where(
        col(LedgerEntry.account_id) == account_id,
        col(LedgerEntry.month) == month,
        col(LedgerEntry.counted).is_(True),
    )
    requests, spend = session.exec(statement).one()
    return MonthUsage(requests=int(requests), spend_usd=spend)
