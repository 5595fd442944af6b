"""Settlement: a usage event becomes its ledger row and moves the month's counters.

What counts is SPEC.md §3's rule: a request counts once a provider answered
(`provider_answered`), in the month it was admitted. Per event, inside the
caller's transaction (the consumer settles a fetched batch in one):

1. The month: the reservation's, when the request was admitted; else (billing
   was fail-open, or the gateway never asked) the UTC month of `admitted_at`.
2. Insert the ledger row, `ON CONFLICT DO NOTHING`. If the request id is
   already there, the event was settled before (a redelivery, a duplicate
   publish, another replica): nothing else happens. This insert is the
   idempotency key of everything below, and on PostgreSQL a concurrent
   duplicate waits on it and then finds the row.
3. The reservation, if any, leaves `reserved` (a conditional UPDATE, so the
   reaper and settlement never both free one slot), on the account's month
   counter and, for a request that came with an API key, on the key's:
   - counted  → used +1, reserved −1, spent + its cost, its worst case freed;
   - released → reserved −1, its worst case freed.
   An `expired` reservation (the reaper freed its slot) or none at all: a
   request a provider answered still counts, used +1 and spent + its cost.
   Its cost is the actual cost, or the estimate where no usage was reported. A reservation expires only
   after STEPBLEND_RESERVATION_TTL_SECONDS, longer than any request runs, so a
   late event means the gateway's outbox held it through a NATS outage; its
   slot may meanwhile have been given to another request, and the month can end
   that many requests over its limit. Counting it is what SPEC.md asks; the
   window is small and bounded by the outage.

A request admitted under a lease (its event names the lease) has no reservation:
one a provider answered moves one of the lease's held slots to `used`, and the
worst case it took of the lease's USD (`lease_usd`) off `reserved_usd`, or,
once the lease has expired, counts without them; one no provider answered
changes no counter (its gateway gave the slot and the USD back to the lease).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from services.billing import counters, leases
from services.billing.counters import ACCOUNTS, KEYS
from services.billing.db import execute, insert_if_absent
from services.billing.models import LedgerEntry, Reservation, ReservationState, utcnow
from services.billing.money import from_column

__all__ = ["settle"]

_reservations = Reservation.__table__  # type: ignore[attr-defined]
_r = _reservations.c
_this_request = _r.request_id == bindparam("b_request_id")
_RESERVATION = select(_r.account_id, _r.month, _r.api_key_id, _r.reserved_usd).where(_this_request)
_LEAVE_RESERVED = (
    update(_reservations)
    .where(_this_request, _r.state == ReservationState.RESERVED)
    .values(state=bindparam("b_state"), settled_at=bindparam("b_settled_at"))
    .returning(_r.request_id)
)
_SET_STATE = (
    update(_reservations).where(_this_request).values(state=bindparam("b_state"), settled_at=bindparam("b_settled_at"))
)


def settle(connection: Connection, entry: dict[str, Any]) -> bool:
    """Settle the ledger row `entry` (`ledger.entry_from_event`); False, and no
    change, when its request was settled before.

    Runs in the caller's transaction and lets database errors through: the whole
    transaction is safe to repeat.
    """
    request_id = entry["request_id"]
    if entry.get("lease_id"):
        return _settle_leased(connection, entry)
    reservation = execute(connection, _RESERVATION, {"b_request_id": request_id}).fetchone()
    if reservation is not None:
        # The month, account and key the request was admitted under are the ones it
        # counts in, whatever the gateway's clock said in admitted_at.
        entry = {**entry, "month": reservation[1], "api_key_id": reservation[2]}
    if not insert_if_absent(connection, LedgerEntry, entry):
        return False

    counted = bool(entry["counted"])
    cost = _cost(entry) if counted else Decimal(0)
    if reservation is None:
        if counted:
            _move(connection, entry["account_id"], entry.get("api_key_id"), entry["month"], used=1, spent_usd=cost)
        return True
    account_id, month, key_id = reservation[0], reservation[1], reservation[2]
    held = from_column(connection, reservation[3]) or Decimal(0)
    if _leave_reserved(connection, request_id, counted):
        _move(connection, account_id, key_id, month, used=int(counted), reserved=-1, spent_usd=cost, freed_usd=held)
    elif counted:
        # Expired before its event came: the slot was freed, the request still counts.
        values = {"b_request_id": request_id, "b_state": ReservationState.COUNTED, "b_settled_at": utcnow()}
        execute(connection, _SET_STATE, values)
        _move(connection, account_id, key_id, month, used=1, spent_usd=cost)
    return True


def _settle_leased(connection: Connection, entry: dict[str, Any]) -> bool:
    """A request admitted under a lease: it counts in the lease's month, and one
    the provider answered takes one of the slots the lease holds (leases.py)."""
    held = leases.held_by(connection, entry["lease_id"])
    if held is not None and held.account_id == entry["account_id"]:
        entry = {**entry, "month": held.month, "api_key_id": held.api_key_id}
    else:  # no such lease of this account: settled as unreserved
        entry = {**entry, "lease_id": None, "lease_usd": None}
    if not insert_if_absent(connection, LedgerEntry, entry):
        return False
    if entry["counted"]:
        worst = entry.get("lease_usd") or Decimal(0)
        took = entry["lease_id"] is not None and leases.settle_one(connection, entry["lease_id"], utcnow(), worst)
        _move(
            connection,
            entry["account_id"],
            entry.get("api_key_id"),
            entry["month"],
            used=1,
            reserved=-1 if took else 0,
            spent_usd=_cost(entry),
            freed_usd=worst if took else Decimal(0),
        )
    return True


def _cost(entry: dict[str, Any]) -> Decimal:
    actual: Decimal | None = entry["actual_cost_usd"]
    return actual if actual is not None else entry["estimated_cost_usd"]


def _move(connection: Connection, account_id: str, key_id: str | None, month: str, **change: Any) -> None:
    """The same change to the account's month counter and, with one, the key's."""
    counters.adjust(connection, ACCOUNTS, account_id, month, **change)
    if key_id:
        counters.adjust(connection, KEYS, key_id, month, **change)


def _leave_reserved(connection: Connection, request_id: str, counted: bool) -> bool:
    state = ReservationState.COUNTED if counted else ReservationState.RELEASED
    values = {"b_request_id": request_id, "b_state": state, "b_settled_at": utcnow()}
    return execute(connection, _LEAVE_RESERVED, values).fetchone() is not None
