"""Per-month counters of an account (`month_counters`) or of an API key
(`key_month_counters`): the only place their SQL lives.

Each row holds a month's counted requests (`used`), the requests in flight
(`reserved`), what the counted ones cost (`spent_usd`) and the worst cases the
ones in flight hold (`reserved_usd`).

Every function runs inside the caller's transaction (on its `Connection`) and
never commits. The conditional increment in `try_reserve` is the whole of
admission's exactness: the database evaluates `used + reserved < limit` and
`spent + reserved_usd + amount <= budget` and the increment as one statement on
the row it has locked, so no two replicas can both take the last slot or the
last dollar.

The statements are built once per table and kind of limit: these run on every request.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from services.billing.db import execute, insert_if_absent
from services.billing.models import KeyMonthCounter, MonthCounter
from services.billing.money import Money, from_column

__all__ = ["ACCOUNTS", "KEYS", "Counter", "Counts", "adjust", "read", "try_reserve"]

_ZERO = Decimal(0)


@dataclass(frozen=True)
class Counter:
    """One table of month counters, and the column naming whose they are."""

    model: Any
    owner: str

    @property
    def table(self) -> Any:
        return self.model.__table__

    def key(self) -> Any:
        c = self.table.c
        # Bound parameters are named b_*: SQLAlchemy reserves the column names in UPDATEs.
        return (c[self.owner] == bindparam("b_owner")) & (c.month == bindparam("b_month"))


ACCOUNTS = Counter(MonthCounter, "account_id")
KEYS = Counter(KeyMonthCounter, "key_id")


@dataclass(frozen=True)
class Counts:
    """A month's counted requests and spend, and what the requests in flight hold."""

    used: int
    reserved: int
    spent_usd: Decimal = _ZERO
    reserved_usd: Decimal = _ZERO

    @property
    def taken(self) -> int:
        """The slots no new request may have: counted plus in flight."""
        return self.used + self.reserved

    @property
    def committed_usd(self) -> Decimal:
        """The dollars no new request may have: spent plus held in flight."""
        return self.spent_usd + self.reserved_usd


def read(connection: Connection, counter: Counter, owner: str, month: str) -> Counts:
    """The counts of `owner` in `month`; zero for a month with no row yet."""
    row = execute(connection, _statements(counter).read, {"b_owner": owner, "b_month": month}).fetchone()
    return Counts(0, 0) if row is None else _counts(connection, row)


def try_reserve(
    connection: Connection,
    counter: Counter,
    owner: str,
    month: str,
    *,
    limit: int | None,
    amount: Decimal = _ZERO,
    budget: Decimal | None = None,
    slots: int = 1,
) -> Counts | None:
    """Take `slots` slots (one request's, or a lease's) and `amount` USD of `month`
    if `used + reserved + slots <= limit` and `spent + reserved_usd + amount <=
    budget` (a None limit or budget: no bound).

    Returns the counts after the reservation, or None when either does not fit.
    """
    counts = _reserve(connection, counter, owner, month, limit, amount, budget, slots)
    if counts is None:
        # Full, or the month has no row yet. Create it (a conflict does nothing)
        # and ask again. Not "refuse unless a row exists now": on PostgreSQL the
        # row may have been committed by a concurrent first request after the
        # UPDATE looked and before such a check, which would refuse a request
        # with slots to spare. The INSERT waits for that creator, so the second
        # UPDATE sees its row.
        _ensure(connection, counter, owner, month)
        counts = _reserve(connection, counter, owner, month, limit, amount, budget, slots)
    return counts


def adjust(
    connection: Connection,
    counter: Counter,
    owner: str,
    month: str,
    *,
    used: int = 0,
    reserved: int = 0,
    spent_usd: Decimal = _ZERO,
    freed_usd: Decimal = _ZERO,
) -> None:
    """Add `used` and `reserved` (either may be negative) and `spent_usd` to the
    month's counts, and take `freed_usd` off what its requests in flight hold."""
    values = {
        "b_owner": owner,
        "b_month": month,
        "b_used": used,
        "b_reserved": reserved,
        "b_spent": spent_usd,
        "b_freed": freed_usd,
    }
    statement = _statements(counter).adjust
    if execute(connection, statement, values).rowcount == 0:
        _ensure(connection, counter, owner, month)
        execute(connection, statement, values)


@dataclass(frozen=True)
class _Statements:
    read: Any
    adjust: Any
    reserve: dict[tuple[bool, bool], Any]  # by (has a request limit, has a budget)


@functools.cache
def _statements(counter: Counter) -> _Statements:
    table, c = counter.table, counter.table.c
    this_month = counter.key()
    money = Money()
    counts = (c.used, c.reserved, c.spent_usd, c.reserved_usd)
    below_limit = c.used + c.reserved + bindparam("b_slots") <= bindparam("b_limit")
    within_budget = c.spent_usd + c.reserved_usd + bindparam("b_amount", type_=money) <= bindparam(
        "b_budget", type_=money
    )
    reserve = {}
    for has_limit in (False, True):
        for has_budget in (False, True):
            conditions = [this_month]
            if has_limit:
                conditions.append(below_limit)
            if has_budget:
                conditions.append(within_budget)
            reserve[has_limit, has_budget] = (
                update(table)
                .where(*conditions)
                .values(
                    reserved=c.reserved + bindparam("b_slots"),
                    reserved_usd=c.reserved_usd + bindparam("b_amount", type_=money),
                )
                .returning(*counts)
            )
    adjust = (
        update(table)
        .where(this_month)
        .values(
            used=c.used + bindparam("b_used"),
            reserved=c.reserved + bindparam("b_reserved"),
            spent_usd=c.spent_usd + bindparam("b_spent", type_=money),
            reserved_usd=c.reserved_usd - bindparam("b_freed", type_=money),
        )
    )
    return _Statements(read=select(*counts).where(this_month), adjust=adjust, reserve=reserve)


def _reserve(
    connection: Connection,
    counter: Counter,
    owner: str,
    month: str,
    limit: int | None,
    amount: Decimal,
    budget: Decimal | None,
    slots: int,
) -> Counts | None:
    values: dict[str, Any] = {"b_owner": owner, "b_month": month, "b_amount": amount, "b_slots": slots}
    if limit is not None:
        values["b_limit"] = limit
    if budget is not None:
        values["b_budget"] = budget
    statement = _statements(counter).reserve[limit is not None, budget is not None]
    row = execute(connection, statement, values).fetchone()
    return None if row is None else _counts(connection, row)


def _counts(connection: Connection, row: Any) -> Counts:
    spent, held = from_column(connection, row[2]), from_column(connection, row[3])
    return Counts(int(row[0]), int(row[1]), spent or _ZERO, held or _ZERO)


def _ensure(connection: Connection, counter: Counter, owner: str, month: str) -> None:
    insert_if_absent(
        connection,
        counter.model,
        {counter.owner: owner, "month": month, "used": 0, "reserved": 0, "spent_usd": _ZERO, "reserved_usd": _ZERO},
    )
