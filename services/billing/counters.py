"""Per-account, per-month request counters: the only place their SQL lives.

Every function runs inside the caller's transaction and never commits. The
conditional increment in `try_reserve` is the whole of admission's exactness:
the database evaluates `used + reserved < limit` and the increment as one
statement on the row it has locked, so no two replicas can both take the last
slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import Session, col

from services.billing.db import insert_if_absent
from services.billing.models import MonthCounter

__all__ = ["Counts", "adjust", "read", "try_reserve"]


@dataclass(frozen=True)
class Counts:
    """A month's counted requests and the reservations still in flight."""

    used: int
    reserved: int

    @property
    def taken(self) -> int:
        """The slots no new request may have: counted plus in flight."""
        return self.used + self.reserved


def read(session: Session, account_id: str, month: str) -> Counts:
    """The counts of `account_id` in `month`; zero for a month with no row yet."""
    row = session.get(MonthCounter, (account_id, month))
    return Counts(0, 0) if row is None else Counts(row.used, row.reserved)


def try_reserve(session: Session, account_id: str, month: str, limit: int | None) -> Counts | None:
    """Take one slot of `month` if `used + reserved < limit` (always, when `limit` is None).

    Returns the counts after the reservation, or None when the month is full.
    """
    counts = _reserve(session, account_id, month, limit)
    if counts is None:
        # Full, or the month has no row yet. Create it (a conflict does nothing)
        # and ask again. Not "refuse unless a row exists now": on PostgreSQL the
        # row may have been committed by a concurrent first request after the
        # UPDATE looked and before such a check, which would refuse a request
        # with slots to spare. The INSERT waits for that creator, so the second
        # UPDATE sees its row.
        _ensure(session, account_id, month)
        counts = _reserve(session, account_id, month, limit)
    return counts


def adjust(session: Session, account_id: str, month: str, *, used: int = 0, reserved: int = 0) -> None:
    """Add `used` and `reserved` (either may be negative) to the month's counts."""
    _ensure(session, account_id, month)
    session.exec(
        update(MonthCounter)
        .where(col(MonthCounter.account_id) == account_id, col(MonthCounter.month) == month)
        .values(used=col(MonthCounter.used) + used, reserved=col(MonthCounter.reserved) + reserved)
    )


def _reserve(session: Session, account_id: str, month: str, limit: int | None) -> Counts | None:
    statement = update(MonthCounter).where(col(MonthCounter.account_id) == account_id, col(MonthCounter.month) == month)
    if limit is not None:
        statement = statement.where(col(MonthCounter.used) + col(MonthCounter.reserved) < limit)
    statement = statement.values(reserved=col(MonthCounter.reserved) + 1).returning(
        col(MonthCounter.used), col(MonthCounter.reserved)
    )
    row = session.exec(statement).first()
    return None if row is None else Counts(int(row[0]), int(row[1]))


def _ensure(session: Session, account_id: str, month: str) -> None:
    insert_if_absent(session, MonthCounter, {"account_id": account_id, "month": month, "used": 0, "reserved": 0})
