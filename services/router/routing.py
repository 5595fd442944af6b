"""The routing decision: a pure function from a request's features to ranked candidates.

`route(catalog, request)` returns a `Decision` (every eligible model/provider, best
first: the first is tried, the rest are the fallbacks in order) or a `Refusal`.

Which rows are considered: for a strategy (`lowest-cost`, `balanced`...) every catalog
row; for a named model (force model) the rows that name resolves to, so a fallback may
change provider, never model; `provider:model` pins one row.

A row is eligible when, in this order (the first failing check is its exclusion
reason, kept in `Decision.excluded` for the Routing API):
  provider_not_connected   the account has no key for its provider;
  no_tools / no_vision / no_json_schema   it lacks a capability the request needs;
  output_too_long / context_too_small / over_cost_cap   see `budget.fit`.

Refusals (`code`, and the HTTP status the gateway maps it to):
  invalid_request (400)           unknown stepblend_strategy, bad stepblend_max_cost,
                                  empty model, tools with a strategy;
  model_not_found (404)           no catalog row has that name;
  provider_not_connected (409)    a named model none of whose providers is connected;
  no_model_under_cost_cap (400)   some row passed every check but the cost cap;
  no_eligible_model (400)         otherwise; the message says which check stopped the
                                  rows that got furthest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType

from services.router.budget import UNCAPPED_ESTIMATE_TOKENS, Fit, fit, worst_case_cost
from services.router.catalog import Catalog, ModelEntry
from services.router.strategies import (
    FORCE_MODEL,
    CatalogPriors,
    Option,
    Stats,
    Strategy,
    parse_strategy,
    rank,
)

#: A named model's providers are ordered by this unless stepblend_strategy says otherwise.
DEFAULT_FORCED_ORDER = Strategy.LOWEST_COST

#: The accepted range of stepblend_max_cost, USD.
MIN_COST_CAP = Decimal("0.000000000001")
MAX_COST_CAP = Decimal("1000000")

_KEYS_PATH = "PUT /api/v1/account/keys/{provider}"


class RefusalCode(StrEnum):
    """Stable refusal codes; the gateway maps each to an HTTP status."""

    INVALID_REQUEST = "invalid_request"
    MODEL_NOT_FOUND = "model_not_found"
    PROVIDER_NOT_CONNECTED = "provider_not_connected"
    NO_MODEL_UNDER_COST_CAP = "no_model_under_cost_cap"
    NO_ELIGIBLE_MODEL = "no_eligible_model"


class Reason(StrEnum):
    """Why a row was excluded; declared in check order (later = got further)."""

    PROVIDER_NOT_CONNECTED = "provider_not_connected"
    NO_TOOLS = "no_tools"
    NO_VISION = "no_vision"
    NO_JSON_SCHEMA = "no_json_schema"
    OUTPUT_TOO_LONG = "output_too_long"
    CONTEXT_TOO_SMALL = "context_too_small"
    OVER_COST_CAP = "over_cost_cap"


_STAGE: Mapping[Reason, int] = MappingProxyType({reason: i for i, reason in enumerate(Reason)})
_CAPABILITY_REASONS = (Reason.NO_TOOLS, Reason.NO_VISION, Reason.NO_JSON_SCHEMA)
# capability reason -> (adjective for messages, the body field that asked for it)
_CAPABILITY_WORDS: Mapping[Reason, tuple[str, str]] = MappingProxyType(
    {
        Reason.NO_TOOLS: ("tool-capable", "tools"),
        Reason.NO_VISION: ("vision-capable", "messages"),
        Reason.NO_JSON_SCHEMA: ("JSON-schema-capable", "response_format"),
    }
)


@dataclass(frozen=True)
class RouteRequest:
    """A request's routing features (never its content), as the gateway sends them."""

    #: The body's `model`: a strategy name or a model id (`gpt-4o`, `openai:gpt-4o`).
    model: str
    #: `stepblend_strategy`, "" when unset.
    strategy: str = ""
    #: Estimated prompt tokens; the gateway's estimate errs high.
    prompt_tokens: int = 0
    #: The client's max_tokens / max_completion_tokens; 0 when it set none.
    max_output_tokens: int = 0
    needs_tools: bool = False
    needs_vision: bool = False
    needs_json_schema: bool = False
    #: `stepblend_max_cost` in USD as the client wrote it, "" when unset.
    max_cost_usd: str = ""
    #: Providers the account has a key for.
    connected_providers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Candidate:
    """One model on one provider, as the executor will call it."""

    provider: str
    model: str
    upstream_model: str
    estimated_cost_usd: Decimal
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    #: Sent upstream as the completion limit; 0 leaves it to the provider.
    output_budget: int
    param_renames: tuple[tuple[str, str], ...]
    unsupported_params: tuple[str, ...]


