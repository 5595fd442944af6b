"""Leases: slots of an account's month (and of its API key's) handed to one gateway
replica in bulk, so that it admits most requests with no call (ARCHITECTURE.md,
"admission without a call per request").

A lease moves through these states (rows of `leases`), and what it holds on the
month counters' `reserved` with them:

    grant ──▶ active (holds = granted) ──return(admitted)──▶ returned (holds = admitted)
                 │                                               │ its last request settled
                 └──────expires_at passed (reaper)───────────────┴──▶ ended (holds = settled)

- `grant` takes `n` slots with the same conditional UPDATE as one Admit
  (`used + reserved + n <= limit`, on the account's counter and the key's), so
  the sum of every lease and reservation can never pass a limit. `n` is what the
  gateway asked for, cut to a quarter of what is left (one near the limit): two
  replicas never strand much of the month in each other's leases.
- A request admitted under a lease names it in its usage event. Settling one a
  provider answered moves a held slot to `used` (`settled + 1 WHERE settled <
  holds`, atomically on the row); one no provider answered changes nothing
  here: its gateway gave the slot back to the lease at once.
- The gateway returns a lease once nothing admitted from it is in flight (idle,
  its admission window over, SIGTERM, `accounts.v1.changed`), saying how many
  requests it admitted that counted; the rest of the slots are freed at once.
- A lease whose gateway crashed frees what it holds at `expires_at` (the
  admission window plus the reservation TTL, longer than any request runs), as a
  reservation does; a late event still counts its request (used + 1).

Where a budget bounds the account or its key, a lease also holds USD of it on the
counters' `reserved_usd` (`spent + reserved_usd + usd <= budget`, same UPDATEs),
several of the asking request's worst case, at most a quarter of what is left.
The gateway takes each request's worst case off it; the usage event carries that
amount (`lease_usd`), which settlement frees as it spends the actual cost. A
return keeps the worst cases of the requests that count (`admitted_usd`); expiry
frees what is not settled. A key with an `rpm` leases at most a quarter of what
its rolling minute has left (`admission.minute_taken` counts a lease's slots until
a minute after its window ended). When a quarter would not cover one worst case,
or one request of the minute, the answer is `per_request`: one Admit at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update

from services.billing import counters
from services.billing.admission import (
    KEY_LIMIT_EXCEEDED,
    PLAN_LIMIT_EXCEEDED,
    Holder,
    Refused,
    budget_left,
    check,
    holder_of,
    minute_taken,
    touch_key,
)
from services.billing.counters import ACCOUNTS, KEYS
from services.billing.db import execute, insert_if_absent
from services.billing.models import Lease, LeaseState
from services.billing.money import PLACES, Money, from_column
from services.billing.months import month_end, month_key
from services.billing.plans import PlanBook

__all__ = [
    "MAX_SLOTS",
    "LeaseGrant",
    "LeaseHeld",
    "expire",
    "forget_ended",
    "give_back",
    "grant",
    "held_by",
    "holding",
    "settle_one",
]

MAX_SLOTS = 1024  # the most one lease may hold
_SHARE = 4  # a lease takes at most 1/_SHARE of what is left of a limit
_TRIES = 8  # conditional reserves lost to other replicas before falling back to Admit

_leases = Lease.__table__  # type: ignore[attr-defined]
_l = _leases.c
_this = _l.lease_id == bindparam("b_lease_id")
_COLUMNS = ("account_id", "api_key_id", "month", "state", "granted", "holds", "settled", "expires_at")
_LEASE = select(*(_l[name] for name in _COLUMNS), _l.usd_holds, _l.usd_settled)  # rows as tuples, in this order
_BY_ID = _LEASE.where(_this)
_BY_ID_LOCKED = _BY_ID.with_for_update()
_USD = bindparam("b_usd", type_=Money())
_SETTLE_ONE = (
    update(_leases)
    .where(_this, _l.settled < _l.holds, _l.usd_settled + _USD <= _l.usd_holds)
    .values(settled=_l.settled + 1, usd_settled=_l.usd_settled + _USD)
    .returning(_l.state, _l.settled, _l.holds, _l.usd_settled, _l.usd_holds)
)
# (Two equalities, not IN: db.execute runs statements compiled once, with no expanding parameters.)
_LIVE = (_l.state == LeaseState.ACTIVE) | (_l.state == LeaseState.RETURNED)
_HOLDING_OF_ACCOUNT = select(func.coalesce(func.sum(_l.holds - _l.settled), 0)).where(
    _LIVE, _l.account_id == bindparam("b_owner"), _l.month == bindparam("b_month")
)
_HOLDING_OF_KEY = select(func.coalesce(func.sum(_l.holds - _l.settled), 0)).where(
    _LIVE, _l.api_key_id == bindparam("b_owner"), _l.month == bindparam("b_month")
)
_FORGET = delete(_leases).where(_l.state == LeaseState.ENDED, _l.ended_at < bindparam("b_before"))
_END = update(_leases).where(_this).values(state=LeaseState.ENDED, ended_at=bindparam("b_now"))
_CLOSE = (
    update(_leases)
    .where(_this, _l.state == bindparam("b_was"), _l.holds == bindparam("b_holds_was"))
    .values(
        state=bindparam("b_state"),
        holds=bindparam("b_holds"),
        usd_holds=bindparam("b_usd_holds", type_=Money()),
        ended_at=bindparam("b_now"),
    )
)
_ZERO = Decimal(0)
_CENTS = Decimal(1).scaleb(-PLACES)


@dataclass(frozen=True)
class LeaseGrant:
    """Billing's answer to one Lease."""

    granted: int  # slots; 0 when refused or per_request
    reason: str = ""  # why refused: admission's reasons
    per_request: bool = False  # limits a lease cannot carry: admit each request with Admit
    plan: str = ""
    limit: int | None = None
    remaining: int = 0  # slots of the month no one holds after this grant
    month: str = ""
    admit_until: datetime | None = None  # the gateway admits from it until then
    expires_at: datetime | None = None  # when billing frees what it still holds
    usd: Decimal | None = None  # USD of the budgets it holds; None: no budget bounds it


