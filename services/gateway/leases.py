"""Admission from leases: slots of an account's month that billing hands this
replica in bulk (billing's leases.py), so that most requests are admitted here,
with no call (ARCHITECTURE.md, "admission without a call per request").

Per account (and API key) this replica admits from one lease at a time, and holds
at most one more, renewed ahead:

- A request takes one of its unused slots, synchronously. A request that finds
  none asks billing for the next lease; the others that find none meanwhile
  wait for that one answer (one call, however many wait), then take from it.
- Renewal before it runs dry: once a full-sized lease is down to a quarter of its
  slots, the next one is asked for in the background and held ready (at most one
  ready lease per account or key); the request that finds the current one dry
  switches to it with no call. A lease billing cut short (near the limit) is not
  renewed ahead: the remaining slots stay where any replica can take them.
- The size asked for adapts: doubled when a lease ran dry (or low) within its
  window, halved when one closed with most of it unused. Billing cuts it near a
  limit, down to one request: there this is Admit's behaviour again, exactly.
- A request that ends: one a provider answered is `admitted` (billing settles it
  from its usage event, which names the lease); one no provider answered gives
  its slot back to the lease at once, if the lease is still open.
- A lease closes when its window ends, when it has been idle `idle_s`, on
  `accounts.v1.changed` for its account, or at shutdown; once nothing admitted
  from it is in flight it is returned, and billing frees its unused slots.
- Where a budget bounds the account or its key, a lease also holds USD of it.
  A request takes the largest worst case among its candidates that the lease's
  USD still covers (the candidates it does not cover are dropped, as Admit's
  `fits` drops them), and its usage event names that amount; one no provider
  answered gives it back. A lease whose USD covers none of a request's
  candidates is dry for it, as one with no slots is.
- Billing answers `per_request` near a limit a lease cannot cut finer (a budget
  or a key's minute nearly spent): those requests are Admitted one by one (for
  `_PER_REQUEST_S`, or until the account changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from stepblend.v1 import billing_pb2, billing_pb2_grpc

from .rpc import Metadata, ServiceFailed, call

__all__ = ["Lease", "Leases", "Taken"]

log = logging.getLogger(__name__)

_TIMEOUT_S = 3.0
_FIRST_WANT = 4
_MAX_WANT = 1024
_PER_REQUEST_S = 10.0  # how long a per_request answer is believed
_FORGET_S = 60.0  # an owner idle this long is forgotten
_ZERO = Decimal(0)
_PLACE = Decimal(1).scaleb(-12)  # billing keeps USD to 12 places (services/billing/money.py)


@dataclass
class Lease:
    """One lease this replica admits from."""

    lease_id: str
    account_id: str
    granted: int
    admit_until: float  # Unix seconds
    limit: int  # 0: unlimited
    remaining: int  # slots of the month no one held when it was granted
    unused: int
    full: bool = True  # billing granted all that was asked for
    in_flight: int = 0
    admitted: int = 0  # requests from it that a provider answered
    open: bool = True
    returned: bool = False
    used_at: float = field(default_factory=time.monotonic)
    # Where a budget bounds it: the USD it was granted, what is still free of it,
    # and the worst cases its requests in flight and its answered ones took.
    usd_granted: Decimal = _ZERO
    usd_left: Decimal | None = None  # None: it holds no money (no budget)
    usd_in_flight: Decimal = _ZERO
    usd_admitted: Decimal = _ZERO

    def headers(self) -> dict[str, str]:
        """OpenAI's names for the plan's monthly request budget, as this replica knows it."""
        if not self.limit:
            return {}
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining + self.unused),
        }


@dataclass(frozen=True)
class Taken:
    """One request's share of a lease: a slot, and the worst case it took of the
    lease's USD (None when the lease holds none); `fits` says, per candidate worst
    case it was asked about, whether that USD covers it (empty: all do)."""

    lease: Lease
    usd: Decimal | None = None
    fits: tuple[bool, ...] = ()


@dataclass
class _Owner:
    """An account's (or API key's) leasing at this replica."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    lease: Lease | None = None
    ready: Lease | None = None  # renewed ahead: the next one, untouched yet
    renewing: bool = False
    want: int = _FIRST_WANT
    per_request_until: float = 0.0  # monotonic
    seen: float = field(default_factory=time.monotonic)


