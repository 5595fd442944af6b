"""Admission: reserve one request of the account's month (and of its API key's),
and its worst-case cost of their budgets, exactly, across replicas.

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
reservation again (and undoes the account's counter when the key's refused), so
a later Admit of the same request id is asked afresh.

Budgets (SPEC.md §7) ride on the same UPDATEs: the reservation holds `amount`,
the largest worst-case cost among the routed candidates that fit what is left of
the account's and the key's budgets, under the condition `spent + reserved_usd +
amount <= budget`; settlement swaps it for the actual cost. Candidates whose
worst case does not fit are reported (`fits`), and the gateway never tries them,
so no request can spend more than it reserved. With no budget the amount is
still held, so a budget set mid-month bounds the requests already in flight.

A key's `rpm` counts its reservations of the last 60 s, and the slots its leases
hold that admitted (or may still admit) requests within the last 60 s: a lease's
count until a minute after its admission window ended (`minute_taken`). The
key's row is locked first (FOR UPDATE on PostgreSQL; SQLite's writer holds the
database), so two replicas cannot both see room for the last request of the minute.

Unlimited plans (enterprise) reserve the same way without the condition, so
that settlement is the same for every plan and the month's count is known.

The month is the UTC month of billing's clock at admission; the reservation
keeps it, and settlement counts the request in that month whenever its event
arrives (SPEC.md §3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, bindparam, delete, func, select, update

from services.billing import counters
from services.billing.counters import ACCOUNTS, KEYS
from services.billing.db import execute, insert_if_absent
from services.billing.models import Account, ApiKey, Lease, Reservation, ReservationState
from services.billing.money import from_column
from services.billing.months import as_utc, month_key
from services.billing.plans import Plan, PlanBook

__all__ = [
    "ACCOUNT_DISABLED",
    "ACCOUNT_NOT_FOUND",
    "BUDGET_EXCEEDED",
    "KEY_LIMIT_EXCEEDED",
    "KEY_REVOKED",
    "PLAN_LIMIT_EXCEEDED",
    "RATE_LIMIT_EXCEEDED",
    "Admission",
    "Holder",
    "InvalidAdmission",
    "Key",
    "Refused",
    "admit",
    "budget_left",
    "check",
    "holder_of",
    "minute_taken",
    "touch_key",
]

PLAN_LIMIT_EXCEEDED = "plan_limit_exceeded"
ACCOUNT_DISABLED = "account_disabled"
ACCOUNT_NOT_FOUND = "account_not_found"
KEY_REVOKED = "key_revoked"  # unknown, revoked or expired, or another account's
KEY_LIMIT_EXCEEDED = "key_limit_exceeded"
BUDGET_EXCEEDED = "budget_exceeded"
RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
_MAX_ID = 128  # the ledger's request_id column
_MINUTE = timedelta(seconds=60)
_LAST_USED_EVERY = timedelta(seconds=60)  # how stale a key's last_used may get

_accounts = Account.__table__.c  # type: ignore[attr-defined]
_keys = ApiKey.__table__  # type: ignore[attr-defined]
_reservations = Reservation.__table__  # type: ignore[attr-defined]
_ACCOUNT = select(_accounts.plan, _accounts.disabled, _accounts.monthly_budget_usd).where(
    _accounts.account_id == bindparam("account_id")
)
_KEY_COLUMNS = (
    _keys.c.account_id,
    _keys.c.revoked_at,
    _keys.c.expires_at,
    _keys.c.monthly_request_limit,
    _keys.c.monthly_budget_usd,
    _keys.c.rpm,
)
_KEY = select(*_KEY_COLUMNS).where(_keys.c.key_id == bindparam("key_id"))
_KEY_LOCKED = _KEY.with_for_update()
_TOUCH_KEY = (
    update(_keys)
    .where(
        _keys.c.key_id == bindparam("b_key_id"),
        (_keys.c.last_used_at.is_(None)) | (_keys.c.last_used_at < bindparam("b_stale")),
    )
    .values(last_used_at=bindparam("b_now"))
)
_LAST_MINUTE = select(func.count(), func.min(_reservations.c.created_at)).where(
    _reservations.c.api_key_id == bindparam("key_id"), _reservations.c.created_at > bindparam("since")
)
_leases = Lease.__table__.c  # type: ignore[attr-defined]
_LEASED_LAST_MINUTE = select(func.coalesce(func.sum(_leases.holds), 0), func.min(_leases.admit_until)).where(
    _leases.api_key_id == bindparam("key_id"), _leases.admit_until > bindparam("since")
)
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
    # Per candidate worst case asked about: whether it fits the budgets.
    fits: tuple[bool, ...] = ()
    retry_after_s: int = 0  # for rate_limit_exceeded
    budget_owner: str = ""  # for budget_exceeded: "key" or "account"
    budget_left_usd: Decimal | None = None  # for budget_exceeded


@dataclass(frozen=True)
class Key:
    """An API key's limits, as admission reads them (its row locked)."""

    key_id: str
    limit: int | None
    budget: Decimal | None
    rpm: int | None