@dataclass(frozen=True)
class LeaseHeld:
    """What settlement needs of a lease: whose slots it holds, and of which month."""

    account_id: str
    api_key_id: str | None
    month: str


def grant(
    connection: Connection,
    plans: PlanBook,
    *,
    lease_id: str,
    account_id: str,
    api_key_id: str,
    gateway: str,
    want: int,
    now: datetime,
    window: timedelta,
    ttl: timedelta,
    worst: Decimal | None = None,
) -> LeaseGrant:
    """Take up to `want` slots of the month for `gateway` under `lease_id` (and, where
    a budget bounds it, USD for requests of up to `worst` each), or refuse; with no
    `worst` (a gateway older than this), `per_request` wherever a budget or an rpm
    applies. In the caller's transaction; a retry of the same `lease_id` answers as
    the first did and takes nothing more."""
    check(account_id, lease_id)
    month = month_key(now)
    holder = holder_of(connection, plans, account_id, api_key_id, now)
    if isinstance(holder, Refused):
        plan = holder.plan
        return LeaseGrant(0, holder.reason, plan=plan.name if plan else "", month=month)
    plan = holder.plan
    per_request = LeaseGrant(0, per_request=True, plan=plan.name, limit=plan.monthly_limit, month=month)
    key = holder.key
    if worst is None and (_has_budget(holder) or (key is not None and key.rpm is not None)):
        return per_request  # a gateway that names no worst case can carry neither
    earlier = execute(connection, _BY_ID, {"b_lease_id": lease_id}).fetchone()
    if earlier is not None:
        usd = from_column(connection, earlier[8]) if _has_budget(holder) else None
        return LeaseGrant(int(earlier[4]), plan=plan.name, limit=plan.monthly_limit, month=earlier[2], usd=usd)

    admit_until = min(now + window, month_end(month))
    for _ in range(_TRIES):
        free, reason = _free(connection, account_id, holder, month)
        if free is not None and free <= 0:
            return LeaseGrant(0, reason, plan=plan.name, limit=plan.monthly_limit, month=month)
        slots = max(1, min(want, MAX_SLOTS, free // _SHARE if free is not None else MAX_SLOTS))
        if key is not None and key.rpm is not None:
            minute_left = key.rpm - minute_taken(connection, key.key_id, now)[0]
            if minute_left // _SHARE < 1:
                return per_request  # near the rpm: Admit decides, with a retry-after
            slots = min(slots, minute_left // _SHARE)
        left, _owner = budget_left(connection, holder, account_id, month)
        usd = None if left is None else _usd_share(left, worst or _ZERO, slots)
        if left is not None and usd is None:
            return per_request  # near a budget: one Admit at a time decides exactly
        amount = usd or _ZERO
        counts = counters.try_reserve(
            connection,
            ACCOUNTS,
            account_id,
            month,
            limit=plan.monthly_limit,
            slots=slots,
            amount=amount,
            budget=holder.account_budget,
        )
        if counts is None:
            continue  # another replica took some meanwhile: look again
        if (
            key is not None
            and counters.try_reserve(
                connection, KEYS, key.key_id, month, limit=key.limit, slots=slots, amount=amount, budget=key.budget
            )
            is None
        ):
            counters.adjust(connection, ACCOUNTS, account_id, month, reserved=-slots, freed_usd=amount)
            continue
        row = {
            "lease_id": lease_id,
            "account_id": account_id,
            "api_key_id": key.key_id if key else None,
            "month": month,
            "gateway": gateway[:128],
            "state": LeaseState.ACTIVE,
            "granted": slots,
            "holds": slots,
            "settled": 0,
            "usd_holds": amount,
            "usd_settled": _ZERO,
            "created_at": now,
            "admit_until": admit_until,
            "expires_at": admit_until + ttl,
        }
        if not insert_if_absent(connection, Lease, row):
            # The same lease granted by a concurrent retry: undo this one's slots.
            _move(connection, account_id, key.key_id if key else None, month, reserved=-slots, freed_usd=amount)
            return per_request
        if key is not None:
            touch_key(connection, key.key_id, now)
        remaining = 0 if plan.monthly_limit is None else max(plan.monthly_limit - counts.taken, 0)
        return LeaseGrant(
            slots,
            plan=plan.name,
            limit=plan.monthly_limit,
            remaining=remaining,
            month=month,
            admit_until=admit_until,
            expires_at=admit_until + ttl,
            usd=usd,
        )
    # Lost every race for the last slots to other replicas: one Admit at a time settles it exactly.
    return per_request


def give_back(
    connection: Connection,
    *,
    lease_id: str,
    account_id: str,
    admitted: int,
    now: datetime,
    admitted_usd: Decimal | None = None,
) -> int:
    """End an active lease's admissions: it keeps `admitted` slots (its requests
    that count, settled or not) and `admitted_usd` of its USD (their worst cases;
    None: all of it, until they settle or it expires), and frees the rest.
    Returns how many slots it freed; 0 for a lease that is not this account's or
    no longer active."""
    row = _locked(connection, lease_id)
    if row is None or row[0] != account_id or row[3] != LeaseState.ACTIVE:
        return 0
    granted, settled = int(row[4]), int(row[6])
    keep = max(settled, min(max(admitted, 0), granted))
    usd_holds, usd_settled = _usd_of(connection, row)
    keep_usd = usd_holds if admitted_usd is None else max(usd_settled, min(admitted_usd, usd_holds))
    ended = keep == settled and keep_usd == usd_settled
    return _close(connection, lease_id, row, LeaseState.ENDED if ended else LeaseState.RETURNED, keep, keep_usd, now)


def held_by(connection: Connection, lease_id: str) -> LeaseHeld | None:
    """The lease's account, key and month; None for no such lease."""
    row = execute(connection, _BY_ID, {"b_lease_id": lease_id}).fetchone()
    return None if row is None else LeaseHeld(row[0], row[1], row[2])


def holding(connection: Connection, *, month: str, account_id: str = "", key_id: str = "") -> int:
    """The slots of `month` that the live leases of an account (or of an API key) hold
    on its counter's `reserved`: unused ones, and their requests not yet settled."""
    statement = _HOLDING_OF_KEY if key_id else _HOLDING_OF_ACCOUNT
    return int(execute(connection, statement, {"b_owner": key_id or account_id, "b_month": month}).fetchone()[0])


def forget_ended(connection: Connection, before: datetime) -> int:
    """Delete the leases that ended before `before` (the ledger keeps each request's lease id)."""
    return int(execute(connection, _FORGET, {"b_before": before}).rowcount)


def settle_one(connection: Connection, lease_id: str, now: datetime, usd: Decimal = _ZERO) -> bool:
    """Move one of the lease's held slots, and `usd` of its held USD (the worst case
    the gateway took for the request), to its request; False when it holds them
    no more (expired: the request counts without them)."""
    row = execute(connection, _SETTLE_ONE, {"b_lease_id": lease_id, "b_usd": usd}).fetchone()
    if row is None:
        return False
    state, settled, holds = row[0], int(row[1]), int(row[2])
    usd_settled, usd_holds = from_column(connection, row[3]), from_column(connection, row[4])
    if state == LeaseState.RETURNED and settled == holds and usd_settled == usd_holds:
        execute(connection, _END, {"b_lease_id": lease_id, "b_now": now})
    return True


def expire(connection: Connection, lease_id: str, now: datetime) -> int:
    """Free what a lease past its `expires_at` still holds; how many slots that was."""
    row = _locked(connection, lease_id)
    if row is None or row[3] == LeaseState.ENDED:
        return 0
    _usd_holds, usd_settled = _usd_of(connection, row)
    return _close(connection, lease_id, row, LeaseState.ENDED, int(row[6]), usd_settled, now)


def _locked(connection: Connection, lease_id: str) -> Any:
    """The lease's row, locked for the transaction (FOR UPDATE on PostgreSQL; SQLite's writer holds the file)."""
    statement = _BY_ID_LOCKED if connection.dialect.name == "postgresql" else _BY_ID
    return execute(connection, statement, {"b_lease_id": lease_id}).fetchone()


def _close(
    connection: Connection, lease_id: str, row: Any, state: str, keep: int, keep_usd: Decimal, now: datetime
) -> int:
    """Move the lease to `state` holding `keep` slots and `keep_usd`, and free the
    rest on its counters; how many slots were freed."""
    holds = int(row[5])
    usd_holds, _usd_settled = _usd_of(connection, row)
    values = {
        "b_lease_id": lease_id,
        "b_was": row[3],
        "b_holds_was": holds,
        "b_state": state,
        "b_holds": keep,
        "b_usd_holds": keep_usd,
        "b_now": now,
    }
    if execute(connection, _CLOSE, values).rowcount != 1:
        return 0
    _move(connection, row[0], row[1], row[2], reserved=keep - holds, freed_usd=usd_holds - keep_usd)
    return holds - keep


def _usd_of(connection: Connection, row: Any) -> tuple[Decimal, Decimal]:
    """A lease row's USD held and settled."""
    return from_column(connection, row[8]) or _ZERO, from_column(connection, row[9]) or _ZERO


def _has_budget(holder: Holder) -> bool:
    key = holder.key
    return holder.account_budget is not None or (key is not None and key.budget is not None)


def _usd_share(left: Decimal, worst: Decimal, slots: int) -> Decimal | None:
    """The USD a lease of `slots` requests of up to `worst` each takes of what the
    budgets leave (`left`): at most a quarter of it; None when that quarter would
    not hold even one such request."""
    share = (left / _SHARE).quantize(_CENTS, rounding=ROUND_DOWN)
    if share < worst or share <= 0:
        return None
    return min(share, worst * slots)


def _free(connection: Connection, account_id: str, holder: Holder, month: str) -> tuple[int | None, str]:
    """The fewest slots any limit has left (None: unlimited), and the refusal when it is none."""
    free: int | None = None
    reason = ""
    limit = holder.plan.monthly_limit
    if limit is not None:
        free = limit - counters.read(connection, ACCOUNTS, account_id, month).taken
        reason = PLAN_LIMIT_EXCEEDED
    key = holder.key
    if key is not None and key.limit is not None:
        left = key.limit - counters.read(connection, KEYS, key.key_id, month).taken
        if free is None or left < free:
            free, reason = left, KEY_LIMIT_EXCEEDED
    return free, reason


def _move(
    connection: Connection,
    account_id: str,
    key_id: str | None,
    month: str,
    *,
    reserved: int,
    freed_usd: Decimal = _ZERO,
) -> None:
    if reserved == 0 and freed_usd == 0:
        return
    counters.adjust(connection, ACCOUNTS, account_id, month, reserved=reserved, freed_usd=freed_usd)
    if key_id:
        counters.adjust(connection, KEYS, key_id, month, reserved=reserved, freed_usd=freed_usd)
