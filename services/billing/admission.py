"""Admission: reserve one request of the account's month, exactly, across replicas.

A request's reservation moves through these states (rows of `reservations`):

    Admit ──▶ reserved ──usage event, provider answered──▶ counted   (used +1, reserved −1)
                  │    ──usage event, no provider answer──▶ released  (reserved −1)
                  └────expires_at passed (reaper)─────────▶ expired   (reserved −1)
                                 expired ──late event, provider answered──▶ counted (used +1)

`admit` runs in one transaction: insert the reservation keyed by request id (a
second Admit of the same request finds it and reserves nothing more), then one
conditional UPDATE of the month's counter — `reserved + 1 WHERE used + reserved
< limit` — which the database evaluates on the locked row, so the last slot goes
to exactly one caller however many replicas ask at once. A refusal deletes the
reservation again, so a later Admit of the same request id is asked afresh.

Unlimited plans (enterprise) reserve the same way without the condition, so
that settlement is the same for every plan and the month's count is known.

The month is the UTC month of billing's clock at admission; the reservation
keeps it, and settlement counts the request in that month whenever its event
arrives (SPEC.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, select

from services.billing import counters
from services.billing.db import execute, insert_if_absent
from services.billing.models import Account, Reservation, ReservationState
from services.billing.months import month_key
from services.billing.plans import Plan, PlanBook

__all__ = [
    "ACCOUNT_DISABLED",
    "ACCOUNT_NOT_FOUND",
    "PLAN_LIMIT_EXCEEDED",
    "Admission",
    "InvalidAdmission",
    "admit",
    "check",
]

PLAN_LIMIT_EXCEEDED = "plan_limit_exceeded"
ACCOUNT_DISABLED = "account_disabled"
ACCOUNT_NOT_FOUND = "account_not_found"
_MAX_ID = 128  # the ledger's request_id column

_accounts = Account.__table__.c  # type: ignore[attr-defined]
_reservations = Reservation.__table__  # type: ignore[attr-defined]
_ACCOUNT = select(_accounts.plan, _accounts.disabled).where(_accounts.account_id == bindparam("account_id"))
_RESERVATION = select(_reservations.c.account_id, _reservations.c.month).where(
    _reservations.c.request_id == bindparam("request_id")
)
_UNRESERVE = delete(_reservations).where(_reservations.c.request_id == bindparam("request_id"))


class InvalidAdmission(ValueError):
    """An Admit without a request id or account id, or with one too long to store."""


@dataclass(frozen=True)
class Admission:
    """Billing's answer to one Admit."""

    allowed: bool
    plan: str
    limit: int | None  # None: unlimited
    remaining: int  # requests left in the month after this one; 0 when refused or unlimited
    reason: str  # "" when allowed, else one of the reasons above
    month: str  # "YYYY-MM": the month the request counts in


def check(account_id: str, request_id: str) -> None:
    """Raise InvalidAdmission for ids no Admit may carry (before any database work)."""
    if not account_id or not request_id:
        raise InvalidAdmission("account_id and request_id are required")
    if len(request_id) > _MAX_ID or len(account_id) > 64:
        raise InvalidAdmission("account_id or request_id is too long")


def admit(
    connection: Connection, plans: PlanBook, *, account_id: str, request_id: str, now: datetime, ttl: timedelta
) -> Admission:
    """Reserve one request of `account_id`'s month for `request_id`, or refuse.

    Runs in the caller's transaction (a `Writer` unit of work, or one begun on a
    `db.write_options` engine), which commits it: the whole of it is safe to repeat.
    """
    check(account_id, request_id)
    month = month_key(now)
    account = execute(connection, _ACCOUNT, {"account_id": account_id}).fetchone()
    if account is None:
        return Admission(False, "", None, 0, ACCOUNT_NOT_FOUND, month)
    plan_name, disabled = account
    plan = plans.plan_of(plan_name)
    if disabled:
        return Admission(False, plan.name, plan.monthly_limit, 0, ACCOUNT_DISABLED, month)

    claimed = insert_if_absent(
        connection,
        Reservation,
        {
            "request_id": request_id,
            "account_id": account_id,
            "month": month,
            "state": ReservationState.RESERVED,
            "created_at": now,
            "expires_at": now + ttl,
        },
    )
    if not claimed:
        return _readmitted(connection, plan, request_id)
    counts = counters.try_reserve(connection, account_id, month, plan.monthly_limit)
    if counts is None:
        execute(connection, _UNRESERVE, {"request_id": request_id})
        return Admission(False, plan.name, plan.monthly_limit, 0, PLAN_LIMIT_EXCEEDED, month)
    return Admission(True, plan.name, plan.monthly_limit, _remaining(plan, counts), "", month)


def _readmitted(connection: Connection, plan: Plan, request_id: str) -> Admission:
    # The same request admitted before (a retried call): answer as then, in the
    # month it was admitted in, whatever has become of its reservation since.
    existing = execute(connection, _RESERVATION, {"request_id": request_id}).fetchone()
    if existing is None:
        raise AssertionError("a conflicting reservation vanished inside the transaction")
    account_id, month = existing
    counts = counters.read(connection, account_id, month)
    return Admission(True, plan.name, plan.monthly_limit, _remaining(plan, counts), "", month)


def _remaining(plan: Plan, counts: counters.Counts) -> int:
    if plan.monthly_limit is None:
        return 0
    return max(plan.monthly_limit - counts.taken, 0)
