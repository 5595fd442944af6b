"""Why no row could serve a request: the refusal that explains it best.

The reason chosen is the one that stopped the rows that got furthest through the
checks (`decision.Reason` is declared in check order): a higher cap, a connected
key... would have helped those first. Codes, and the HTTP status the gateway maps
each to: provider_not_connected (409) for a named model none of whose providers is
connected; no_model_under_cost_cap (400) when the cap stopped the furthest rows;
no_eligible_model (400) otherwise, the message saying which check stopped them.
model_not_allowed (403) comes first of all: an API key's list names none of the
rows a named model resolves to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType

from services.router.catalog import ModelEntry
from services.router.decision import STAGE, Exclusion, Reason, Refusal, RefusalCode, RouteRequest
from services.router.embedding_catalog import EmbeddingEntry

KEYS_PATH = "PUT /api/v1/account/keys/{provider}"

CAPABILITY_REASONS = (Reason.LACKS_TOOLS, Reason.LACKS_VISION, Reason.LACKS_JSON_SCHEMA)
#: capability reason -> (adjective for messages, the body field that asked for it)
CAPABILITY_WORDS: Mapping[Reason, tuple[str, str]] = MappingProxyType(
    {
        Reason.LACKS_TOOLS: ("tool-capable", "tools"),
        Reason.LACKS_VISION: ("vision-capable", "messages"),
        Reason.LACKS_JSON_SCHEMA: ("JSON-schema-capable", "response_format"),
    }
)


def listed(entry: ModelEntry | EmbeddingEntry, allowed: frozenset[str]) -> bool:
    """Whether an API key's list names this row: by its id or an alias, bare or `provider:`."""
    return any(name in allowed or f"{entry.provider}:{name}" in allowed for name in entry.names)


def not_allowed(model: str, allowed: frozenset[str]) -> Refusal:
    """An API key's list names no row of the model the client named."""
    return Refusal(
        RefusalCode.MODEL_NOT_ALLOWED,
        f"this API key may not use {model[:80]!r}; the models it allows are {', '.join(sorted(allowed))}",
        "model",
    )


def explain_refusal(
    model: str,
    forced: bool,
    rows: Sequence[ModelEntry],
    request: RouteRequest,
    cap: Decimal | None,
    excluded: Sequence[Exclusion],
) -> Refusal:
    """The refusal for a request whose every row in `rows` was `excluded`."""
    reachable = [e for e in excluded if e.reason is not Reason.NOT_CONNECTED]
    if not reachable:
        return _not_connected(model, forced, rows)

    furthest = max(STAGE[e.reason] for e in reachable)
    stopped = [e for e in reachable if STAGE[e.reason] == furthest]
    stopped_keys = {(e.provider, e.model) for e in stopped}
    stopped_rows = [r for r in rows if (r.provider, r.id) in stopped_keys]
    reason = stopped[0].reason
    if reason is Reason.OVER_CAP and cap is not None:
        return _over_cap(request, cap, stopped)
    if reason in CAPABILITY_REASONS:
        return _lacking(model, forced, request, reachable, reason)
    if reason is Reason.UNSUPPORTED_PARAM:
        refused = sorted(request.params.intersection(p for r in stopped_rows for p in r.unsupported_params))
        what = f"{model} does not" if forced else "no connected model that could serve the request does"
        return Refusal(
            RefusalCode.NO_ELIGIBLE_MODEL,
            f"no eligible model: {what} take {', '.join(refused)}; remove "
            f"{'it' if len(refused) == 1 else 'them'} from the request",
            refused[0] if refused else "model",
        )
    if reason is Reason.OUTPUT_TOO_LARGE:
        largest = max(stopped_rows, key=lambda r: r.max_output_tokens)
        return Refusal(
            RefusalCode.NO_ELIGIBLE_MODEL,
            f"no eligible model: max output too long: {request.max_output_tokens} tokens is more "
            f"than any connected model that could serve the request allows (largest: "
            f"{largest.max_output_tokens}, {largest.id})",
            "max_tokens",
        )
    if reason is Reason.CONTEXT_TOO_SMALL:
        largest = max(stopped_rows, key=lambda r: r.context_window)
        own = largest.tokenizer.estimate(request.prompt_tokens, request.needs_tools)
        counted = f" (~{own} in {largest.id}'s tokenizer)" if own != request.prompt_tokens else ""
        return Refusal(
            RefusalCode.NO_ELIGIBLE_MODEL,
            f"no eligible model: context too small: ~{request.prompt_tokens} prompt tokens"
            f"{counted} plus the output budget do not fit the context window of any connected "
            f"model that could serve the request (largest: {largest.context_window} tokens, "
            f"{largest.id})",
            "messages",
        )
    # Routing keeps circuit-open rows when nothing else is left, so this is a safety net.
    return Refusal(RefusalCode.NO_ELIGIBLE_MODEL, f"no eligible model: {stopped[0].detail}", "model")


def _not_connected(model: str, forced: bool, rows: Sequence[ModelEntry]) -> Refusal:
    providers = sorted({e.provider for e in rows})
    if forced:
        return Refusal(
            RefusalCode.PROVIDER_NOT_CONNECTED,
            f"the model {model!r} is served by {' or '.join(providers)}, and no key is "
            f"connected for {'it' if len(providers) == 1 else 'them'}; connect one with "
            + " or ".join(f"PUT /api/v1/account/keys/{p}" for p in providers),
            "model",
        )
    return Refusal(
        RefusalCode.NO_ELIGIBLE_MODEL,
        f"no eligible model: no connected provider; connect a key with {KEYS_PATH} (providers: {', '.join(providers)})",
        "model",
    )


def _over_cap(request: RouteRequest, cap: Decimal, stopped: Sequence[Exclusion]) -> Refusal:
    priced = [e for e in stopped if e.min_cost_usd is not None]
    best = min(priced, key=lambda e: e.min_cost_usd or 0, default=None)
    cheapest = (
        f": the cheapest worst case is ${best.min_cost_usd:f} ({best.model} on {best.provider})"
        if best is not None and best.min_cost_usd is not None
        else ""
    )
    return Refusal(
        RefusalCode.NO_MODEL_UNDER_COST_CAP,
        f"no model fits under stepblend_max_cost ${cap:f} with ~{request.prompt_tokens} prompt tokens{cheapest}",
        "stepblend_max_cost",
    )


def _lacking(
    model: str,
    forced: bool,
    request: RouteRequest,
    reachable: Sequence[Exclusion],
    reason: Reason,
) -> Refusal:
    wanted = [
        r
        for r, needed in (
            (Reason.LACKS_TOOLS, request.needs_tools),
            (Reason.LACKS_VISION, request.needs_vision),
            (Reason.LACKS_JSON_SCHEMA, request.needs_json_schema),
        )
        if needed
    ]
    words = " and ".join(CAPABILITY_WORDS[r][0] for r in wanted)
    connected = ", ".join(sorted({e.provider for e in reachable}))
    why = (
        f"{model} is not {words} on any connected provider"
        if forced
        else f"no {words} model among the connected providers ({connected})"
    )
    return Refusal(RefusalCode.NO_ELIGIBLE_MODEL, f"no eligible model: {why}", CAPABILITY_WORDS[reason][1])
