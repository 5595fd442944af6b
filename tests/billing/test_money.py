from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from services.billing.models import LedgerEntry, utcnow
from services.billing.money import parse_usd, sum_usd


def test_parse_rounds_to_twelve_places() -> None:
    assert parse_usd("0.000042") == Decimal("0.000042")
    assert parse_usd(" 1e-6 ") == Decimal("0.000001")
    assert parse_usd("0.0000000000015") == Decimal("0.000000000002")  # half-even
    assert parse_usd(3) == Decimal(3)


@pytest.mark.parametrize("text", ["", "abc", "NaN", "Infinity", "-0.01", "1000000", "1e9"])
def test_parse_rejects_what_is_not_a_charge(text: str) -> None:
    with pytest.raises(ValueError):
        parse_usd(text)


def _entry(request_id: str, cost: str) -> LedgerEntry:
    return LedgerEntry(
        request_id=request_id,
        account_id="acct",
        month="2025-01",
        outcome="completed",
        counted=True,
        estimated_cost_usd=Decimal(cost),
        admitted_at=utcnow(),
    )


def test_amounts_and_sums_are_exact(engine: Engine) -> None:
    # A float would lose the last digits of the large one and the tiny ones in the sum.
    amounts = ["999999.999999999999", "0.000000000001", "0.000000000001", "0.1", "0.2"]
    with Session(engine) as session:
        for i, amount in enumerate(amounts):
            session.add(_entry(f"r{i}", amount))
        session.commit()
    with Session(engine) as session:
        stored = session.get(LedgerEntry, "r0")
        assert stored is not None and stored.estimated_cost_usd == Decimal("999999.999999999999")
        total = session.exec(select(sum_usd(col(LedgerEntry.estimated_cost_usd)))).one()
        assert total == Decimal("1000000.300000000001")
        none = session.exec(
            select(sum_usd(col(LedgerEntry.estimated_cost_usd))).where(col(LedgerEntry.account_id) == "other")
        ).one()
        assert none == Decimal(0)
