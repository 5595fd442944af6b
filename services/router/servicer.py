"""`stepblend.v1.Router` on the wire: proto in, `routing.route`, proto out. Nothing else."""

from __future__ import annotations

from decimal import Decimal

import grpc

from services.router.catalog import Catalog
from services.router.routing import Candidate, Decision, RouteRequest, route
from services.router.strategies import Stats
from stepblend.v1 import router_pb2, router_pb2_grpc


class RouterServicer(router_pb2_grpc.RouterServicer):
    """Answers `Route` from one catalog (and, later, live statistics)."""

    def __init__(self, catalog: Catalog, stats: Stats | None = None) -> None:
        self._catalog = catalog
        self._stats = stats

    async def Route(  # noqa: N802 - the RPC's name in the proto
        self, request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.RouteResponse:
        result = route(self._catalog, to_route_request(request), self._stats)
        if isinstance(result, Decision):
            return router_pb2.RouteResponse(decision=to_decision_pb(result))
        return router_pb2.RouteResponse(
            refusal=router_pb2.RouteRefusal(
                code=result.code.value, message=result.message, param=result.param
            )
        )


def to_route_request(message: router_pb2.RouteRequest) -> RouteRequest:
    """The proto request as the routing dataclass."""
    features = message.features
    return RouteRequest(
        model=message.model,
        strategy=message.strategy,
        prompt_tokens=features.prompt_tokens,
        max_output_tokens=features.max_output_tokens,
        needs_tools=features.needs_tools,
        needs_vision=features.needs_vision,
        needs_json_schema=features.needs_json_schema,
        max_cost_usd=message.max_cost_usd,
        connected_providers=frozenset(message.connected_providers),
    )


def to_decision_pb(decision: Decision) -> router_pb2.RouteDecision:
    """The decision on the wire; `excluded` stays inside until the Routing API needs it."""
    return router_pb2.RouteDecision(
        strategy_used=decision.strategy_used,
        candidates=[_candidate_pb(c) for c in decision.candidates],
        catalog_version=decision.catalog_version,
    )


def _candidate_pb(candidate: Candidate) -> router_pb2.Candidate:
    return router_pb2.Candidate(
        provider=candidate.provider,
        model=candidate.model,
        upstream_model=candidate.upstream_model,
        estimated_cost_usd=decimal_str(candidate.estimated_cost_usd),
        input_price_per_mtok=decimal_str(candidate.input_price_per_mtok),
        output_price_per_mtok=decimal_str(candidate.output_price_per_mtok),
        output_budget=candidate.output_budget,
        param_renames=dict(candidate.param_renames),
        unsupported_params=list(candidate.unsupported_params),
    )


def decimal_str(value: Decimal) -> str:
    """Plain decimal notation without trailing zeros: `0.0025`, never `2.5E-3`."""
    return format(value.normalize(), "f")
