"""Money in the database: exact USD amounts as `Decimal`, on every backend.

A request can cost a millionth of a cent, so amounts keep 12 decimal places and
are never floats. PostgreSQL has an exact NUMERIC(20, 12). SQLite does not: its
NUMERIC affinity stores REAL, which would round amounts and sums. There the
amount is stored as a whole number of 1e-12 USD (an INTEGER is exact, and SQL's
SUM over it stays exact), and converted back to `Decimal` at the edge.

`Money` hides that difference: columns and `sum_usd(...)` aggregates read and
write `Decimal` whatever the dialect.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, Connection, Numeric, func, type_coerce
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["MAX_USD", "PLACES", "Money", "from_column", "parse_usd", "sum_usd"]

PLACES = 12
_QUANTUM = Decimal(1).scaleb(-PLACES)
# NUMERIC(20, 12) holds below 1e8; a single request costing more is not a real
# request, and bounding it keeps the SQLite integer far from overflowing.
MAX_USD = Decimal(1_000_000)


def parse_usd(value: str | Decimal | int) -> Decimal:
    """An amount in USD as an exact `Decimal` rounded to 12 places.

    Raises ValueError for text that is not a number, and for amounts that are
    negative, not finite or not below MAX_USD.
    """
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    if amount < 0 or amount >= MAX_USD:
        raise ValueError(f"amount out of range [0, {MAX_USD}): {value!r}")
    return amount.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN)


class Money(TypeDecorator[Decimal]):
    """An exact USD amount: NUMERIC(20, 12), or integer 1e-12 USD units on SQLite."""

    impl = Numeric(20, PLACES, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(20, PLACES, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        amount = parse_usd(value)
        if dialect.name == "sqlite":
            return int(amount.scaleb(PLACES))
        return amount

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-PLACES).quantize(_QUANTUM)
        return Decimal(value).quantize(_QUANTUM)


def sum_usd(expression: ColumnElement[Any] | Mapped[Any]) -> ColumnElement[Decimal]:
    """SUM of a Money expression, read back as an exact `Decimal` (0 over no rows)."""
    return type_coerce(func.coalesce(func.sum(expression), 0), Money())


def from_column(connection: Connection, value: Any) -> Decimal | None:
    """A Money column's value as a raw driver row holds it (`db.execute`), as `Decimal`."""
    return Money().process_result_value(value, connection.dialect)
