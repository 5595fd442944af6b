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

A lease carries no money: an account with a budget, or a key with a budget or
an `rpm`, is told to admit each request with Admit (`per_request`), which
reserves each request's worst case exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update

from services.billing import counters
from services.billing.admission import (
    KEY_LIMIT_EXCEEDED,
    PLAN_LIMIT_EXCEEDED,
    Holder,
    Refused,
    check,
    holder_of,
    touch_key,
)
from services.billing.counters import ACCOUNTS, KEYS
from services.billing.db import execute, insert_if_absent
from services.billing.models import Lease, LeaseState
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
_LEASE = select(_l.account_id, _l.api_key_id, _l.month, _l.state, _l.granted, _l.holds, _l.settled, _l.expires_at)
_BY_ID = _LEASE.where(_this)
_BY_ID_LOCKED = _BY_ID.with_for_update()
_SETTLE_ONE = (
    update(_leases)
    .where(_this, _l.settled < _l.holds)
    .values(settled=_l.settled + 1)
    .returning(_l.state, _l.settled, _l.holds)
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
    .values(state=bindparam("b_state"), holds=bindparam("b_holds"), ended_at=bindparam("b_now"))
)


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
) -> LeaseGrant:
    """Take up to `want` slots of the month for `gateway` under `lease_id`, or refuse.

    Runs in the caller's transaction; a second call with the same `lease_id` (a
    retry) answers as the first did and takes nothing more.
    """
    check(account_id, lease_id)
    month = month_key(now)
    holder = holder_of(connection, plans, account_id, api_key_id, now)
    if isinstance(holder, Refused):
        plan = holder.plan
        return LeaseGrant(0, holder.reason, plan=plan.name if plan else "", month=month)
    plan = holder.plan
    if _needs_money(holder):
        return LeaseGrant(0, per_request=True, plan=plan.name, limit=plan.monthly_limit, month=month)
    earlier = execute(connection, _BY_ID, {"b_lease_id": lease_id}).fetchone()
    if earlier is not None:
        return LeaseGrant(int(earlier[4]), plan=plan.name, limit=plan.monthly_limit, month=earlier[2])

    key = holder.key
    admit_until = min(now + window, month_end(month))
    for _ in range(_TRIES):
        free, reason = _free(connection, account_id, holder, month)
        if free is not None and free <= 0:
            return LeaseGrant(0, reason, plan=plan.name, limit=plan.monthly_limit, month=month)
        slots = max(1, min(want, MAX_SLOTS, free // _SHARE if free is not None else MAX_SLOTS))
        counts = counters.try_reserve(connection, ACCOUNTS, account_id, month, limit=plan.monthly_limit, slots=slots)
        if counts is None:
            continue  # another replica took some meanwhile: look again
        if (
            key is not None
            and counters.try_reserve(connection, KEYS, key.key_id, month, limit=key.limit, slots=slots) is None
        ):
            counters.adjust(connection, ACCOUNTS, account_id, month, reserved=-slots)
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
            "created_at": now,
            "expires_at": admit_until + ttl,
        }
        if not insert_if_absent(connection, Lease, row):
            # The same lease granted by a concurrent retry: undo this one's slots.
            _move(connection, account_id, key.key_id if key else None, month, reserved=-slots)
            return LeaseGrant(0, per_request=True, plan=plan.name, limit=plan.monthly_limit, month=month)
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
        )
    # Lost every race for the last slots to other replicas: one Admit at a time settles it exactly.
    return LeaseGrant(0, per_request=True, plan=plan.name, limit=plan.monthly_limit, month=month)


def give_back(connection: Connection, *, lease_id: str, account_id: str, admitted: int, now: datetime) -> int:
    """End an active lease's admissions: it keeps `admitted` slots (its requests
    that count, settled or not) and frees the rest. Returns how many it freed; 0
    for a lease that is not this account's or no longer active."""
    row = _locked(connection, lease_id)
    if row is None or row[0] != account_id or row[3] != LeaseState.ACTIVE:
        return 0
    granted, settled = int(row[4]), int(row[6])
    keep = max(settled, min(max(admitted, 0), granted))
    return _close(connection, lease_id, row, LeaseState.ENDED if keep == settled else LeaseState.RETURNED, keep, now)


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


def settle_one(connection: Connection, lease_id: str, now: datetime) -> bool:
    """Move one of the lease's held slots to its request; False when it holds none
    for it any more (expired: the request counts without one)."""
    row = execute(connection, _SETTLE_ONE, {"b_lease_id": lease_id}).fetchone()
    if row is None:
        return False
    state, settled, holds = row
    if state == LeaseState.RETURNED and int(settled) == int(holds):
        execute(connection, _END, {"b_lease_id": lease_id, "b_now": now})
    return True


def expire(connection: Connection, lease_id: str, now: datetime) -> int:
    """Free what a lease past its `expires_at` still holds; how many slots that was."""
    row = _locked(connection, lease_id)
    if row is None or row[3] == LeaseState.ENDED:
        return 0
    return _close(connection, lease_id, row, LeaseState.ENDED, int(row[6]), now)


def _locked(connection: Connection, lease_id: str) -> Any:
    """The lease's row, locked for the transaction (FOR UPDATE on PostgreSQL; SQLite's writer holds the file)."""
    statement = _BY_ID_LOCKED if connection.dialect.name == "postgresql" else _BY_ID
    return execute(connection, statement, {"b_lease_id": lease_id}).fetchone()


def _close(connection: Connection, lease_id: str, row: Any, state: str, keep: int, now: datetime) -> int:
    """Move the lease to `state` holding `keep` slots, and free the rest on its counters; how many were freed."""
    holds = int(row[5])
    values = {
        "b_lease_id": lease_id,
        "b_was": row[3],
        "b_holds_was": holds,
        "b_state": state,
        "b_holds": keep,
        "b_now": now,
    }
    if execute(connection, _CLOSE, values).rowcount != 1:
        return 0
    _move(connection, row[0], row[1], row[2], reserved=keep - holds)
    return holds - keep


def _needs_money(holder: Holder) -> bool:
    key = holder.key
    return holder.account_budget is not None or (key is not None and (key.budget is not None or key.rpm is not None))


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


def _move(connection: Connection, account_id: str, key_id: str | None, month: str, *, reserved: int) -> None:
    if reserved == 0:
        return
    counters.adjust(connection, ACCOUNTS, account_id, month, reserved=reserved)
    if key_id:
        counters.adjust(connection, KEYS, key_id, month, reserved=reserved)