@dataclass(frozen=True)
class Holder:
    """Whose slots a request (or a lease) takes: the account's plan and budget, and its key's limits."""

    plan: Plan
    account_budget: Decimal | None
    key: Key | None


@dataclass(frozen=True)
class Refused:
    """Why no request of this account (or key) may be admitted, and its plan where known."""

    reason: str
    plan: Plan | None = None


def holder_of(
    connection: Connection, plans: PlanBook, account_id: str, api_key_id: str, now: datetime
) -> Holder | Refused:
    """The account's plan and budget and the key's limits (the key's row locked for
    the transaction), or why it may not be admitted at all."""
    account = execute(connection, _ACCOUNT, {"account_id": account_id}).fetchone()
    if account is None:
        return Refused(ACCOUNT_NOT_FOUND)
    plan = plans.plan_of(account[0])
    if account[1]:
        return Refused(ACCOUNT_DISABLED, plan)
    key = _key(connection, account_id, api_key_id, now) if api_key_id else None
    if api_key_id and key is None:
        return Refused(KEY_REVOKED, plan)
    return Holder(plan, from_column(connection, account[2]), key)


def check(account_id: str, request_id: str) -> None:
    """Raise InvalidAdmission for ids no Admit may carry (before any database work)."""
    if not account_id or not request_id:
        raise InvalidAdmission("account_id and request_id are required")
    if len(request_id) > _MAX_ID or len(account_id) > 64:
        raise InvalidAdmission("account_id or request_id is too long")


def admit(
    connection: Connection,
    plans: PlanBook,
    *,
    account_id: str,
    request_id: str,
    now: datetime,
    ttl: timedelta,
    api_key_id: str = "",
    worst_costs: tuple[Decimal, ...] = (),
) -> Admission:
    """Reserve one request of `account_id`'s month (and of `api_key_id`'s) for
    `request_id`, with the largest of `worst_costs` that fits the budgets, or refuse.

    Runs in the caller's transaction (a `Writer` unit of work, or one begun on a
    `db.write_options` engine), which commits it: the whole of it is safe to repeat.
    """
    check(account_id, request_id)
    month = month_key(now)
    holder = holder_of(connection, plans, account_id, api_key_id, now)
    if isinstance(holder, Refused):
        plan_name, limit = (holder.plan.name, holder.plan.monthly_limit) if holder.plan else ("", None)
        return Admission(False, plan_name, limit, 0, holder.reason, month)
    plan, key, account_budget = holder.plan, holder.key, holder.account_budget
    refuse = _Refusal(plan, month)

    # What is left of each budget, and which candidates' worst cases fit it.
    left, owner = budget_left(connection, holder, account_id, month)
    fits = tuple(left is None or cost <= left for cost in worst_costs)
    amount = max((cost for cost, fit in zip(worst_costs, fits, strict=True) if fit), default=Decimal(0))

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
            "api_key_id": key.key_id if key else None,
            "reserved_usd": amount,
        },
    )
    if not claimed:
        return _readmitted(connection, plan, request_id, len(worst_costs))
    if key is not None and key.rpm is not None:
        wait = _minute_full(connection, key, now)
        if wait:
            execute(connection, _UNRESERVE, {"request_id": request_id})
            return refuse(RATE_LIMIT_EXCEEDED, retry_after_s=wait)
    if worst_costs and not any(fits):
        execute(connection, _UNRESERVE, {"request_id": request_id})
        return refuse(BUDGET_EXCEEDED, owner=owner, left=left)

    counts = counters.try_reserve(
        connection, ACCOUNTS, account_id, month, limit=plan.monthly_limit, amount=amount, budget=account_budget
    )
    if counts is None:
        execute(connection, _UNRESERVE, {"request_id": request_id})
        taken = counters.read(connection, ACCOUNTS, account_id, month)
        if plan.monthly_limit is not None and taken.taken >= plan.monthly_limit:
            return refuse(PLAN_LIMIT_EXCEEDED)
        return refuse(BUDGET_EXCEEDED, owner="account", left=_left(account_budget, taken))
    if key is not None:
        keyed = counters.try_reserve(
            connection, KEYS, key.key_id, month, limit=key.limit, amount=amount, budget=key.budget
        )
        if keyed is None:
            counters.adjust(connection, ACCOUNTS, account_id, month, reserved=-1, freed_usd=amount)
            execute(connection, _UNRESERVE, {"request_id": request_id})
            taken = counters.read(connection, KEYS, key.key_id, month)
            if key.limit is not None and taken.taken >= key.limit:
                return refuse(KEY_LIMIT_EXCEEDED)
            return refuse(BUDGET_EXCEEDED, owner="key", left=_left(key.budget, taken))
        touch_key(connection, key.key_id, now)
    return Admission(True, plan.name, plan.monthly_limit, _remaining(plan, counts), "", month, fits)


