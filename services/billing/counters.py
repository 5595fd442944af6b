"""Per-account, per-month request counters: the only place their SQL lives.

Every function runs inside the caller's transaction (on its `Connection`) and
never commits. The conditional increment in `try_reserve` is the whole of
admission's exactness: the database evaluates `used + reserved < limit` and the
increment as one statement on the row it has locked, so no two replicas can
both take the last slot.

The statements are built once, at import: these run on every request.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select, update

from services.billing.db import execute, insert_if_absent
from services.billing.models import MonthCounter

__all__ = ["Counts", "adjust", "read", "try_reserve"]

_table = MonthCounter.__table__  # type: ignore[attr-defined]
_c = _table.c
# Bound parameters are named b_*: SQLAlchemy reserves the column names in UPDATEs.
_this_month = (_c.account_id == bindparam("b_account_id")) & (_c.month == bindparam("b_month"))
_READ = select(_c.used, _c.reserved).where(_this_month)
_RESERVE = update(_table).where(_this_month).values(reserved=_c.reserved + 1).returning(_c.used, _c.reserved)
_RESERVE_BELOW = (
    update(_table)
    .where(_this_month, _c.used + _c.reserved < bindparam("b_limit"))
    .values(reserved=_c.reserved + 1)
    .returning(_c.used, _c.reserved)
)
_ADJUST = (
    update(_table)
    .where(_this_month)
    .values(used=_c.used + bindparam("b_used"), reserved=_c.reserved + bindparam("b_reserved"))
)


@dataclass(frozen=True)
class Counts:
    """A month's counted requests and the reservations still in flight."""

    used: int
    reserved: int

    @property
    def taken(self) -> int:
        """The slots no new request may have: counted plus in flight."""
        return self.used + self.reserved


def read(connection: Connection, account_id: str, month: str) -> Counts:
    """The counts of `account_id` in `month`; zero for a month with no row yet."""
    row = execute(connection, _READ, {"b_account_id": account_id, "b_month": month}).fetchone()
    return Counts(0, 0) if row is None else Counts(int(row[0]), int(row[1]))


def try_reserve(connection: Connection, account_id: str, month: str, limit: int | None) -> Counts | None:
    """Take one slot of `month` if `used + reserved < limit` (always, when `limit` is None).

    Returns the counts after the reservation, or None when the month is full.
    """
    counts = _reserve(connection, account_id, month, limit)
    if counts is None:
        # Full, or the month has no row yet. Create it (a conflict does nothing)
        # and ask again. Not "refuse unless a row exists now": on PostgreSQL the
        # row may have been committed by a concurrent first request after the
        # UPDATE looked and before such a check, which would refuse a request
        # with slots to spare. The INSERT waits for that creator, so the second
        # UPDATE sees its row.
        _ensure(connection, account_id, month)
        counts = _reserve(connection, account_id, month, limit)
    return counts


def adjust(connection: Connection, account_id: str, month: str, *, used: int = 0, reserved: int = 0) -> None:
    """Add `used` and `reserved` (either may be negative) to the month's counts."""
    values = {"b_account_id": account_id, "b_month": month, "b_used": used, "b_reserved": reserved}
    if execute(connection, _ADJUST, values).rowcount == 0:
        _ensure(connection, account_id, month)
        execute(connection, _ADJUST, values)


def _reserve(connection: Connection, account_id: str, month: str, limit: int | None) -> Counts | None:
    if limit is None:
        row = execute(connection, _RESERVE, {"b_account_id": account_id, "b_month": month}).fetchone()
    else:
        values = {"b_account_id": account_id, "b_month": month, "b_limit": limit}
        row = execute(connection, _RESERVE_BELOW, values).fetchone()
    return None if row is None else Counts(int(row[0]), int(row[1]))


def _ensure(connection: Connection, account_id: str, month: str) -> None:
    insert_if_absent(connection, MonthCounter, {"account_id": account_id, "month": month, "used": 0, "reserved": 0})
