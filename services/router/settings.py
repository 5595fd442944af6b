"""The router's own settings (beyond the common ones), read once at start and strictly.

Every variable keeps its name: STEPBLEND_CATALOG_FILE, STEPBLEND_VENDORS_FILE,
STEPBLEND_ROUTER_BREAKER_FAILURES,
STEPBLEND_ROUTER_BREAKER_MIN_ACCOUNTS, STEPBLEND_ROUTER_BREAKER_COOLDOWN_S,
STEPBLEND_ROUTER_STATS_REPLAY_S. A value that does not parse stops the router, naming
the variable (ConfigError).
"""

from __future__ import annotations

from pydantic import Field

from services.common.config import ServiceSettings
from services.router.breaker import BreakerConfig
from services.router.consumer import ConsumerOptions

__all__ = ["RouterSettings"]

#: Larger values are typos, not settings.
_CEILING = 10**7


class RouterSettings(ServiceSettings):
    """STEPBLEND_* variables only the router reads."""

    #: A catalog file extending the packaged one (`extends = false`: replacing it).
    catalog_file: str = ""
    #: The operator's own vendors, whose names catalog rows may use.
    vendors_file: str = ""
    router_breaker_failures: int = Field(BreakerConfig.consecutive_failures, ge=1, lt=_CEILING)
    router_breaker_min_accounts: int = Field(BreakerConfig.min_accounts, ge=1, lt=_CEILING)
    router_breaker_cooldown_s: float = Field(BreakerConfig.cooldown_s, gt=0, lt=_CEILING, allow_inf_nan=False)
    router_stats_replay_s: float = Field(ConsumerOptions.replay_s, ge=0, lt=_CEILING, allow_inf_nan=False)

    def breaker(self) -> BreakerConfig:
        return BreakerConfig(
            consecutive_failures=self.router_breaker_failures,
            cooldown_s=self.router_breaker_cooldown_s,
            min_accounts=self.router_breaker_min_accounts,
        )

    def consumer(self) -> ConsumerOptions:
        replay = self.router_stats_replay_s
        return ConsumerOptions(replay_s=replay, max_age_s=max(ConsumerOptions.max_age_s, replay))
