"""What the gateway tells operators about each request: StepBlend's own span
attributes and metrics, in the `stepblend.*` namespace.

On the request's server span (the HTTP route's, or the gRPC Chat call's), when it ends:

    stepblend.request_id, stepblend.dialect (openai_chat, anthropic_messages,
    openai_responses), stepblend.strategy, stepblend.candidates (how many the
    router ranked), stepblend.fallbacks (attempts after the first),
    stepblend.admission (admitted, fail_open, plan_limit_exceeded,
    account_disabled, account_not_found, billing_unavailable), stepblend.outcome
    (completed, failed), stepblend.provider, stepblend.routed_model,
    stepblend.cost.estimated_usd, stepblend.cost.actual_usd, stepblend.cost.cap_usd,
    stepblend.overhead_ms, error.type (the request's error code)

Metrics (attributes: stepblend.outcome, .provider, .routed_model, .strategy,
.stream, and error.type when the request failed):

    stepblend.requests               counter, admitted requests by outcome
    stepblend.request.duration       histogram (s), admission to end of answer
    stepblend.time_to_first_chunk    histogram (s), streams: admission to the first
                                     chunk, as the client waits for it
    stepblend.gateway.overhead       histogram (s), what StepBlend adds: time to the
                                     answer (first chunk, or whole completion) minus
                                     the time providers spent in their attempts
                                     (connect, first token or whole answer, failed
                                     attempts included). Relaying chunks after the
                                     first is not counted: the provider is still
                                     producing them.
    stepblend.fallbacks              counter, one per failed attempt that was followed
                                     by another (by the failed one's provider, model,
                                     stepblend.attempt.outcome)
    stepblend.cost.usd               counter, actual cost at catalog prices
    stepblend.cost_cap.exceeded      counter, requests whose actual cost went over
                                     their stepblend_max_cost: a bug (SPEC.md), also logged
    stepblend.plan.refusals          counter, 429 plan_limit_exceeded, by stepblend.plan

Never message content, never a key. Built once in the lifespan
(`RequestTelemetry.create()`); off, it does nothing.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

from services.common import telemetry
from services.common.events import UsageEvent
from services.common.vocab import Outcome

if TYPE_CHECKING:
    from .state import Exchange

__all__ = ["RequestTelemetry"]

log = logging.getLogger(__name__)

_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0)


class RequestTelemetry:
    def __init__(self, meter: metrics.Meter | None, traced: bool = False) -> None:
        self._on = meter is not None
        self._traced = traced
        if meter is None:
            return
        self._requests = meter.create_counter("stepblend.requests", "{request}", "Admitted requests, by outcome.")
        self._duration = meter.create_histogram(
            "stepblend.request.duration",
            "s",
            "From admission to the end of the answer.",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self._first_chunk = meter.create_histogram(
            "stepblend.time_to_first_chunk",
            "s",
            "Streams: from admission to the first chunk relayed to the client.",
            explicit_bucket_boundaries_advisory=_SECONDS_BUCKETS,
        )
        self._overhead = meter.create_histogram(
            "stepblend.gateway.overhead",
            "s",
            "Time to the answer minus the time providers spent in their attempts.",
            explicit_bucket_boundaries_advisory=_OVERHEAD_BUCKETS,
        )
        self._fallbacks = meter.create_counter(
            "stepblend.fallbacks", "{attempt}", "Failed attempts followed by another candidate."
        )
        self._cost = meter.create_counter(
            "stepblend.cost.usd", "{USD}", "Actual cost of requests at catalog prices, in US dollars."
        )
        self._cap_exceeded = meter.create_counter(
            "stepblend.cost_cap.exceeded", "{request}", "Requests whose actual cost exceeded stepblend_max_cost."
        )
        self._plan_refusals = meter.create_counter(
            "stepblend.plan.refusals", "{request}", "Requests refused for the plan's monthly limit."
        )

    @classmethod
    def create(cls) -> RequestTelemetry:
        """From OpenTelemetry's global providers; off when nothing is exported."""
        traced = telemetry.tracing_enabled()
        if not (traced or telemetry.metrics_enabled()):
            return cls(None)
        return cls(metrics.get_meter(__name__), traced)

    def admission(self, outcome: str, plan: str = "") -> None:
        """How billing's admission went for the current request."""
        if not self._on:
            return
        if self._traced:
            trace.get_current_span().set_attribute("stepblend.admission", outcome)
        if outcome == "plan_limit_exceeded":
            self._plan_refusals.add(1, {"stepblend.plan": plan})

    def finished(self, exchange: Exchange, event: UsageEvent) -> None:
        """The request ended (its usage event is `event`): record it."""
        if not self._on:
            return
        now = time.monotonic()
        attempts_s = sum(a.latency_ms for a in exchange.attempts) / 1000.0
        answered_at = exchange.answered_at or now
        overhead_s = max(0.0, (answered_at - exchange.started) - attempts_s)
        actual = _decimal(event.actual_cost_usd)
        cap = exchange.max_cost_usd
        attributes: dict[str, Any] = {
            "stepblend.outcome": event.outcome,
            "stepblend.provider": event.provider,
            "stepblend.routed_model": event.routed_model,
            "stepblend.strategy": event.strategy_used,
            "stepblend.stream": event.stream,
        }
        if event.error_code:
            attributes["error.type"] = event.error_code
        self._requests.add(1, attributes)
        self._duration.record(now - exchange.started, attributes)
        self._overhead.record(overhead_s, attributes)
        if event.stream and exchange.answered_at:
            self._first_chunk.record(exchange.answered_at - exchange.started, attributes)
        fallbacks = [a for a in exchange.attempts[:-1] if a.outcome != Outcome.OK]
        for failed in fallbacks:
            self._fallbacks.add(
                1,
                {
                    "stepblend.provider": failed.provider,
                    "stepblend.model": failed.model,
                    "stepblend.attempt.outcome": failed.outcome,
                },
            )
        cost_attributes = {
            k: attributes[k] for k in ("stepblend.provider", "stepblend.routed_model", "stepblend.strategy")
        }
        if actual is not None:
            self._cost.add(float(actual), cost_attributes)
        if actual is not None and cap is not None and actual > cap:
            self._cap_exceeded.add(1, cost_attributes)
            log.error(
                "request cost %s USD, over its stepblend_max_cost of %s USD (%s on %s)",
                actual,
                cap,
                event.routed_model,
                event.provider,
                extra={"request_id": event.request_id, "account_id": event.account_id},
            )
        if self._traced:
            span = trace.get_current_span()
            span.set_attributes(
                {
                    "stepblend.request_id": event.request_id,
                    "stepblend.dialect": exchange.dialect,
                    "stepblend.strategy": event.strategy_used,
                    "stepblend.candidates": exchange.candidates,
                    "stepblend.fallbacks": len(fallbacks),
                    "stepblend.outcome": event.outcome,
                    "stepblend.provider": event.provider,
                    "stepblend.routed_model": event.routed_model,
                    "stepblend.cost.estimated_usd": float(_decimal(event.estimated_cost_usd) or 0),
                    "stepblend.overhead_ms": round(overhead_s * 1000, 3),
                }
            )
            if actual is not None:
                span.set_attribute("stepblend.cost.actual_usd", float(actual))
            if cap is not None:
                span.set_attribute("stepblend.cost.cap_usd", float(cap))
            if event.error_code:
                span.set_attribute("error.type", event.error_code)


def _decimal(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None
