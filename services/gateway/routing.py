"""The Route call: a request's features to the router, ranked candidates back; a
refusal becomes the HTTP error SPEC.md §4 gives it."""

from __future__ import annotations

from typing import Any

from services.common.vocab import RefusalCode
from stepblend.v1 import router_pb2

from . import errors, offload
from .apikeys import allowed
from .auth import Grant
from .deps import Deps
from .errors import ApiError
from .features import features
from .rpc import call, call_on
from .schemas import ChatRequest

__all__ = ["count", "route"]

_ROUTE_TIMEOUT_S = 5.0


async def count(
    deps: Deps, request: ChatRequest, upstream: dict[str, Any], *, large: bool
) -> router_pb2.RequestFeatures:
    """The request's features (prompt tokens counted), off the loop for a large body."""
    return await offload.run(large, features, request, deps.encoding, upstream)


# A request that only some providers can serve, when none of them can.
_NONE_LEFT = frozenset({RefusalCode.PROVIDER_NOT_CONNECTED, RefusalCode.NO_ELIGIBLE_MODEL})


async def route(
    deps: Deps,
    request: ChatRequest,
    counted: router_pb2.RequestFeatures,
    account_id: str,
    only: frozenset[str] = frozenset(),
    only_error: ApiError | None = None,
    *,
    grant: Grant | None = None,
    kind: str = "",
    explain: bool = False,
) -> router_pb2.RouteDecision:
    """Ask the router for ranked candidates for a request with these features; a
    refusal becomes its HTTP error. With `only_error`, only the providers in `only`
    may serve it, and `only_error` is the answer when none of them can. With an API
    key's `grant`, only the models it allows."""
    models = allowed(grant, request.model, request.stepblend_strategy or "")
    connected = await deps.connected.get(account_id)
    if only_error is not None:
        connected = tuple(p for p in connected if p in only)
    route_request = router_pb2.RouteRequest(
        model=request.model,
        strategy=request.stepblend_strategy or "",
        features=counted,
        max_cost_usd=str(request.stepblend_max_cost) if request.stepblend_max_cost is not None else "",
        connected_providers=connected,
        explain=explain,
        allowed_models=models,
        kind=kind,
    )
    if deps.route_calls is not None:
        response = await call_on(deps.route_calls, route_request, service="router", timeout_s=_ROUTE_TIMEOUT_S)
    else:
        response = await call(
            deps.router.Route, route_request, service="router", timeout_s=_ROUTE_TIMEOUT_S, metadata=deps.metadata
        )
    if response.WhichOneof("result") == "refusal":
        refusal = response.refusal
        if only_error is not None and refusal.code in _NONE_LEFT:
            raise only_error
        status, kind = errors.REFUSAL_HTTP.get(refusal.code, (400, "invalid_request_error"))
        code = None if refusal.code == RefusalCode.INVALID_REQUEST else refusal.code
        raise ApiError(status, refusal.message, kind, code, refusal.param or None)
    decision: router_pb2.RouteDecision = response.decision
    return decision
