"""Billing's own settings, beyond the ones every service shares (common.config).

- `STEPBLEND_RESERVATION_TTL_SECONDS` (default 900): how long an admitted
  request's reservation holds its slot without a usage event before the
  reaper frees it. It must be longer than the longest request may run
  (a slow streamed answer, plus the gateway's outbox through a short NATS
  outage): a reservation freed while its request still runs lets the month
  go over its limit by that request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["BillingOptions"]

_TTL_ENV = "STEPBLEND_RESERVATION_TTL_SECONDS"


@dataclass(frozen=True)
class BillingOptions:
    """Billing's tunables; the defaults are production's."""

    reservation_ttl: timedelta = timedelta(minutes=15)

    @property
    def reap_interval_s(self) -> float:
        """How often the reaper looks for expired reservations: a small part of the TTL."""
        return max(0.05, min(30.0, self.reservation_ttl.total_seconds() / 10))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BillingOptions:
        """The options from the environment; raises ValueError for a value that makes no sense."""
        env = os.environ if environ is None else environ
        raw = env.get(_TTL_ENV, "").strip()
        if not raw:
            return cls()
        try:
            seconds = float(raw)
        except ValueError:
            raise ValueError(f"{_TTL_ENV} must be a number of seconds, got {raw!r}") from None
        if not seconds > 0 or seconds == float("inf"):
            raise ValueError(f"{_TTL_ENV} must be a positive number of seconds, got {raw!r}")
        return cls(reservation_ttl=timedelta(seconds=seconds))
