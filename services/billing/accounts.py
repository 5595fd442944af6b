"""Accounts: creating one, and reading one back with this month's usage.

Errors, all `AccountError`:
- `InvalidAccountRequest`: a malformed email, an unknown plan, no key to look up;
- `AccountExists`: the email already has an account;
- `AccountNotFound`: no account has that id or email.
The gRPC servicer maps each to one status code; nothing here knows about gRPC.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.billing import ledger
from services.billing.models import Account, utcnow
from services.billing.passwords import hash_password
from services.billing.plans import PlanBook

__all__ = [
    "AccountError",
    "AccountExists",
    "AccountNotFound",
    "AccountView",
    "InvalidAccountRequest",
    "create_account",
    "get_account",
    "normalize_email",
]

# Deliberately loose: one @, no spaces, a dot in the domain. Whether the address
# receives mail is not billing's question; a typo like "a@b" or "a b@c.d" is.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_MAX_EMAIL = 254  # RFC 5321's limit on a forward path


class AccountError(Exception):
    """Base of the account errors; the message is safe to show to the caller."""


class InvalidAccountRequest(AccountError):
    """The request itself is wrong: bad email, unknown plan, nothing to look up."""


class AccountExists(AccountError):
    """An account with this email already exists."""


class AccountNotFound(AccountError):
    """No account matches."""


@dataclass(frozen=True)
class AccountView:
    """An account as callers see it: never its password hash."""

    account_id: str
    email: str
    plan: str
    disabled: bool
    requests_this_month: int
    monthly_limit: int | None  # None: unlimited
    spend_this_month_usd: Decimal


def normalize_email(email: str) -> str:
    """`email` trimmed and lower-cased; raises InvalidAccountRequest when malformed.

    The whole address is lower-cased: providers that treat the local part as
    case-sensitive are vanishingly rare, while two accounts for `Ann@x.io` and
    `ann@x.io` would be a real support problem.
    """
    normalized = email.strip().lower()
    if len(normalized) > _MAX_EMAIL or not _EMAIL.match(normalized):
        raise InvalidAccountRequest(f"not a valid email address: {email.strip()!r}")
    return normalized


def create_account(session: Session, plans: PlanBook, *, email: str, plan: str = "", password: str = "") -> AccountView:
    """Create an account on `plan` (the default plan when empty) and commit.

    An empty `password` makes an account that signs in with tokens only.
    """
    normalized = normalize_email(email)
    chosen = plans.get(plan) if plan.strip() else plans.plans[plans.default]
    if chosen is None:
        raise InvalidAccountRequest(f"unknown plan {plan.strip()!r}; plans: {', '.join(sorted(plans.plans))}")
    if _find_by_email(session, normalized) is not None:
        raise AccountExists(f"an account for {normalized} already exists")
    account = Account(
        account_id=str(uuid.uuid4()),
        email=normalized,
        plan=chosen.name,
        password_hash=hash_password(password) if password else None,
    )
    session.add(account)
    try:
        session.commit()
    except IntegrityError:
        # Created concurrently (another request or replica) between our check and insert.
        session.rollback()
        if _find_by_email(session, normalized) is not None:
            raise AccountExists(f"an account for {normalized} already exists") from None
        raise
    return _view(session, plans, account, utcnow())


def get_account(
    session: Session,
    plans: PlanBook,
    *,
    account_id: str = "",
    email: str = "",
    now: datetime | None = None,
) -> AccountView:
    """The account with `account_id`, or else with `email`, and its usage in `now`'s month."""
    if account_id:
        account = session.get(Account, account_id)
    elif email:
        account = _find_by_email(session, email.strip().lower())
    else:
        raise InvalidAccountRequest("an account_id or an email is required")
    if account is None:
        raise AccountNotFound(f"no account {account_id or email.strip()!r}")
    return _view(session, plans, account, now or utcnow())


def _find_by_email(session: Session, normalized: str) -> Account | None:
    return session.exec(select(Account).where(col(Account.email) == normalized)).first()


def _view(session: Session, plans: PlanBook, account: Account, now: datetime) -> AccountView:
    usage = ledger.month_usage(session, account.account_id, ledger.month_key(now))
    return AccountView(
        account_id=account.account_id,
        email=account.email,
        plan=account.plan,
        disabled=account.disabled,
        requests_this_month=usage.requests,
        monthly_limit=plans.plan_of(account.plan).monthly_limit,
        spend_this_month_usd=usage.spend_usd,
    )
