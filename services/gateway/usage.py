"""The usage event of a request: built from its state and queued in the outbox
exactly once, whichever way the request ended (answered, failed, abandoned)."""

from __future__ import annotations

import time

from services.common.events import AttemptRecord, UsageEvent

from .costs import actual_cost
from .deps import Deps
from .state import Exchange

__all__ = ["finish", "usage_event"]


def finish(deps: Deps, exchange: Exchange) -> None:
    """Queue the request's usage event, once, and tell telemetry it ended."""
    if exchange.finished:
        return
    exchange.finished = True
    event = usage_event(exchange)
    deps.outbox.put(event)
    if exchange.leased is not None and deps.leases is not None:
        deps.leases.done(exchange.leased, exchange.answered)
    deps.telemetry.finished(exchange, event)


def usage_event(exchange: Exchange) -> UsageEvent:
    serving, usage, leased = exchange.serving, exchange.usage, exchange.leased
    cost = actual_cost(serving, usage) if serving is not None else None
    return UsageEvent(
        request_id=exchange.request_id,
        account_id=exchange.account_id,
        outcome="completed" if exchange.answered and not exchange.error_code else "failed",
        admitted_at=exchange.admitted_at,
        strategy_used=exchange.strategy_used,
        routed_model=serving.model if serving else "",
        requested_model=exchange.requested_model,
        provider=serving.provider if serving else "",
        stream=exchange.stream,
        dialect=exchange.dialect,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        cached_prompt_tokens=usage.cached_prompt_tokens if usage else 0,
        estimated_cost_usd=serving.estimated_cost_usd if serving and serving.estimated_cost_usd else "0",
        actual_cost_usd=None if cost is None else str(cost),
        catalog_version=exchange.catalog_version,
        latency_ms=int((time.monotonic() - exchange.started) * 1000),
        ttft_ms=exchange.ttft_ms,
        error_code=exchange.error_code,
        provider_answered=exchange.answered,
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
            for a in exchange.attempts
        ],
        client_request_id=exchange.client_request_id,
        api_key_id=exchange.api_key_id,
        lease_id=leased.lease.lease_id if leased is not None else "",
        lease_usd=str(leased.usd) if leased is not None and leased.usd is not None else None,
    )
