"""Admission: reserve one request of the account's month, exactly, across replicas.

A request's reservation moves through these states (rows of `reservations`):

    Admit ──▶ reserved ──usage event, provider answered──▶ counted   (used +1, reserved −1)
                  │    ──usage event, no provider answer──▶ released  (reserved −1)
                  └────expires_at passed (reaper)─────────▶ expired   (reserved −1)
                                 expired ──late event, provider answered──▶ counted (used +1)

`admit` is one transaction: insert the reservation keyed by request id (a
second Admit of the same request finds it and reserves nothing more), then one
conditional UPDATE of the month's counter — `reserved + 1 WHERE used + reserved
< limit` — which the database evaluates on the locked row, so the last slot goes
to exactly one caller however many replicas ask at once. A refusal rolls the
reservation back.

Unlimited plans (enterprise) reserve the same way without the condition, so
that settlement is the same for every plan and the month's count is known.

The month is the UTC month of billing's clock at admission; the reservation
keeps it, and settlement counts the request in that month whenever its event
arrives (SPEC.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from services.billing import counters
from services.billing.db import insert_if_absent
from services.billing.models import Account, Reservation, ReservationState
from services.billing.months import month_key
from services.billing.plans import Plan, PlanBook

__all__ = ["ACCOUNT_DISABLED", "ACCOUNT_NOT_FOUND", "PLAN_LIMIT_EXCEEDED", "Admission", "InvalidAdmission", "admit"]

PLAN_LIMIT_EXCEEDED = "plan_limit_exceeded"
ACCOUNT_DISABLED = "account_disabled"
ACCOUNT_NOT_FOUND = "account_not_found"
_MAX_ID = 128  # the ledger's request_id column


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


def admit(
    session: Session, plans: PlanBook, *, account_id: str, request_id: str, now: datetime, ttl: timedelta
) -> Admission:
    """Reserve one request of `account_id`'s month for `request_id`, or refuse; commits.

    `session` should be a `db.write_session`, and the call wrapped in
    `db.retrying`: the whole transaction is safe to repeat.
    """
    if not account_id or not request_id:
        raise InvalidAdmission("account_id and request_id are required")
    if len(request_id) > _MAX_ID or len(account_id) > 64:
        raise InvalidAdmission("account_id or request_id is too long")
    month = month_key(now)
    account = session.get(Account, account_id)
    if account is None:
        session.rollback()
        return Admission(False, "", None, 0, ACCOUNT_NOT_FOUND, month)
    plan = plans.plan_of(account.plan)
    if account.disabled:
        session.rollback()
        return Admission(False, plan.name, plan.monthly_limit, 0, ACCOUNT_DISABLED, month)

    claimed = insert_if_absent(
        session,
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
        return _readmitted(session, plan, request_id)
    counts = counters.try_reserve(session, account_id, month, plan.monthly_limit)
    if counts is None:
        session.rollback()  # frees the request id too: a later Admit of it is asked afresh
        return Admission(False, plan.name, plan.monthly_limit, 0, PLAN_LIMIT_EXCEEDED, month)
    session.commit()
    return Admission(True, plan.name, plan.monthly_limit, _remaining(plan, counts), "", month)


def _readmitted(session: Session, plan: Plan, request_id: str) -> Admission:
    # The same request admitted before (a retried call): answer as then, in the
    # month it was admitted in, whatever has become of its reservation since.
    existing = session.get(Reservation, request_id)
    if existing is None:
        raise AssertionError("a conflicting reservation vanished inside the transaction")
    counts = counters.read(session, existing.account_id, existing.month)
    session.rollback()
    return Admission(True, plan.name, plan.monthly_limit, _remaining(plan, counts), "", existing.month)


def _remaining(plan: Plan, counts: counters.Counts) -> int:
    if plan.monthly_limit is None:
        return 0
    return max(plan.monthly_limit - counts.taken, 0)
