"""The usage ledger: settling usage events into rows, and reading a month back.

`record` is idempotent by request id: the gateway publishes each request's event
once with `Nats-Msg-Id` = request id, JetStream may still deliver it more than
once (redelivery after a lost ack, a publisher retry outside the duplicate
window), and every replica of billing shares one consumer. The first write wins;
any later one changes nothing.

Errors: `InvalidEvent` means the event can never be recorded (the consumer
terminates it); a SQLAlchemy error means the database failed and the same event
may be retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.billing.models import LedgerEntry
from services.billing.money import parse_usd, sum_usd
from services.common.events import UsageEvent

__all__ = ["InvalidEvent", "MonthUsage", "entry_from_event", "month_key", "month_usage", "record"]


class InvalidEvent(ValueError):
    """A usage event that parses but can never be recorded (bad amount, bad time)."""


@dataclass(frozen=True)
class MonthUsage:
    """An account's counted requests and spend in one calendar month (UTC)."""

    requests: int
    spend_usd: Decimal


def month_key(moment: datetime) -> str:
    """The "YYYY-MM" key of the UTC month `moment` falls in."""
    return moment.astimezone(UTC).strftime("%Y-%m")


def entry_from_event(event: UsageEvent) -> LedgerEntry:
    """The ledger row for `event`; raises InvalidEvent when one cannot be made."""
    if not event.request_id or not event.account_id:
        raise InvalidEvent("request_id and account_id are required")
    if len(event.request_id) > 128 or len(event.account_id) > 64:
        raise InvalidEvent("request_id or account_id is too long")
    try:
        admitted_at = datetime.fromtimestamp(event.admitted_at, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidEvent(f"admitted_at {event.admitted_at!r} is not a time: {exc}") from None
    try:
        estimated = parse_usd(event.estimated_cost_usd)
        actual = None if event.actual_cost_usd is None else parse_usd(event.actual_cost_usd)
    except ValueError as exc:
        raise InvalidEvent(str(exc)) from None
    counts = (event.prompt_tokens, event.completion_tokens, event.latency_ms)
    # The columns are 32-bit INTEGER on PostgreSQL: an out-of-range value would fail
    # the insert on every redelivery, so it is refused here, once.
    if not all(0 <= count < 2**31 for count in counts):
        raise InvalidEvent(f"token counts and latency out of range: {counts}")
    return LedgerEntry(
        request_id=event.request_id,
        account_id=event.account_id,
        month=month_key(admitted_at),
        outcome=event.outcome,
        # SPEC.md §3: a request counts once a provider answered, even if it failed later.
        counted=event.provider_answered,
        routed_model=event.routed_model,
        provider=event.provider,
        strategy=event.strategy_used,
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        estimated_cost_usd=estimated,
        actual_cost_usd=actual,
        catalog_version=event.catalog_version,
        latency_ms=event.latency_ms,
        error_code=event.error_code,
        admitted_at=admitted_at,
    )


def record(session: Session, event: UsageEvent) -> bool:
    """Write `event` into the ledger and commit; False when its request id was already there.

    Raises InvalidEvent for an event that can never be written, and lets database
    errors through (the caller retries later).
    """
    entry = entry_from_event(event)
    if session.get(LedgerEntry, entry.request_id) is not None:
        return False
    session.add(entry)
    try:
        session.commit()
    except IntegrityError:
        # Another replica wrote the same request between our read and our insert.
        # Anything else that breaks integrity is a real error: re-raise it.
        session.rollback()
        if session.get(LedgerEntry, entry.request_id) is not None:
            return False
        raise
    return True


def month_usage(session: Session, account_id: str, month: str) -> MonthUsage:
    """Counted requests and their spend for `account_id` in `month` ("YYYY-MM").

    Spend is the actual cost, or the estimate where the provider reported no usage.
    """
    cost = func.coalesce(col(LedgerEntry.actual_cost_usd), col(LedgerEntry.estimated_cost_usd))
    statement = select(func.count(), sum_usd(cost)).where(
        col(LedgerEntry.account_id) == account_id,
        col(LedgerEntry.month) == month,
        col(LedgerEntry.counted).is_(True),
    )
    requests, spend = session.exec(statement).one()
    return MonthUsage(requests=int(requests), spend_usd=spend)
