"""The words services exchange, in one table: attempt outcomes, the router's refusal
codes, strategy names. Each is a `StrEnum`, so a value one service sends and another
does not know fails loudly — pydantic refuses it in an event, a lookup table keyed by
the enum is checked complete by a test — instead of falling through an `if` unseen.

On the wire (proto strings, event JSON) they stay their string values.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Outcome", "RefusalCode", "Strategy", "strategy_spellings"]


class Outcome(StrEnum):
    """How one attempt on one candidate ended (`Attempt.outcome`); providers/outcomes.py
    says which are retried on the next candidate."""

    OK = "ok"
    PROVIDER_NOT_CONNECTED = "provider_not_connected"
    PROVIDER_KEY_INVALID = "provider_key_invalid"
    CONNECT_ERROR = "connect_error"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    PROVIDER_ERROR = "provider_error"
    BAD_REQUEST = "bad_request"


class RefusalCode(StrEnum):
    """Why the router found no candidate (`Refusal.code`); the gateway maps each to an
    HTTP status (errors.REFUSAL_HTTP)."""

    INVALID_REQUEST = "invalid_request"
    MODEL_NOT_FOUND = "model_not_found"
    PROVIDER_NOT_CONNECTED = "provider_not_connected"
    NO_MODEL_UNDER_COST_CAP = "no_model_under_cost_cap"
    NO_ELIGIBLE_MODEL = "no_eligible_model"
    STRATEGY_NOT_SUPPORTED = "strategy_not_supported"
    MODEL_NOT_ALLOWED = "model_not_allowed"


class Strategy(StrEnum):
    """A strategy's canonical name, as reported in `strategy_used`."""

    LOWEST_COST = "lowest_cost"
    BALANCED = "balanced"
    FASTEST = "fastest"
    MAX_RELIABILITY = "max_reliability"


def parse_strategy(name: str) -> Strategy | None:
    """The strategy `name` spells (case and `-`/`_` insensitive), or None."""
    try:
        return Strategy(name.strip().lower().replace("-", "_"))
    except ValueError:
        return None


def strategy_spellings(strategy: Strategy) -> tuple[str, str]:
    """The names a client may use for `strategy`: canonical and hyphenated."""
    return strategy.value, strategy.value.replace("_", "-")
