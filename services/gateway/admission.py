"""Plan admission: one call to billing's exact, cross-replica counter.

Billing reserves one request of the account's month or refuses; the request's
usage event settles the reservation later. When billing is unreachable the
gateway refuses with a 503 that says why, unless the operator chose fail-open
(STEPBLEND_BILLING_FAIL_OPEN): then the request goes ahead unreserved, and
billing still counts it from its usage event.
"""

from __future__ import annotations

import logging

from stepblend.v1 import billing_pb2

from .deps import Deps
from .errors import ApiError, unauthenticated, unavailable
from .rpc import ServiceFailed, call

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


async def admit(deps: Deps, account_id: str, request_id: str) -> dict[str, str]:
    """Reserve the request or raise; returns the rate-limit headers to send."""
    try:
        response = await call(
            deps.billing.Admit,
            billing_pb2.AdmitRequest(account_id=account_id, request_id=request_id),
            service="billing",
            timeout_s=_TIMEOUT_S,
            metadata=deps.metadata,
        )
    except ServiceFailed as exc:
        if deps.settings.billing_fail_open:
            deps.telemetry.admission("fail_open")
            log.warning("billing unreachable, admitting unreserved (fail-open)", extra={"request_id": request_id})
            return {}
        deps.telemetry.admission("billing_unavailable")
        raise unavailable(
            "StepBlend cannot check your plan's limit right now (its billing service is unreachable); "
            "try again shortly.",
            "billing_unavailable",
        ) from exc
    deps.telemetry.admission("admitted" if response.allowed else response.reason or "refused", response.plan)
    if response.allowed:
        return rate_headers(response)
    if response.reason == "plan_limit_exceeded":
        raise ApiError(
            429,
            f"You have used all {response.limit} requests of your '{response.plan}' plan this month. "
            "Upgrade the plan or wait for next month.",
            "rate_limit_error",
            "plan_limit_exceeded",
            headers=rate_headers(response),
        )
    if response.reason == "account_disabled":
        raise unauthenticated("This account is disabled.")
    raise unauthenticated("The account of this token does not exist.")
