"""The state of one request as it goes through the path, and what it reports.

An `Exchange` is created when a request arrives and carries what the path learns:
the routing decision, the attempts, the usage, when the first answer came. From it
come the `stepblend` report, the response headers and, once, the usage event
(`finish`), whichever way the request ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from services.common.events import AttemptRecord, UsageEvent
from stepblend.v1 import providers_pb2, router_pb2

from .costs import actual_cost, as_json_number
from .outbox import Outbox

__all__ = ["Exchange", "Telemetry"]


class Telemetry(Protocol):
    """Where a finished request's spans and metrics go (observe.RequestTelemetry)."""

    def finished(self, exchange: Exchange, event: UsageEvent) -> None: ...


@dataclass
class Exchange:
    """The state of one request as it goes through the path."""

    request_id: str
    account_id: str
    client_request_id: str
    started: float = field(default_factory=time.monotonic)
    admitted_at: float = field(default_factory=time.time)
    stream: bool = False
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
    finished: bool = False
    # For telemetry (observe.py): the cap, how many candidates the router ranked,
    # when the first chunk (or the completion) arrived.
    max_cost_usd: Decimal | None = None
    candidates: int = 0
    answered_at: float = 0.0
    telemetry: Telemetry | None = None

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.request_id}"

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

    def finish(self, outbox: Outbox) -> None:
        """Queue the request's usage event, once, whichever way the request ended."""
        if not self.finished:
            self.finished = True
            event = self.usage_event()
            outbox.put(event)
            if self.telemetry is not None:
                self.telemetry.finished(self, event)

    def usage_event(self) -> UsageEvent:
        serving = self.serving
        usage = self.usage
        cost = actual_cost(serving, usage) if serving is not None else None
        return UsageEvent(
            request_id=self.request_id,
            account_id=self.account_id,
            outcome="completed" if self.answered and not self.error_code else "failed",
            admitted_at=self.admitted_at,
            strategy_used=self.strategy_used,
            routed_model=serving.model if serving else "",
            requested_model=self.requested_model,
            provider=serving.provider if serving else "",
            stream=self.stream,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cached_prompt_tokens=usage.cached_prompt_tokens if usage else 0,
            estimated_cost_usd=serving.estimated_cost_usd if serving and serving.estimated_cost_usd else "0",
            actual_cost_usd=None if cost is None else str(cost),
            catalog_version=self.catalog_version,
            latency_ms=int((time.monotonic() - self.started) * 1000),
            ttft_ms=self.ttft_ms,
            error_code=self.error_code,
            provider_answered=self.answered,
            attempts=[
                AttemptRecord(
                    provider=a.provider,
                    model=a.model,
                    outcome=a.outcome,
                    status=a.status,
                    latency_ms=a.latency_ms,
                    ttft_ms=a.ttft_ms,
                    detail=a.detail,
                )
                for a in self.attempts
            ],
            client_request_id=self.client_request_id,
        )
