"""What only the gateway reads from the environment, read once at start
(`GatewaySettings.from_env()` in main) and strictly, like every service's
settings (services.common.config): a value that does not parse stops start-up
naming its variable.

- STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT (64; 0 turns it off): chat completions one
  account may have in flight at this gateway (fairness.py).
- STEPBLEND_LEASES (true): admit from leases of the account's month (leases.py);
  false: one billing Admit per request, as before leases.
  STEPBLEND_LEASE_IDLE_SECONDS (2 s): a lease no request has taken from this
  long is returned, its unused slots freed for the other replicas.
- STEPBLEND_CALL_STREAMS (true): send Route and Complete calls as messages on a
  long-lived stream to each service (services/common/mux.py); false: a unary call each.
- STEPBLEND_PROVIDER_TOTAL_TIMEOUT (600 s): the providers service's bound on one
  attempt, as it reads it too; with STEPBLEND_PROVIDER_DEADLINE_MARGIN_SECONDS
  (30 s) it makes the deadline of the gateway's call to providers: one total per
  candidate, plus the margin.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field

from services.common.config import ServiceSettings

__all__ = ["DEFAULT_MAX_CONCURRENT", "GatewaySettings"]

DEFAULT_MAX_CONCURRENT = 64


class GatewaySettings(ServiceSettings):
    max_concurrent_per_account: int = Field(DEFAULT_MAX_CONCURRENT, ge=0)
    leases: bool = True
    call_streams: bool = True
    lease_idle_s: float = Field(2.0, gt=0, le=3600, validation_alias=AliasChoices("STEPBLEND_LEASE_IDLE_SECONDS"))
    provider_total_timeout_s: float = Field(
        600.0, gt=0, validation_alias=AliasChoices("STEPBLEND_PROVIDER_TOTAL_TIMEOUT")
    )
    provider_deadline_margin_s: float = Field(
        30.0, gt=0, validation_alias=AliasChoices("STEPBLEND_PROVIDER_DEADLINE_MARGIN_SECONDS")
    )

    def providers_deadline_s(self, candidates: int) -> float:
        """The deadline of a call to providers that may try `candidates` in turn."""
        return self.provider_total_timeout_s * max(1, candidates) + self.provider_deadline_margin_s
