"""The Route call: a request's features to the router, ranked candidates back; a
refusal becomes the HTTP error SPEC.md §4 gives it."""

from __future__ import annotations

import asyncio
from typing import Any

from stepblend.v1 import router_pb2

from . import errors
from .deps import Deps
from .errors import ApiError
from .features import features
from .rpc import call
from .schemas import ChatRequest

__all__ = ["route"]

_ROUTE_TIMEOUT_S = 5.0


async def route(
    deps: Deps,
    request: ChatRequest,
    upstream: dict[str, Any],
    account_id: str,
    explain: bool = False,
    *,
    offload: bool = False,
) -> router_pb2.RouteDecision:
    """Ask the router for ranked candidates; a refusal becomes its HTTP error.
    `offload`: count the prompt's tokens off the event loop (a large body)."""
    connected = await deps.connected.get(account_id)
    if offload:
        counted = await asyncio.to_thread(features, request, deps.encoding, upstream)
    else:
        counted = features(request, deps.encoding, upstream)
    route_request = router_pb2.RouteRequest(
        model=request.model,
        strategy=request.stepblend_strategy or "",
        features=counted,
        max_cost_usd=str(request.stepblend_max_cost) if request.stepblend_max_cost is not None else "",
        connected_providers=connected,
        explain=explain,
    )
    response = await call(
        deps.router.Route, route_request, service="router", timeout_s=_ROUTE_TIMEOUT_S, metadata=deps.metadata
    )
    if response.WhichOneof("result") == "refusal":
        refusal = response.refusal
        status = errors.REFUSAL_STATUS.get(refusal.code, 400)
        code = None if refusal.code == "invalid_request" else refusal.code
        raise ApiError(status, refusal.message, "invalid_request_error", code, refusal.param or None)
    decision: router_pb2.RouteDecision = response.decision
    return decision