class Leases:
    """This replica's leases, by account and API key."""

    def __init__(
        self,
        billing: billing_pb2_grpc.BillingStub,
        metadata: Metadata,
        *,
        gateway: str,
        idle_s: float = 2.0,
    ) -> None:
        self._billing = billing
        self._metadata = metadata
        self._gateway = gateway
        self._idle_s = idle_s
        self._owners: dict[tuple[str, str], _Owner] = {}
        self._held: dict[str, Lease] = {}  # every lease not yet returned, by id
        self._returning: set[asyncio.Task[None]] = set()

    async def take(
        self, account_id: str, api_key_id: str, worst: tuple[str, ...] = ()
    ) -> Taken | billing_pb2.LeaseResponse | None:
        """This request's slot of a lease (and, where a budget bounds it, the largest
        of `worst`, its candidates' worst cases in decimal USD, that the lease's USD
        covers: read only then, off the path of a lease that holds no money);
        billing's refusal; or None: admit this request with Admit. Raises
        ServiceFailed when billing is unreachable."""
        owner = self._owners.get((account_id, api_key_id))
        if owner is None:
            owner = self._owners[account_id, api_key_id] = _Owner()
        owner.seen = time.monotonic()
        taken = _take(owner.lease, worst) or self._switch(owner, worst)
        if taken is not None:
            self._renew_if_low(owner, taken.lease, account_id, api_key_id, worst)
            return taken
        async with owner.lock:
            # The next lease may have come while this waited.
            taken = _take(owner.lease, worst) or self._switch(owner, worst)
            if taken is not None:
                return taken
            if owner.per_request_until > time.monotonic():
                return None
            return await self._next(owner, account_id, api_key_id, worst)

    def done(self, taken: Taken, answered: bool) -> None:
        """A request admitted from `taken.lease` ended; `answered`: a provider answered it (it counts)."""
        lease, usd = taken.lease, taken.usd or _ZERO
        lease.in_flight -= 1
        lease.usd_in_flight -= usd
        if answered:
            lease.admitted += 1
            lease.usd_admitted += usd
        elif lease.open:
            lease.unused += 1  # it did not count: the next request may have its slot
            if lease.usd_left is not None:
                lease.usd_left += usd
        if not lease.open and lease.in_flight == 0:
            self._give_back(lease)

    def close_account(self, account_id: str) -> None:
        """The account changed (plan, status, keys, budget): end its leases, ask afresh."""
        for (owner_account, _), owner in self._owners.items():
            if owner_account == account_id:
                owner.per_request_until = 0.0
                self._close(owner)

    def tick(self) -> None:
        """Close leases whose window ended or that sat idle; forget long-idle owners."""
        now, wall = time.monotonic(), time.time()
        for key, owner in list(self._owners.items()):
            lease = owner.lease or owner.ready
            if lease is not None and lease.open and now - lease.used_at >= self._idle_s:
                self._close(owner)
            elif owner.lease is not None and owner.lease.open and wall >= owner.lease.admit_until:
                self._close(owner, ready=False)  # the ready one, if any, takes over
            if owner.ready is not None and wall >= owner.ready.admit_until:
                self._close_ready(owner)
            if owner.lease is None and not owner.lock.locked() and now - owner.seen >= _FORGET_S:
                del self._owners[key]

    async def run(self, interval_s: float = 0.5) -> None:
        """`tick` every `interval_s`, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.tick()

    async def close_all(self, timeout_s: float) -> None:
        """At shutdown: return every lease, counting what is still in flight as admitted."""
        for owner in self._owners.values():
            owner.lease = owner.ready = None
        for lease in list(self._held.values()):
            lease.open = False
            lease.admitted += lease.in_flight
            lease.usd_admitted += lease.usd_in_flight
            lease.in_flight = 0
            lease.usd_in_flight = _ZERO
            self._give_back(lease)
        if self._returning:
            await asyncio.wait(self._returning, timeout=timeout_s)

    async def _next(
        self, owner: _Owner, account_id: str, api_key_id: str, worst: tuple[str, ...]
    ) -> Taken | billing_pb2.LeaseResponse | None:
        previous = owner.lease
        if previous is not None:
            dry = previous.unused == 0 or previous.usd_left is not None  # of slots, or of money for this request
            if dry and time.time() < previous.admit_until:
                owner.want = min(owner.want * 2, _MAX_WANT)  # ran dry within its window
            self._close(owner)
        answer = await self._ask(owner, account_id, api_key_id, worst)
        if not isinstance(answer, Lease):
            return answer
        owner.lease = answer
        taken = _take(answer, worst)
        if taken is None:  # its money covers none of this request's candidates: Admit decides
            self._close(owner)
        return taken

    def _switch(self, owner: _Owner, worst: tuple[str, ...]) -> Taken | None:
        """The ready lease, now the one admitted from (the current one is dry or ended)."""
        ready = owner.ready
        if ready is None or time.time() >= ready.admit_until:
            return None
        owner.ready = None
        self._close(owner)
        owner.lease = ready
        return _take(ready, worst)

    def _renew_if_low(
        self, owner: _Owner, lease: Lease, account_id: str, api_key_id: str, worst: tuple[str, ...]
    ) -> None:
        low = lease.unused <= lease.granted // 4 or (
            lease.usd_left is not None and lease.usd_left <= lease.usd_granted / 4
        )
        if (
            lease.full
            and low
            and owner.ready is None
            and not owner.renewing
            and owner.per_request_until <= time.monotonic()
        ):
            owner.renewing = True
            task = asyncio.ensure_future(self._renew(owner, lease, account_id, api_key_id, worst))
            self._returning.add(task)
            task.add_done_callback(self._returning.discard)

    async def _renew(
        self, owner: _Owner, lease: Lease, account_id: str, api_key_id: str, worst: tuple[str, ...]
    ) -> None:
        try:
            async with owner.lock:
                if owner.lease is not lease or not lease.open or owner.ready is not None:
                    return  # replaced, closed or renewed meanwhile
                owner.want = min(owner.want * 2, _MAX_WANT)  # running low within its window
                answer = await self._ask(owner, account_id, api_key_id, worst)
                if not isinstance(answer, Lease):
                    return  # a refusal or per_request: the request that finds the lease dry learns it
                if owner.lease is lease and lease.open:
                    owner.ready = answer
                else:  # closed while billing answered (the account changed): not to be used
                    answer.open = False
                    self._give_back(answer)
        except ServiceFailed:
            return  # the request that finds the lease dry asks again
        finally:
            owner.renewing = False

    async def _ask(
        self, owner: _Owner, account_id: str, api_key_id: str, worst: tuple[str, ...]
    ) -> Lease | billing_pb2.LeaseResponse | None:
        """A new lease of `owner.want` slots from billing (held, nothing taken yet);
        billing's refusal; or None: admit one by one for a while."""
        largest = max((_usd(cost) for cost in worst), default=_ZERO)
        request = billing_pb2.LeaseRequest(
            lease_id=uuid.uuid4().hex,
            account_id=account_id,
            api_key_id=api_key_id,
            gateway=self._gateway,
            want=owner.want,
            worst_cost_usd=str(largest),
        )
        answer: billing_pb2.LeaseResponse = await call(
            self._billing.Lease, request, service="billing", timeout_s=_TIMEOUT_S, metadata=self._metadata
        )
        if answer.per_request:
            owner.per_request_until = time.monotonic() + _PER_REQUEST_S
            return None
        if not answer.granted:
            return answer
        usd = Decimal(answer.granted_usd) if answer.granted_usd else None
        lease = Lease(
            lease_id=request.lease_id,
            account_id=account_id,
            granted=answer.granted,
            admit_until=answer.admit_until,
            limit=answer.limit,
            remaining=answer.remaining,
            unused=answer.granted,
            full=answer.granted >= request.want and (usd is None or usd >= largest * request.want),
            usd_granted=usd or _ZERO,
            usd_left=usd,
        )
        self._held[lease.lease_id] = lease
        return lease

    def _close_ready(self, owner: _Owner) -> None:
        ready, owner.ready = owner.ready, None
        if ready is not None:
            ready.open = False
            self._give_back(ready)

    def _close(self, owner: _Owner, *, ready: bool = True) -> None:
        """End the owner's lease (returned once nothing from it is in flight) and,
        unless `ready` is False, the one renewed ahead."""
        if ready:
            self._close_ready(owner)
        lease = owner.lease
        if lease is None:
            return
        owner.lease = None
        lease.open = False
        if lease.unused > lease.granted // 2:
            owner.want = max(1, owner.want // 2)  # most of it went unused
        if lease.in_flight == 0:
            self._give_back(lease)

    def _give_back(self, lease: Lease) -> None:
        if lease.returned:
            return
        lease.returned = True
        self._held.pop(lease.lease_id, None)
        task = asyncio.ensure_future(self._return(lease))
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

    async def _return(self, lease: Lease) -> None:
        request = billing_pb2.ReturnLeaseRequest(
            lease_id=lease.lease_id,
            account_id=lease.account_id,
            admitted=lease.admitted,
            admitted_usd="" if lease.usd_left is None else str(lease.usd_admitted),
        )
        with contextlib.suppress(ServiceFailed):
            await call(
                self._billing.ReturnLease, request, service="billing", timeout_s=_TIMEOUT_S, metadata=self._metadata
            )
            return
        # Its slots come back at the lease's expiry instead.
        log.warning("returning a lease failed; billing frees it at its expiry", extra={"lease_id": lease.lease_id})


def _usd(amount: str) -> Decimal:
    """A USD amount as billing stores it (12 places), so that what this replica takes
    off a lease adds up to what billing settles, to the last digit."""
    return Decimal(amount).quantize(_PLACE, rounding=ROUND_HALF_EVEN)


def _take(lease: Lease | None, worst: tuple[str, ...]) -> Taken | None:
    """One slot of `lease`, if it is open, in its window and has one, and where it
    holds money the largest of `worst` its USD covers, if it covers any."""
    if lease is None or not lease.open or lease.unused <= 0 or time.time() >= lease.admit_until:
        return None
    usd: Decimal | None = None
    fits: tuple[bool, ...] = ()
    if lease.usd_left is not None:
        left, costs = lease.usd_left, tuple(_usd(cost) for cost in worst)
        fits = tuple(cost <= left for cost in costs)
        if costs and not any(fits):
            return None
        usd = max((cost for cost, fit in zip(costs, fits, strict=True) if fit), default=_ZERO)
        lease.usd_left = left - usd
        lease.usd_in_flight += usd
    lease.unused -= 1
    lease.in_flight += 1
    lease.used_at = time.monotonic()
    return Taken(lease, usd, fits)