@dataclass(frozen=True)
class Exclusion:
    """A row that was considered and not eligible, and why."""

    provider: str
    model: str
    reason: Reason
    detail: str
    #: For over_cost_cap: the cheapest worst case the row could offer, in USD.
    min_cost_usd: Decimal | None = None


@dataclass(frozen=True)
class Decision:
    """Eligible candidates, best first, and what was left out."""

    strategy_used: str
    candidates: tuple[Candidate, ...]
    catalog_version: str
    excluded: tuple[Exclusion, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """No model can serve the request; `code` is a `RefusalCode` value."""

    code: RefusalCode
    message: str
    param: str = ""


@dataclass(frozen=True)
class _Screened:
    options: list[Option] = field(default_factory=list)
    fits: dict[str, Fit] = field(default_factory=dict)
    excluded: list[Exclusion] = field(default_factory=list)


def route(
    catalog: Catalog, request: RouteRequest, stats: Stats | None = None
) -> Decision | Refusal:
    """Decide which models may serve `request`, best first, or refuse it.

    `stats` supplies latency and reliability; the catalog's priors when None.
    """
    override = None
    if request.strategy.strip():
        override = parse_strategy(request.strategy)
        if override is None:
            names = ", ".join(s.value for s in Strategy)
            return Refusal(
                RefusalCode.INVALID_REQUEST,
                f"unknown stepblend_strategy {_quote(request.strategy)}; use one of {names}",
                "stepblend_strategy",
            )
    cap = _parse_cap(request.max_cost_usd)
    if isinstance(cap, Refusal):
        return cap
    model = request.model.strip()
    if not model:
        return Refusal(
            RefusalCode.INVALID_REQUEST,
            "model is required: a strategy (lowest-cost, balanced, fastest, max-reliability) "
            "or a model id",
            "model",
        )

    body_strategy = parse_strategy(model)
    if body_strategy is not None:
        if request.needs_tools:
            return Refusal(
                RefusalCode.INVALID_REQUEST,
                f"tools need a specific model: set `model` to a model id such as gpt-4o "
                f"instead of the strategy {model!r}",
                "tools",
            )
        rows: Sequence[ModelEntry] = catalog.models
        order = override or body_strategy
        strategy_used = order.value
    else:
        rows = catalog.resolve(model)
        if not rows:
            return Refusal(
                RefusalCode.MODEL_NOT_FOUND,
                f"the model {_quote(model)} does not exist in StepBlend's catalog; "
                "GET /api/v1/models lists the models and strategies",
                "model",
            )
        # The strategy only orders this model's providers; the client named the model.
        order = override or DEFAULT_FORCED_ORDER
        strategy_used = FORCE_MODEL

    screened = _screen(rows, request, cap)
    if not screened.options:
        return _refusal(model, body_strategy is None, rows, request, cap, screened.excluded)
    ranked = rank(order, screened.options, stats if stats is not None else CatalogPriors())
    return Decision(
        strategy_used=strategy_used,
        candidates=tuple(_candidate(o.entry, screened.fits[o.entry.key]) for o in ranked),
        catalog_version=catalog.version,
        excluded=tuple(screened.excluded),
    )


def _quote(text: str) -> str:
    """A client's value for an error message, cut short: it is echoed back, not logged."""
    return repr(text if len(text) <= 80 else text[:80] + "...")


def _parse_cap(text: str) -> Decimal | Refusal | None:
    if not text.strip():
        return None
    try:
        cap = Decimal(text.strip())
    except InvalidOperation:
        cap = Decimal("NaN")
    # Bounded so that no client value can push Decimal arithmetic or formatting into
    # absurd exponents; both bounds are far outside any real request's cost.
    if not cap.is_finite() or not MIN_COST_CAP <= cap <= MAX_COST_CAP:
        return Refusal(
            RefusalCode.INVALID_REQUEST,
            f"stepblend_max_cost must be a number of USD between {MIN_COST_CAP:f} and "
            f"{MAX_COST_CAP:f} (e.g. 0.01), got {_quote(text)}",
            "stepblend_max_cost",
        )
    return cap


def _screen(rows: Iterable[ModelEntry], request: RouteRequest, cap: Decimal | None) -> _Screened:
    out = _Screened()
    for entry in rows:
        result = _examine(entry, request, cap)
        if isinstance(result, Exclusion):
            out.excluded.append(result)
            continue
        comparable = worst_case_cost(entry, request.prompt_tokens, _comparable_tokens(request))
        out.options.append(Option(entry, result.estimated_cost, comparable, result.estimate_tokens))
        out.fits[entry.key] = result
    return out


def _examine(entry: ModelEntry, request: RouteRequest, cap: Decimal | None) -> Fit | Exclusion:
    """The row's fit for the request, or the first check it fails."""
    reason, detail = _capability_gap(entry, request)
    if reason is not None:
        return Exclusion(entry.provider, entry.id, reason, detail)
    result = fit(entry, request.prompt_tokens, request.max_output_tokens, cap)
    if isinstance(result, Fit):
        return result
    return Exclusion(
        entry.provider, entry.id, Reason(result.reason), result.detail, result.cheapest_cost
    )


def _comparable_tokens(request: RouteRequest) -> int:
    """Output tokens every model is priced at for ranking: the client's max_tokens, else
    the uncapped estimate's assumption (a cap's per-model budgets are not comparable)."""
    return request.max_output_tokens or UNCAPPED_ESTIMATE_TOKENS


def _capability_gap(entry: ModelEntry, request: RouteRequest) -> tuple[Reason | None, str]:
    if entry.provider not in request.connected_providers:
        return Reason.PROVIDER_NOT_CONNECTED, f"no {entry.provider} key connected"
    caps = entry.capabilities
    needs = (
        (request.needs_tools and not caps.tools, Reason.NO_TOOLS),
        (request.needs_vision and not caps.vision, Reason.NO_VISION),
        (request.needs_json_schema and not caps.json_schema, Reason.NO_JSON_SCHEMA),
    )
    for lacking, reason in needs:
        if lacking:
            return reason, f"{entry.id} is not {_CAPABILITY_WORDS[reason][0]}"
    return None, ""


def _candidate(entry: ModelEntry, result: Fit) -> Candidate:
    return Candidate(
        provider=entry.provider,
        model=entry.id,
        upstream_model=entry.upstream_model,
        estimated_cost_usd=result.estimated_cost,
        input_price_per_mtok=entry.input_per_mtok,
        output_price_per_mtok=entry.output_per_mtok,
        output_budget=result.output_budget,
        param_renames=entry.param_renames,
        unsupported_params=entry.unsupported_params,
    )


def _refusal(
    model: str,
    forced: bool,
    rows: Sequence[ModelEntry],
    request: RouteRequest,
    cap: Decimal | None,
    excluded: list[Exclusion],
) -> Refusal:
    """The refusal that best explains why no row was eligible: the reason that stopped
    the rows that got furthest through the checks (a higher cap, a connected key...
    would have helped those first)."""
    reachable = [e for e in excluded if e.reason is not Reason.PROVIDER_NOT_CONNECTED]
    if not reachable:
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
            f"no eligible model: no connected provider; connect a key with {_KEYS_PATH} "
            f"(providers: {', '.join(providers)})",
            "model",
        )

    furthest = max(_STAGE[e.reason] for e in reachable)
    stopped = [e for e in reachable if _STAGE[e.reason] == furthest]
    stopped_rows = [
        r for r in rows if any(e.provider == r.provider and e.model == r.id for e in stopped)
    ]
    reason = stopped[0].reason
    if reason is Reason.OVER_COST_CAP:
        priced = [e for e in stopped if e.min_cost_usd is not None]
        best = min(priced, key=lambda e: e.min_cost_usd or 0, default=None)
        cheapest = (
            f": the cheapest worst case is ${best.min_cost_usd:f} ({best.model} on {best.provider})"
            if best is not None and best.min_cost_usd is not None
            else ""
        )
        return Refusal(
            RefusalCode.NO_MODEL_UNDER_COST_CAP,
            f"no model fits under stepblend_max_cost ${cap:f} with ~{request.prompt_tokens} "
            f"prompt tokens{cheapest}",
            "stepblend_max_cost",
        )
    if reason in _CAPABILITY_REASONS:
        wanted = [
            r
            for r, needed in (
                (Reason.NO_TOOLS, request.needs_tools),
                (Reason.NO_VISION, request.needs_vision),
                (Reason.NO_JSON_SCHEMA, request.needs_json_schema),
            )
            if needed
        ]
        words = " and ".join(_CAPABILITY_WORDS[r][0] for r in wanted)
        connected = ", ".join(sorted({e.provider for e in reachable}))
        why = (
            f"{model} is not {words} on any connected provider"
            if forced
            else f"no {words} model among the connected providers ({connected})"
        )
        return Refusal(
            RefusalCode.NO_ELIGIBLE_MODEL, f"no eligible model: {why}", _CAPABILITY_WORDS[reason][1]
        )
    if reason is Reason.OUTPUT_TOO_LONG:
        largest = max(stopped_rows, key=lambda r: r.max_output_tokens)
        return Refusal(
            RefusalCode.NO_ELIGIBLE_MODEL,
            f"no eligible model: max output too long: {request.max_output_tokens} tokens is more "
            f"than any connected model that could serve the request allows (largest: "
            f"{largest.max_output_tokens}, {largest.id})",
            "max_tokens",
        )
    largest = max(stopped_rows, key=lambda r: r.context_window)
    return Refusal(
        RefusalCode.NO_ELIGIBLE_MODEL,
        f"no eligible model: context too small: ~{request.prompt_tokens} prompt tokens plus the "
        f"output budget do not fit the context window of any connected model that could serve "
        f"the request (largest: {largest.context_window} tokens, {largest.id})",
        "messages",
    )
