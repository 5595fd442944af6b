"""The reaper: frees the slots of reservations whose usage event never came, and
of leases whose gateway never returned them (leases.py).

A gateway that crashes between Admit and publishing its usage event leaves a
reservation behind. Once its `expires_at` has passed (the TTL is longer than the
longest request may run) the reaper moves it to `expired` and gives its slot
back (reserved −1, and the worst case it held of the budgets, on the account's
and its key's counters). Every replica runs one; the conditional UPDATE on the
reservation's state lets exactly one of them — or the late event's settlement —
free each slot. One transaction per reservation keeps locks short and ordered:
expiries are rare, a crashed gateway's handful at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from services.billing import counters, leases
from services.billing.counters import ACCOUNTS, KEYS
from services.billing.db import retrying, write_session
from services.billing.models import Lease, LeaseState, Reservation, ReservationState, utcnow
from services.billing.months import Clock, moment

__all__ = ["Reaper", "expire_due"]

log = logging.getLogger(__name__)

_BATCH = 500
_KEEP_ENDED = timedelta(days=1)  # an ended lease is kept this long, for an operator to read


def expire_due(engine: Engine, now_s: float) -> int:
    """Expire every reservation and lease past its `expires_at` at `now_s`; how
    many slots this call freed."""
    now = moment(now_s)
    freed = _expire_leases(engine, now)
    while True:
        with Session(engine) as session:
            due = session.exec(
                select(Reservation.request_id)
                .where(col(Reservation.state) == ReservationState.RESERVED, col(Reservation.expires_at) < now)
                .limit(_BATCH)
            ).all()
        for request_id in due:
            freed += retrying(partial(_expire, engine, request_id, now))
        if len(due) < _BATCH:
            return freed


def _expire_leases(engine: Engine, now: datetime) -> int:
    with Session(engine) as session:
        due = session.exec(
            select(Lease.lease_id)
            .where(col(Lease.state).in_((LeaseState.ACTIVE, LeaseState.RETURNED)), col(Lease.expires_at) < now)
            .limit(_BATCH)
        ).all()
    freed = 0
    for lease_id in due:
        freed += retrying(partial(_expire_lease, engine, lease_id, now))
    retrying(partial(_forget_leases, engine, now - _KEEP_ENDED))
    return freed


def _forget_leases(engine: Engine, before: datetime) -> None:
    with write_session(engine) as session:
        leases.forget_ended(session.connection(), before)
        session.commit()


def _expire_lease(engine: Engine, lease_id: str, now: datetime) -> int:
    with write_session(engine) as session:
        freed = leases.expire(session.connection(), lease_id, now)
        session.commit()
    if freed:
        log.warning(
            "a lease expired holding slots its gateway never returned; they are free again",
            extra={"lease_id": lease_id, "slots": freed},
        )
    return freed


def _expire(engine: Engine, request_id: str, now: datetime) -> int:
    with write_session(engine) as session:
        row = session.exec(
            update(Reservation)
            .where(
                col(Reservation.request_id) == request_id,
                col(Reservation.state) == ReservationState.RESERVED,
                col(Reservation.expires_at) < now,
            )
            .values(state=ReservationState.EXPIRED, settled_at=utcnow())
            .returning(
                col(Reservation.account_id),
                col(Reservation.month),
                col(Reservation.api_key_id),
                col(Reservation.reserved_usd),
            )
        ).first()
        if row is None:  # settled or expired meanwhile by someone else
            session.rollback()
            return 0
        account_id, month, key_id, held = row
        connection = session.connection()
        counters.adjust(connection, ACCOUNTS, account_id, month, reserved=-1, freed_usd=held)
        if key_id:
            counters.adjust(connection, KEYS, key_id, month, reserved=-1, freed_usd=held)
        session.commit()
        log.warning(
            "reservation expired without a usage event; its slot is free again",
            extra={"request_id": request_id, "account_id": account_id},
        )
        return 1


@dataclass
class Reaper:
    """Runs `expire_due` every `interval_s` until `stop()` or cancellation."""

    engine: Engine
    clock: Clock
    interval_s: float

    def __post_init__(self) -> None:
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Ask `run()` to return after the pass in hand."""
        self._stopping.set()

    async def run(self) -> None:
        """Reap until stopped; a failed pass is logged and tried again next interval."""
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(expire_due, self.engine, self.clock())
            except Exception:
                log.warning("expiring reservations failed; trying again later", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
