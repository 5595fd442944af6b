"""The state of one request as it goes through the pipeline: what routing,
admission and execution learnt, what the usage event and telemetry record, and
what a codec may read of it (`codecs.base.Answer`).

No I/O and no knowledge of the services: every stage writes its own facts here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from stepblend.v1 import providers_pb2, router_pb2

from .auth import Grant
from .codecs.base import TokenCounts
from .costs import actual_cost, as_json_number
from .leases import Taken

__all__ = ["Exchange"]


@dataclass
class Exchange:
    """One request, from authentication to its usage event. Implements `Answer`."""

    request_id: str
    account_id: str
    client_request_id: str
    # The API key it came with (its id and allowed models); None for the account's JWT.
    grant: Grant | None = None
    # The front door's dialect ("openai_chat", "anthropic_messages", ...): set by
    # the pipeline from its codec; a span attribute, and the usage event's.
    dialect: str = "openai_chat"
    # Client headers a natively served body needs (`anthropic-beta`).
    native_headers: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    admitted_at: float = field(default_factory=time.time)
    stream: bool = False
    # The `model` the client asked for (a model id or a strategy).
    requested_model: str = ""
    include_usage: bool = False
    strategy_used: str = ""
    catalog_version: str = ""
    serving: router_pb2.Candidate | None = None
    attempts: list[providers_pb2.Attempt] = field(default_factory=list)
    usage: providers_pb2.Usage | None = None
    ttft_ms: int = 0
    answered: bool = False
    error_code: str = ""
    rate_headers: dict[str, str] = field(default_factory=dict)
    # Its share of the lease it was admitted from (leases.py); None when billing admitted it alone.
    leased: Taken | None = None
    finished: bool = False
    # For telemetry (observe.py): the cap, how many candidates the router ranked,
    # when the first chunk (or the completion) arrived.
    max_cost_usd: Decimal | None = None
    candidates: int = 0
    answered_at: float = 0.0

    @property
    def api_key_id(self) -> str:
        return self.grant.key_id if self.grant is not None else ""

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.request_id}"

    @property
    def created(self) -> int:
        return int(self.admitted_at)

    @property
    def routed_model(self) -> str:
        """The serving model; empty before the first answer names it."""
        return self.serving.model if self.serving is not None else ""

    @property
    def tokens(self) -> TokenCounts | None:
        usage = self.usage
        if usage is None:
            return None
        return TokenCounts(usage.prompt_tokens, usage.completion_tokens, usage.cached_prompt_tokens, usage.total_tokens)

    def stepblend(self) -> dict[str, Any]:
        serving = self.serving
        assert serving is not None
        info: dict[str, Any] = {
            "routed_model": serving.model,
            "provider": serving.provider,
            "strategy_used": self.strategy_used,
            "estimated_cost_usd": float(serving.estimated_cost_usd or 0),
            "actual_cost_usd": as_json_number(actual_cost(serving, self.usage)),
        }
        if len(self.attempts) > 1:
            info["attempts"] = [
                {
                    "provider": a.provider,
                    "model": a.model,
                    "outcome": a.outcome,
                    "status": a.status or None,
                    "detail": a.detail or None,
                }
                for a in self.attempts
            ]
        return info

    def headers(self) -> dict[str, str]:
        assert self.serving is not None
        return {
            "x-stepblend-provider": self.serving.provider,
            "x-stepblend-routed-model": self.serving.model,
            **self.rate_headers,
        }
