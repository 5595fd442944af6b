"""Accounts: creating one, reading one back with this month's usage, changing its
plan or status, and checking its password.

Errors, all `AccountError`:
- `InvalidAccountRequest`: a malformed email, an unknown plan, no key to look up;
- `AccountExists`: the email already has an account;
- `AccountNotFound`: no account has that id or email;
- `InvalidCredentials`: the email and password do not match an account — an
  unknown email, an account without a password and a wrong password are this
  same error, after the same scrypt work, so neither the answer nor its timing
  tells whether an email has an account;
- `AccountDisabled`: the password matched, but the account is disabled.
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

from services.billing import counters, leases, ledger
from services.billing.models import Account, utcnow
from services.billing.money import parse_usd
from services.billing.months import month_key
from services.billing.passwords import hash_password, verify_password
from services.billing.plans import PlanBook

__all__ = [
    "AccountDisabled",
    "AccountError",
    "AccountExists",
    "AccountNotFound",
    "AccountView",
    "InvalidAccountRequest",
    "InvalidCredentials",
    "authenticate",
    "create_account",
    "get_account",
    "normalize_email",
    "set_budget",
    "set_disabled",
    "set_plan",
]

# Deliberately loose: one @, no spaces, a dot in the domain. Whether the address
# receives mail is not billing's question; a typo like "a@b" or "a b@c.d" is.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_MAX_EMAIL = 254  # RFC 5321's limit on a forward path
# A hash of a password nobody has, with the same parameters as real ones: checking
# against it when there is no real hash costs what a real check costs.
_NO_ACCOUNT_HASH = "scrypt$16384$8$1$tzZdq5gQ2IN1Rn6NjMoa8w==$pxbeP1hTwzJSs0B4AhebMUvDr03nq56Y07xZPITr1lc="


class AccountError(Exception):
    """Base of the account errors; the message is safe to show to the caller."""


class InvalidAccountRequest(AccountError):
    """The request itself is wrong: bad email, unknown plan, nothing to look up."""


class AccountExists(AccountError):
    """An account with this email already exists."""


class AccountNotFound(AccountError):
    """No account matches."""


class InvalidCredentials(AccountError):
    """The email and password do not match an account (which of the two is never said)."""


class AccountDisabled(AccountError):
    """The account exists and the password matched, but it is disabled."""


@dataclass(frozen=True)
class AccountView:
    """An account as callers see it: never its password hash."""

    account_id: str
    email: str
    plan: str
    disabled: bool
    # Requests that count (SPEC.md §3) in the month; reservations in flight are not
    # included until their usage event settles them.
    requests_this_month: int
    monthly_limit: int | None  # None: unlimited
    spend_this_month_usd: Decimal
    monthly_budget_usd: Decimal | None = None  # None: no account-wide budget


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
    """The account with `account_id`, or else with `email`, and its usage in `now`'s month.

    `requests_this_month` is the requests that count (settled, a provider
    answered); requests admitted and still in flight are not in it yet.
    """
    return _view(session, plans, _lookup(session, account_id, email), now or utcnow())


def set_plan(
    session: Session, plans: PlanBook, *, account_id: str = "", email: str = "", plan: str, now: datetime | None = None
) -> AccountView:
    """Move the account to `plan` and commit; its new limit applies to the next Admit.

    This month's count carries over: a downgrade below it refuses further
    requests this month, an upgrade admits more at once.
    """
    chosen = plans.get(plan)
    if chosen is None:
        raise InvalidAccountRequest(f"unknown plan {plan.strip()!r}; plans: {', '.join(sorted(plans.plans))}")
    account = _lookup(session, account_id, email)
    account.plan = chosen.name
    session.add(account)
    session.commit()
    return _view(session, plans, account, now or utcnow())


def set_disabled(
    session: Session,
    plans: PlanBook,
    *,
    account_id: str = "",
    email: str = "",
    disabled: bool,
    now: datetime | None = None,
) -> AccountView:
    """Disable (or enable again) the account and commit; Admit refuses a disabled account."""
    account = _lookup(session, account_id, email)
    account.disabled = disabled
    session.add(account)
    session.commit()
    return _view(session, plans, account, now or utcnow())


def set_budget(
    session: Session, plans: PlanBook, *, account_id: str, budget_usd: str, now: datetime | None = None
) -> AccountView:
    """Set (a decimal string) or clear ("") the account-wide monthly budget, and commit.

    Admission reads it on every request, so it holds from the next one; requests
    in flight already hold their worst case of the month's spend.
    """
    account = _lookup(session, account_id, "")
    account.monthly_budget_usd = parse_budget(budget_usd)
    session.add(account)
    session.commit()
    return _view(session, plans, account, now or utcnow())


def parse_budget(text: str) -> Decimal | None:
    """A budget in USD from its decimal string; None for ""; InvalidAccountRequest otherwise."""
    if not text.strip():
        return None
    try:
        return parse_usd(text)
    except ValueError as exc:
        raise InvalidAccountRequest(f"monthly_budget_usd: {exc}") from None


def authenticate(
    session: Session, plans: PlanBook, *, email: str, password: str, now: datetime | None = None
) -> AccountView:
    """The account whose email and password these are.

    Raises InvalidCredentials — after one scrypt check whatever the reason, so
    that an unknown email takes as long as a wrong password — or AccountDisabled.
    """
    normalized = email.strip().lower()
    account = _find_by_email(session, normalized) if normalized and len(normalized) <= _MAX_EMAIL else None
    stored = account.password_hash if account is not None and account.password_hash else None
    matched = verify_password(stored or _NO_ACCOUNT_HASH, password)
    if account is None or stored is None or not matched:
        raise InvalidCredentials("the email or the password is wrong")
    if account.disabled:
        raise AccountDisabled("this account is disabled")
    return _view(session, plans, account, now or utcnow())


def _lookup(session: Session, account_id: str, email: str) -> Account:
    if account_id:
        account = session.get(Account, account_id)
    elif email:
        account = _find_by_email(session, email.strip().lower())
    else:
        raise InvalidAccountRequest("an account_id or an email is required")
    if account is None:
        raise AccountNotFound(f"no account {account_id or email.strip()!r}")
    return account


def _find_by_email(session: Session, normalized: str) -> Account | None:
    return session.exec(select(Account).where(col(Account.email) == normalized)).first()


def _view(session: Session, plans: PlanBook, account: Account, now: datetime) -> AccountView:
    month = month_key(now)
    # The count is the counter admission enforces, read-your-writes: requests
    # admitted and not yet settled count too (they count unless they fail), so a
    # client that got three answers sees three even before their usage events are
    # settled. The spend is summed from the ledger, which settlement writes in the
    # same transaction as the counter.
    # The slots gateways hold in leases are not requests yet: a leased request counts
    # once its usage event is settled (within about a tenth of a second).
    connection = session.connection()
    counts = counters.read(connection, counters.ACCOUNTS, account.account_id, month)
    leased = leases.holding(connection, month=month, account_id=account.account_id)
    spend = ledger.month_usage(session, account.account_id, month).spend_usd
    return AccountView(
        account_id=account.account_id,
        email=account.email,
        plan=account.plan,
        disabled=account.disabled,
        requests_this_month=counts.used + counts.reserved - leased,
        monthly_limit=plans.plan_of(account.plan).monthly_limit,
        spend_this_month_usd=spend,
        monthly_budget_usd=account.monthly_budget_usd,
    )