@dataclass(frozen=True)
class _Refusal:
    plan: Plan
    month: str

    def __call__(
        self, reason: str, *, retry_after_s: int = 0, owner: str = "", left: Decimal | None = None
    ) -> Admission:
        plan = self.plan
        return Admission(False, plan.name, plan.monthly_limit, 0, reason, self.month, (), retry_after_s, owner, left)


def _key(connection: Connection, account_id: str, key_id: str, now: datetime) -> Key | None:
    """The key, locked for this transaction; None unless it is this account's, live and unrevoked."""
    statement = _KEY_LOCKED if connection.dialect.name == "postgresql" else _KEY
    row = execute(connection, statement, {"key_id": key_id}).fetchone()
    if row is None or row[0] != account_id or row[1] is not None:
        return None
    expires_at = _moment(connection, row[2])
    if expires_at is not None and expires_at <= now:
        return None
    limit, budget, rpm = row[3], from_column(connection, row[4]), row[5]
    return Key(key_id, None if limit is None else int(limit), budget, None if rpm is None else int(rpm))


def touch_key(connection: Connection, key_id: str, now: datetime) -> None:
    """Mark the key used at `now`, unless it was marked less than a minute ago."""
    execute(connection, _TOUCH_KEY, {"b_key_id": key_id, "b_stale": now - _LAST_USED_EVERY, "b_now": now})


def _minute_full(connection: Connection, key: Key, now: datetime) -> int:
    """0 when the key's rolling minute has room for this request (already reserved,
    so it counts itself), else the seconds until it has."""
    assert key.rpm is not None
    count, frees_at = minute_taken(connection, key.key_id, now)
    if count <= key.rpm:
        return 0
    return max(1, math.ceil(((frees_at or now + _MINUTE) - now).total_seconds()))


def minute_taken(connection: Connection, key_id: str, now: datetime) -> tuple[int, datetime | None]:
    """The requests of the key's rolling minute at `now` (its reservations of the
    last 60 s, and its leases' slots, each counted until a minute after its lease's
    admission window ended), and when the first of them leaves the minute."""
    since = now - _MINUTE
    count, oldest = execute(connection, _LAST_MINUTE, {"key_id": key_id, "since": since}).fetchone()
    leased, first_window_end = execute(connection, _LEASED_LAST_MINUTE, {"key_id": key_id, "since": since}).fetchone()
    leaving = [
        moment + _MINUTE for moment in (_moment(connection, oldest), _moment(connection, first_window_end)) if moment
    ]
    return int(count) + int(leased), min(leaving, default=None)


def budget_left(connection: Connection, holder: Holder, account_id: str, month: str) -> tuple[Decimal | None, str]:
    """The least that the account's and its key's budgets leave of `month` (spent and
    reserved taken off), and whose budget that is ("account" or "key"); None when
    neither has a budget. (The counts are read only where there is a budget.)"""
    lefts = []
    if holder.account_budget is not None:
        lefts.append((holder.account_budget, counters.read(connection, ACCOUNTS, account_id, month), "account"))
    key = holder.key
    if key is not None and key.budget is not None:
        lefts.append((key.budget, counters.read(connection, KEYS, key.key_id, month), "key"))
    return _least_left(lefts)


def _least_left(lefts: list[tuple[Decimal, counters.Counts, str]]) -> tuple[Decimal | None, str]:
    """The smaller of what the budgets leave, and whose it is; None when there is no budget."""
    best: tuple[Decimal | None, str] = (None, "")
    for budget, counts, owner in lefts:
        left = _left(budget, counts)
        if left is not None and (best[0] is None or left < best[0]):
            best = (left, owner)
    return best


def _left(budget: Decimal | None, counts: counters.Counts) -> Decimal | None:
    return None if budget is None else max(budget - counts.committed_usd, Decimal(0))


def _moment(connection: Connection, value: object) -> datetime | None:
    """A timestamp column's value as `execute` hands it back (text on SQLite), in UTC."""
    if value is None:
        return None
    column_type = _reservations.c.created_at.type.dialect_impl(connection.dialect)
    processor = column_type.result_processor(connection.dialect, None)
    result = processor(value) if processor is not None else value
    assert isinstance(result, datetime)
    return as_utc(result)


def _readmitted(connection: Connection, plan: Plan, request_id: str, candidates: int) -> Admission:
    # The same request admitted before (a retried call): answer as then, in the
    # month it was admitted in, whatever has become of its reservation since.
    existing = execute(connection, _RESERVATION, {"request_id": request_id}).fetchone()
    if existing is None:
        raise AssertionError("a conflicting reservation vanished inside the transaction")
    account_id, month = existing
    counts = counters.read(connection, ACCOUNTS, account_id, month)
    remaining = _remaining(plan, counts)
    return Admission(True, plan.name, plan.monthly_limit, remaining, "", month, (True,) * candidates)


def _remaining(plan: Plan, counts: counters.Counts) -> int:
    if plan.monthly_limit is None:
        return 0
    return max(plan.monthly_limit - counts.taken, 0)
