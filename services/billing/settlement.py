"""Settlement: a usage event becomes its ledger row and moves the month's counters.

What counts is SPEC.md §3's rule: a request counts once a provider answered
(`provider_answered`), in the month it was admitted. One transaction per event:

1. The month: the reservation's, when the request was admitted; else (billing
   was fail-open, or the gateway never asked) the UTC month of `admitted_at`.
2. Insert the ledger row, `ON CONFLICT DO NOTHING`. If the request id is
   already there, the event was settled before (a redelivery, a duplicate
   publish, another replica): nothing else happens. This insert is the
   idempotency key of everything below, and on PostgreSQL a concurrent
   duplicate waits on it and then finds the row.
3. The reservation, if any, leaves `reserved` (a conditional UPDATE, so the
   reaper and settlement never both free one slot):
   - counted  → used +1, reserved −1;
   - released → reserved −1.
   An `expired` reservation (the reaper freed its slot) or none at all: a
   request a provider answered still counts, used +1. A reservation expires only
   after STEPBLEND_RESERVATION_TTL_SECONDS, longer than any request runs, so a
   late event means the gateway's outbox held it through a NATS outage; its
   slot may meanwhile have been given to another request, and the month can end
   that many requests over its limit. Counting it is what SPEC.md asks; the
   window is small and bounded by the outage.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col

from services.billing import counters
from services.billing.db import insert_if_absent
from services.billing.ledger import entry_from_event
from services.billing.models import LedgerEntry, Reservation, ReservationState, utcnow
from services.common.events import UsageEvent

__all__ = ["settle"]


def settle(session: Session, event: UsageEvent) -> bool:
    """Settle `event` and commit; False (and no change) when it was settled before.

    Raises `ledger.InvalidEvent` for an event that can never be written, and lets
    database errors through: the whole transaction is safe to repeat.
    `session` should be a `db.write_session`.
    """
    entry = entry_from_event(event)
    reservation = session.get(Reservation, entry.request_id)
    if reservation is not None:
        # The month and account the request was admitted under are the ones it
        # counts in, whatever the gateway's clock said in admitted_at.
        entry.month = reservation.month
    if not insert_if_absent(session, LedgerEntry, entry.model_dump()):
        session.rollback()
        return False

    counted = event.provider_answered
    if reservation is None:
        if counted:
            counters.adjust(session, entry.account_id, entry.month, used=1)
    elif _leave_reserved(session, entry.request_id, counted):
        counters.adjust(session, reservation.account_id, reservation.month, used=int(counted), reserved=-1)
    elif counted:
        # Expired before its event came: the slot was freed, the request still counts.
        _set_state(session, entry.request_id, ReservationState.COUNTED)
        counters.adjust(session, reservation.account_id, reservation.month, used=1)
    session.commit()
    return True


def _leave_reserved(session: Session, request_id: str, counted: bool) -> bool:
    state = ReservationState.COUNTED if counted else ReservationState.RELEASED
    left = session.exec(
        update(Reservation)
        .where(col(Reservation.request_id) == request_id, col(Reservation.state) == ReservationState.RESERVED)
        .values(state=state, settled_at=utcnow())
        .returning(col(Reservation.request_id))
    ).first()
    return left is not None


def _set_state(session: Session, request_id: str, state: str) -> None:
    session.exec(
        update(Reservation).where(col(Reservation.request_id) == request_id).values(state=state, settled_at=utcnow())
    )
