from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlmodel import Session

from services.billing import accounts
from services.billing.models import Account
from services.billing.passwords import verify_password
from services.billing.plans import PlanBook, load_plans
from tests.billing.conftest import settle_event, usage_event


def test_create_on_the_default_plan(session: Session, plans: PlanBook) -> None:
    view = accounts.create_account(session, plans, email="ann@example.com")
    assert view.email == "ann@example.com"
    assert view.plan == "free" and view.monthly_limit == 1_000
    assert view.requests_this_month == 0 and view.spend_this_month_usd == Decimal(0)
    assert not view.disabled
    stored = session.get(Account, view.account_id)
    assert stored is not None and stored.password_hash is None


def test_create_on_a_named_plan(session: Session, plans: PlanBook) -> None:
    assert accounts.create_account(session, plans, email="a@x.io", plan=" Pro ").plan == "pro"
    enterprise = accounts.create_account(session, plans, email="b@x.io", plan="enterprise")
    assert enterprise.monthly_limit is None


def test_unknown_plan_is_invalid(session: Session, plans: PlanBook) -> None:
    with pytest.raises(accounts.InvalidAccountRequest, match="unknown plan 'gold'"):
        accounts.create_account(session, plans, email="a@x.io", plan="gold")


def test_email_is_normalized(session: Session, plans: PlanBook) -> None:
    view = accounts.create_account(session, plans, email="  Ann.Lee+ai@Example.COM ")
    assert view.email == "ann.lee+ai@example.com"
    found = accounts.get_account(session, plans, email="ANN.LEE+AI@example.com")
    assert found.account_id == view.account_id


@pytest.mark.parametrize(
    "email", ["", "ann", "ann@", "@x.io", "ann@x", "a b@x.io", "a@b@x.io", "a@x.", "a" * 250 + "@x.io"]
)
def test_malformed_email_is_invalid(session: Session, plans: PlanBook, email: str) -> None:
    with pytest.raises(accounts.InvalidAccountRequest):
        accounts.create_account(session, plans, email=email)


def test_duplicate_email_exists_whatever_its_case(session: Session, plans: PlanBook) -> None:
    accounts.create_account(session, plans, email="ann@example.com")
    with pytest.raises(accounts.AccountExists):
        accounts.create_account(session, plans, email="ANN@example.com", plan="pro")


def test_password_is_hashed_not_stored(session: Session, plans: PlanBook) -> None:
    view = accounts.create_account(session, plans, email="ann@example.com", password="s3cret-pass")
    stored = session.get(Account, view.account_id)
    assert stored is not None and stored.password_hash is not None
    assert "s3cret-pass" not in stored.password_hash
    assert stored.password_hash.startswith("scrypt$16384$8$1$")
    assert verify_password(stored.password_hash, "s3cret-pass")
    assert not verify_password(stored.password_hash, "wrong")


def test_get_by_id_and_missing(session: Session, plans: PlanBook) -> None:
    view = accounts.create_account(session, plans, email="ann@example.com")
    assert accounts.get_account(session, plans, account_id=view.account_id) == view
    with pytest.raises(accounts.AccountNotFound):
        accounts.get_account(session, plans, account_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(accounts.AccountNotFound):
        accounts.get_account(session, plans, email="bob@example.com")
    with pytest.raises(accounts.InvalidAccountRequest):
        accounts.get_account(session, plans)


def test_get_reports_this_months_counted_usage(session: Session, plans: PlanBook) -> None:
    view = accounts.create_account(session, plans, email="ann@example.com", plan="starter")
    march = datetime(2025, 3, 15, tzinfo=UTC).timestamp()
    february = datetime(2025, 2, 28, 23, 59, tzinfo=UTC).timestamp()
    for event in [
        usage_event(view.account_id, admitted_at=march, actual_cost_usd="0.25"),
        # No usage reported: its estimate is what it is charged at.
        usage_event(view.account_id, admitted_at=march, actual_cost_usd=None, estimated_cost_usd="0.5"),
        # No provider answered: neither counted nor charged.
        usage_event(view.account_id, admitted_at=march, outcome="failed", provider_answered=False),
        # A provider answered, then the stream broke: counted.
        usage_event(view.account_id, admitted_at=march, outcome="failed", actual_cost_usd="0.000000000001"),
        usage_event(view.account_id, admitted_at=february, actual_cost_usd="7"),
        usage_event("someone-else", admitted_at=march, actual_cost_usd="9"),
    ]:
        assert settle_event(session, event)
    now = datetime(2025, 3, 31, 12, tzinfo=UTC)
    got = accounts.get_account(session, plans, account_id=view.account_id, now=now)
    assert got.requests_this_month == 3
    assert got.spend_this_month_usd == Decimal("0.750000000001")
    assert got.monthly_limit == 50_000


def test_a_removed_plan_reports_the_default_limit(session: Session) -> None:
    before = PlanBook.from_limits({"free": 10, "gold": 500})
    view = accounts.create_account(session, before, email="ann@example.com", plan="gold")
    after = load_plans(None)
    got = accounts.get_account(session, after, account_id=view.account_id)
    assert got.plan == "gold" and got.monthly_limit == 1_000
