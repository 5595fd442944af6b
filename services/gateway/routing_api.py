"""The Routing API (`POST /route`), Anthropic's `count_tokens`, and the model list (`GET /models`).

`/route` takes a chat completions body and answers with the decision and its
explanation — chosen model, ranked candidates with estimated cost and score,
every excluded model with its reason — without calling a provider or using any
of the plan's quota.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepblend.v1 import router_pb2

from . import offload
from .auth import Caller
from .codecs.base import Parsed
from .codecs.openai_chat import parse as parse_chat
from .deps import Deps
from .routing import count, route


def _candidate(c: router_pb2.Candidate) -> dict[str, Any]:
    return {
        "model": c.model,
        "provider": c.provider,
        "upstream_model": c.upstream_model,
        "estimated_cost_usd": float(c.estimated_cost_usd or 0),
        # What an API key's or the account's budget reserves for it (SPEC.md §7).
        "worst_case_cost_usd": float(c.worst_cost_usd or 0),
        "score": round(c.score, 6),
        "output_budget": c.output_budget or None,
        "input_price_per_mtok": float(c.input_price_per_mtok or 0),
        "output_price_per_mtok": float(c.output_price_per_mtok or 0),
    }


async def explain(deps: Deps, caller: Caller, raw: bytes) -> dict[str, Any]:
    large = offload.is_large(raw)
    request, upstream = await offload.run(large, parse_chat, raw)
    feats = await count(deps, request, upstream, large=large)
    decision = await route(deps, request, feats, caller.account_id, grant=caller.grant, explain=True)
    ranked = [_candidate(c) for c in decision.candidates]
    return {
        "object": "route",
        "strategy_used": decision.strategy_used,
        "catalog_version": decision.catalog_version,
        "routed_model": ranked[0]["model"] if ranked else None,
        "provider": ranked[0]["provider"] if ranked else None,
        "estimated_cost_usd": ranked[0]["estimated_cost_usd"] if ranked else None,
        "candidates": ranked,
        "excluded": [
            {"model": e.model, "provider": e.provider, "reason": e.reason, "detail": e.detail}
            for e in decision.excluded
        ],
        "features": {
            "prompt_tokens_estimate": feats.prompt_tokens,
            "max_output_tokens": feats.max_output_tokens or None,
            "needs_tools": feats.needs_tools,
            "needs_vision": feats.needs_vision,
            "needs_json_schema": feats.needs_json_schema,
        },
    }


async def count_tokens(deps: Deps, caller: Caller, parse: Callable[[bytes], Parsed], raw: bytes) -> dict[str, int]:
    """The prompt tokens the router prices the body's model with (the gateway's count
    with that model's tokenizer margin): Anthropic's `count_tokens`. Uses no quota."""
    large = offload.is_large(raw)
    parsed = await offload.run(large, parse, raw)
    feats = await count(deps, parsed.request, parsed.upstream, large=large)
    decision = await route(deps, parsed.request, feats, caller.account_id, grant=caller.grant, explain=True)
    return {"input_tokens": decision.candidates[0].prompt_tokens if decision.candidates else feats.prompt_tokens}
