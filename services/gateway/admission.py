"""Admission: from this replica's lease of the account's month (leases.py), or
one call to billing's exact, cross-replica counters.

Billing reserves one request of the account's month (and of its API key's, with
the key's limits), and the largest worst-case cost among the routed candidates
that fits the budgets, or refuses; the candidates whose worst case does not fit
are dropped here, so the request can never spend more than it reserved (SPEC.md
§7). The request's usage event settles the reservation later. When billing is unreachable the
gateway refuses with a 503 that says why, unless the operator chose fail-open
(STEPBLEND_BILLING_FAIL_OPEN): then the request goes ahead unreserved, and
billing still counts it from its usage event.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from stepblend.v1 import billing_pb2, router_pb2

from .deps import Deps
from .errors import ApiError, unauthenticated, unavailable
from .leases import Taken
from .rpc import ServiceFailed, call
from .state import Exchange

log = logging.getLogger(__name__)

_TIMEOUT_S = 3.0


def rate_headers(response: billing_pb2.AdmitResponse) -> dict[str, str]:
    """OpenAI's names for the plan's monthly request budget; none when unlimited."""
    if not response.limit:
        return {}
    return {
        "x-ratelimit-limit-requests": str(response.limit),
        "x-ratelimit-remaining-requests": str(response.remaining),
    }


async def admit(deps: Deps, exchange: Exchange, decision: router_pb2.RouteDecision) -> dict[str, str]:
    """Reserve the request or raise; drops from `decision` the candidates no budget
    has room for; returns the rate-limit headers to send."""
    worst_costs = [c.worst_cost_usd or c.estimated_cost_usd or "0" for c in decision.candidates]
    if deps.leases is not None:
        try:
            taken = await deps.leases.take(exchange.account_id, exchange.api_key_id, tuple(worst_costs))
        except ServiceFailed as exc:
            if not deps.settings.billing_fail_open:
                deps.telemetry.admission("billing_unavailable")
                raise _billing_unavailable() from exc
            taken = None  # Admit below fails open the same way
        if isinstance(taken, Taken):
            deps.telemetry.admission("admitted")
            exchange.leased = taken
            _keep_fitting(decision, taken.fits)
            return taken.lease.headers()
        if taken is not None:
            deps.telemetry.admission(taken.reason or "refused", taken.plan)
            refused = billing_pb2.AdmitResponse(allowed=False, reason=taken.reason, plan=taken.plan, limit=taken.limit)
            raise _refusal(refused, decision)
    request = billing_pb2.AdmitRequest(
        account_id=exchange.account_id,
        request_id=exchange.request_id,
        api_key_id=exchange.api_key_id,
        worst_cost_usd=worst_costs,
    )
    try:
        response = await call(
            deps.billing.Admit, request, service="billing", timeout_s=_TIMEOUT_S, metadata=deps.metadata
        )
    except ServiceFailed as exc:
        if deps.settings.billing_fail_open:
            deps.telemetry.admission("fail_open")
            log.warning(
                "billing unreachable, admitting unreserved (fail-open)", extra={"request_id": exchange.request_id}
            )
            return {}
        deps.telemetry.admission("billing_unavailable")
        raise _billing_unavailable() from exc
    deps.telemetry.admission("admitted" if response.allowed else response.reason or "refused", response.plan)
    if not response.allowed:
        raise _refusal(response, decision)
    _keep_fitting(decision, tuple(response.fits))
    return rate_headers(response)


def _keep_fitting(decision: router_pb2.RouteDecision, fits: tuple[bool, ...]) -> None:
    """Drop the candidates whose worst case the reservation does not cover (`fits`,
    one per candidate; empty: all are covered)."""
    if len(fits) == len(decision.candidates) and not all(fits):
        fitting = [c for c, fit in zip(decision.candidates, fits, strict=True) if fit]
        del decision.candidates[:]
        decision.candidates.extend(fitting)


def _billing_unavailable() -> ApiError:
    return unavailable(
        "StepBlend cannot check your plan's limit right now (its billing service is unreachable); try again shortly.",
        "billing_unavailable",
    )


def _refusal(response: billing_pb2.AdmitResponse, decision: router_pb2.RouteDecision) -> ApiError:
    reason = response.reason
    if reason == "plan_limit_exceeded":
        return ApiError(
            429,
            f"You have used all {response.limit} requests of your '{response.plan}' plan this month. "
            "Upgrade the plan or wait for next month.",
            "rate_limit_error",
            "plan_limit_exceeded",
            headers=rate_headers(response),
        )
    if reason == "key_limit_exceeded":
        return ApiError(
            429,
            "This API key has used all the requests its monthly limit allows. Raise the limit with a new key "
            "or wait for next month.",
            "rate_limit_error",
            "key_limit_exceeded",
        )
    if reason == "budget_exceeded":
        whose = "This API key's" if response.budget_owner == "key" else "The account's"
        cheapest = min((Decimal(c.worst_cost_usd or "0") for c in decision.candidates), default=Decimal(0))
        return ApiError(
            429,
            f"{whose} monthly budget has ${_usd(response.budget_left_usd)} left, and this request's worst case "
            f"costs ${_usd(str(cheapest))} (its prompt plus max_tokens, or the model's maximum output). "
            "Set a lower max_tokens, pick a cheaper model, or raise the budget.",
            "rate_limit_error",
            "budget_exceeded",
        )
    if reason == "rate_limit_exceeded":
        return ApiError(
            429,
            "This API key has reached its requests-per-minute limit; retry after the time in retry-after.",
            "rate_limit_error",
            "rate_limit_exceeded",
            headers={"retry-after": str(response.retry_after_s or 1)},
        )
    if reason == "key_revoked":
        return unauthenticated("This API key has been revoked or has expired.")
    if reason == "account_disabled":
        return unauthenticated("This account is disabled.")
    return unauthenticated("The account of this token does not exist.")


def _usd(amount: str) -> str:
    """A Decimal string as a price a person reads: at least cents, up to six places."""
    value = Decimal(amount or "0")
    return f"{value:.6f}".rstrip("0").rstrip(".") if value < Decimal("0.01") and value else f"{value:.2f}"
