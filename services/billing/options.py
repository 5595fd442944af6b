"""Billing's own settings, beyond the ones every service shares, read once at start
(common.config), strictly.

- `STEPBLEND_RESERVATION_TTL_SECONDS`: how long an admitted request's
  reservation holds its slot without a usage event before the reaper frees it.
  It must be longer than the longest request may run: a reservation freed while
  its request still runs lets the month go over its limit by that request. So
  by default it is that longest run, every attempt at the providers' total
  timeout (`STEPBLEND_PROVIDER_TOTAL_TIMEOUT` × `STEPBLEND_MAX_ATTEMPTS`, 600 ×
  4 s), plus 5 minutes for the usage event's way back (the gateway's outbox
  through a short NATS outage): 45 minutes. A shorter one set here is logged
  as a warning at start.
- `STEPBLEND_LEASE_SECONDS` (default 10): how long a gateway may admit from one
  lease (leases.py); a lease's slots are freed at the latest this plus the
  reservation TTL after it was granted.
- `STEPBLEND_AUTH_ATTEMPTS_PER_ADDRESS` (30) and `STEPBLEND_AUTH_ATTEMPTS_PER_EMAIL`
  (10): sign-ups and sign-ins allowed per client address and per email in each
  `STEPBLEND_AUTH_WINDOW_SECONDS` (60); 0 turns a limit off (auth_limits.py).
- `STEPBLEND_PASSWORD_HASHING_THREADS` (2): the pool password hashing runs on,
  apart from the one that serves admission and account reads.
- `STEPBLEND_SQLITE_SYNCHRONOUS` (NORMAL): SQLite's `PRAGMA synchronous` for
  billing's file (FULL or EXTRA trade speed for durability across a power loss).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from pydantic import AliasChoices, Field, field_validator

from services.billing.auth_limits import AuthLimits
from services.common.config import ServiceSettings

__all__ = ["BillingOptions", "BillingSettings"]

log = logging.getLogger(__name__)

#: The usage event's way back after its request ended, within a reservation's TTL.
EVENT_MARGIN_S = 300.0


class BillingSettings(ServiceSettings):
    reservation_ttl_s: float | None = Field(
        None, gt=0, validation_alias=AliasChoices("STEPBLEND_RESERVATION_TTL_SECONDS")
    )
    # The providers' bound on one attempt, and how many one request may make (the
    # variables the providers read): together, the longest a request runs.
    max_attempts: int = Field(4, ge=1, le=64)
    provider_total_timeout_s: float = Field(
        600.0, gt=0, le=86_400, allow_inf_nan=False, validation_alias=AliasChoices("STEPBLEND_PROVIDER_TOTAL_TIMEOUT")
    )
    lease_s: float = Field(10.0, gt=0, le=3600, validation_alias=AliasChoices("STEPBLEND_LEASE_SECONDS"))
    auth_attempts_per_address: int = Field(30, ge=0)
    auth_attempts_per_email: int = Field(10, ge=0)
    auth_window_s: int = Field(60, gt=0, validation_alias=AliasChoices("STEPBLEND_AUTH_WINDOW_SECONDS"))
    password_hashing_threads: int = Field(2, ge=1, le=64)
    # SQLite's PRAGMA synchronous for billing's file: NORMAL (WAL's usual), FULL or EXTRA.
    sqlite_synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "NORMAL"

    @field_validator("reservation_ttl_s")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number of seconds")
        return value

    def longest_request_s(self) -> float:
        """The longest a request may run, its usage event's way back included."""
        return self.provider_total_timeout_s * self.max_attempts + EVENT_MARGIN_S

    def reservation_ttl(self) -> timedelta:
        """The TTL set, else the longest a request may run."""
        longest = self.longest_request_s()
        if self.reservation_ttl_s is None:
            return timedelta(seconds=longest)
        if self.reservation_ttl_s < longest:
            log.warning(
                "STEPBLEND_RESERVATION_TTL_SECONDS=%g is shorter than a request may run (%g s): a slot freed "
                "while its request still runs lets the month go over its limit by that request",
                self.reservation_ttl_s,
                longest,
            )
        return timedelta(seconds=self.reservation_ttl_s)


@dataclass(frozen=True)
class BillingOptions:
    """Billing's tunables; the defaults are production's."""

    reservation_ttl: timedelta = field(default_factory=lambda: BillingSettings().reservation_ttl())
    lease_window: timedelta = timedelta(seconds=10)
    auth_limits: AuthLimits = field(default_factory=AuthLimits)
    password_hashing_threads: int = 2
    sqlite_synchronous: str = "NORMAL"

    @property
    def reap_interval_s(self) -> float:
        """How often the reaper looks for expired reservations: a small part of the TTL."""
        return max(0.05, min(30.0, self.reservation_ttl.total_seconds() / 10))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BillingOptions:
        """The options from the environment; ConfigError (a ValueError) names a variable that makes no sense."""
        settings = BillingSettings.from_env(environ)
        return cls(
            reservation_ttl=settings.reservation_ttl(),
            lease_window=timedelta(seconds=settings.lease_s),
            auth_limits=AuthLimits(
                per_address=settings.auth_attempts_per_address,
                per_email=settings.auth_attempts_per_email,
                window_s=settings.auth_window_s,
            ),
            password_hashing_threads=settings.password_hashing_threads,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
