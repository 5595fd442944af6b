"""`stepblend.v1.Router` on the wire: proto in, a domain call, proto out. Nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import grpc

from services.common import mux_server
from services.router.catalog import Catalog, ModelEntry
from services.router.decision import Candidate, Decision, Exclusion, RouteRequest
from services.router.embedding_catalog import EmbeddingEntry
from services.router.embedding_routing import route_embedding
from services.router.routing import Circuits, route
from services.router.strategies import Stats
from stepblend.v1 import mux_pb2, router_pb2, router_pb2_grpc

#: The unary method whose calls RouteStream carries (its spans' name).
ROUTE = "/stepblend.v1.Router/Route"
#: RouteRequest.kind of an embeddings request.
EMBEDDING = "embedding"


class RouterServicer(router_pb2_grpc.RouterServicer):
    """Answers `Route` from one catalog and the live statistics, `ListModels` from the catalog."""

    def __init__(
        self,
        catalog: Catalog,
        stats: Stats | None = None,
        circuits: Circuits | None = None,
        draining: asyncio.Event | None = None,
    ) -> None:
        self._catalog = catalog
        self._draining = draining
        self._stats = stats
        self._circuits = circuits
        # The catalog never changes while the process runs: render its listing once.
        self._models = to_models_pb(catalog)

    async def Route(
        self, request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.RouteResponse:
        return self._route(request)

    def _route(self, request: router_pb2.RouteRequest) -> router_pb2.RouteResponse:
        routed = to_route_request(request)
        if routed.kind == EMBEDDING:
            result = route_embedding(self._catalog, routed)
        else:
            result = route(self._catalog, routed, self._stats, self._circuits)
        if isinstance(result, Decision):
            return router_pb2.RouteResponse(decision=to_decision_pb(result, explain=request.explain))
        return router_pb2.RouteResponse(
            refusal=router_pb2.RouteRefusal(code=result.code.value, message=result.message, param=result.param)
        )

    async def RouteStream(
        self, request_iterator: AsyncIterator[mux_pb2.MuxRequest], context: grpc.aio.ServicerContext
    ) -> None:
        """Route calls as messages on one long-lived stream (services/common/mux.py)."""
        # Routing never waits: each call is answered as it arrives, with no task of its own.
        await mux_server.serve(
            request_iterator, context, ROUTE, answer_now=self._route_message, draining=self._draining
        )

    def _route_message(self, payload: bytes) -> bytes:
        return self._route(router_pb2.RouteRequest.FromString(payload)).SerializeToString()

    async def ListModels(
        self, request: router_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.ListModelsResponse:
        return self._models


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
        params=frozenset(features.params),
        max_cost_usd=message.max_cost_usd,
        connected_providers=frozenset(message.connected_providers),
        explain=message.explain,
        allowed_models=frozenset(message.allowed_models),
        kind=message.kind,
        longest_input_tokens=features.longest_input_tokens,
        inputs=features.inputs,
    )


def to_decision_pb(decision: Decision, *, explain: bool = False) -> router_pb2.RouteDecision:
    """The decision on the wire; `excluded` only when the request asked for an explanation."""
    return router_pb2.RouteDecision(
        strategy_used=decision.strategy_used,
        candidates=[_candidate_pb(c) for c in decision.candidates],
        catalog_version=decision.catalog_version,
        excluded=[_exclusion_pb(e) for e in decision.excluded] if explain else [],
    )


def to_models_pb(catalog: Catalog) -> router_pb2.ListModelsResponse:
    """Every catalog row, in catalog order, with the catalog's version."""
    return router_pb2.ListModelsResponse(
        models=[*(_model_pb(entry) for entry in catalog.models), *(_embedding_pb(e) for e in catalog.embeddings)],
        catalog_version=catalog.version,
    )


def _candidate_pb(candidate: Candidate) -> router_pb2.Candidate:
    cached = candidate.cached_input_price_per_mtok
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
        score=candidate.score,
        cached_input_price_per_mtok="" if cached is None else decimal_str(cached),
        prompt_tokens=candidate.prompt_tokens,
        worst_cost_usd=decimal_str(candidate.worst_cost_usd),
    )


def _exclusion_pb(exclusion: Exclusion) -> router_pb2.Exclusion:
    return router_pb2.Exclusion(
        provider=exclusion.provider,
        model=exclusion.model,
        reason=exclusion.reason.value,
        detail=exclusion.detail,
    )


def _model_pb(entry: ModelEntry) -> router_pb2.ModelInfo:
    caps = entry.capabilities
    return router_pb2.ModelInfo(
        id=entry.id,
        provider=entry.provider,
        upstream_model=entry.upstream_model,
        input_price_per_mtok=decimal_str(entry.input_per_mtok),
        output_price_per_mtok=decimal_str(entry.output_per_mtok),
        context_window=entry.context_window,
        max_output_tokens=entry.max_output_tokens,
        tools=caps.tools,
        vision=caps.vision,
        json_schema=caps.json_schema,
        aliases=list(entry.aliases),
    )


def _embedding_pb(entry: EmbeddingEntry) -> router_pb2.ModelInfo:
    return router_pb2.ModelInfo(
        id=entry.id,
        provider=entry.provider,
        upstream_model=entry.upstream_model,
        input_price_per_mtok=decimal_str(entry.input_per_mtok),
        output_price_per_mtok="0",
        context_window=entry.max_input_tokens,
        aliases=list(entry.aliases),
        kind=EMBEDDING,
        dimensions=entry.dimensions,
    )


def decimal_str(value: Decimal) -> str:
    """Plain decimal notation without trailing zeros: `0.0025`, never `2.5E-3`."""
    return format(value.normalize(), "f")
