"""Routing an embeddings request (SPEC.md §9): the named embedding model's rows,
cheapest first. No strategy: vectors from two models do not compare, so a client
names its model, and a fallback may change provider, never model.

A row is a candidate when, in this order (the first failing check is its exclusion):
  not_connected       the account has no key for its provider;
  unsupported_param   the request sets `dimensions` and the model does not take it;
  context_too_small   the longest input is over the model's per-input limit (the
                      gateway's count through the row's tokenizer margin), or there
                      are more inputs than one request to it may carry.
Refusals: strategy_not_supported (a strategy), invalid_request (a chat model, no
model), model_not_found, provider_not_connected (no row's provider connected), and
no_eligible_model naming what stopped the rows, with `param` `dimensions` or `input`.
"""

from __future__ import annotations

from services.common.vocab import parse_strategy
from services.router.catalog import Catalog
from services.router.decision import Candidate, Decision, Exclusion, Reason, Refusal, RefusalCode, RouteRequest
from services.router.embedding_catalog import EmbeddingEntry
from services.router.refusals import listed, not_allowed
from services.router.strategies import FORCE_MODEL

__all__ = ["route_embedding"]

_PER_MTOK = 1_000_000


def route_embedding(catalog: Catalog, request: RouteRequest) -> Decision | Refusal:
    """The candidates for an embeddings request, cheapest first, or a refusal."""
    model = request.model.strip()
    if not model:
        return Refusal(RefusalCode.INVALID_REQUEST, "model is required: an embedding model id", "model")
    if parse_strategy(model) is not None or request.strategy.strip():
        return Refusal(
            RefusalCode.STRATEGY_NOT_SUPPORTED,
            f"embeddings need a model id, not a strategy: vectors from different models do not compare. "
            f"Use one of {_names(catalog)}",
            "model",
        )
    rows = catalog.resolve_embedding(model)
    if not rows:
        if catalog.resolve(model):
            return Refusal(
                RefusalCode.INVALID_REQUEST,
                f"{model[:80]!r} is a chat model; embeddings need an embedding model: {_names(catalog)}",
                "model",
            )
        return Refusal(
            RefusalCode.MODEL_NOT_FOUND,
            f"the embedding model {model[:80]!r} does not exist in StepBlend's catalog; "
            f"GET /api/v1/models lists them (type embedding): {_names(catalog)}",
            "model",
        )
    if request.allowed_models:
        rows = tuple(e for e in rows if listed(e, request.allowed_models))
        if not rows:
            return not_allowed(model, request.allowed_models)
    eligible: list[tuple[EmbeddingEntry, int]] = []
    excluded: list[Exclusion] = []
    for entry in rows:
        longest = entry.tokenizer.estimate(request.longest_input_tokens, False)
        exclusion = _exclusion(entry, request, longest)
        if exclusion is None:
            eligible.append((entry, entry.tokenizer.estimate(request.prompt_tokens, False)))
        else:
            excluded.append(exclusion)
    if not eligible:
        return _refusal(model, excluded)
    eligible.sort(key=lambda pair: pair[0].input_per_mtok)
    return Decision(
        strategy_used=FORCE_MODEL,
        candidates=tuple(_candidate(entry, tokens) for entry, tokens in eligible),
        catalog_version=catalog.version,
        excluded=tuple(excluded),
    )


def _exclusion(entry: EmbeddingEntry, request: RouteRequest, longest: int) -> Exclusion | None:
    if entry.provider not in request.connected_providers:
        return Exclusion(entry.provider, entry.id, Reason.NOT_CONNECTED, f"no {entry.provider} key connected")
    if "dimensions" in request.params and not entry.dimensions_param:
        detail = f"{entry.id} does not take dimensions (its vectors have {entry.dimensions})"
        return Exclusion(entry.provider, entry.id, Reason.UNSUPPORTED_PARAM, detail)
    if longest > entry.max_input_tokens:
        detail = f"{entry.id} takes at most {entry.max_input_tokens} tokens per input; the longest has ~{longest}"
        return Exclusion(entry.provider, entry.id, Reason.CONTEXT_TOO_SMALL, detail)
    if request.inputs > entry.max_inputs:
        detail = f"{entry.id} takes at most {entry.max_inputs} inputs per request, not {request.inputs}"
        return Exclusion(entry.provider, entry.id, Reason.CONTEXT_TOO_SMALL, detail)
    return None


def _refusal(model: str, excluded: list[Exclusion]) -> Refusal:
    if all(e.reason == Reason.NOT_CONNECTED for e in excluded):
        providers = ", ".join(sorted({e.provider for e in excluded}))
        return Refusal(
            RefusalCode.PROVIDER_NOT_CONNECTED,
            f"{model[:80]!r} is served by {providers}, and this account has no key connected for it",
            "model",
        )
    furthest = [e for e in excluded if e.reason != Reason.NOT_CONNECTED]
    param = "dimensions" if any(e.reason == Reason.UNSUPPORTED_PARAM for e in furthest) else "input"
    return Refusal(RefusalCode.NO_ELIGIBLE_MODEL, "; ".join(dict.fromkeys(e.detail for e in furthest)), param)


def _candidate(entry: EmbeddingEntry, tokens: int) -> Candidate:
    cost = tokens * entry.input_per_mtok / _PER_MTOK
    return Candidate(
        provider=entry.provider,
        model=entry.id,
        upstream_model=entry.upstream_model,
        estimated_cost_usd=cost,
        input_price_per_mtok=entry.input_per_mtok,
        output_price_per_mtok=entry.input_per_mtok * 0,
        output_budget=0,
        param_renames=(),
        unsupported_params=(),
        prompt_tokens=tokens,
        # An embedding bills its input only: the estimate is the worst case.
        worst_cost_usd=cost,
    )


def _names(catalog: Catalog) -> str:
    return ", ".join(dict.fromkeys(entry.id for entry in catalog.embeddings))
