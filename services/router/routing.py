"""The routing decision: from a request's features to ranked candidates, or a refusal.

`route(catalog, request, stats, circuits)` returns a `Decision` (every eligible
model/provider, best first: the first is tried, the rest are the fallbacks in order)
or a `Refusal`. It does no I/O; the only state it touches is a breaker's half-open
probe, which a real decision claims (see `breaker`). Benchmarks call it directly.

Which rows are considered: for a strategy (`lowest-cost`, `balanced`...) every catalog
row; for a named model (force model) the rows that name resolves to, so a fallback may
change provider, never model; `provider:model` pins one row.

Each row is priced with its own prompt estimate: the gateway's o200k_base count
through the row's tokenizer margin (`catalog.Tokenizer.estimate`).

A row is eligible when, in this order (the first failing check is its exclusion
reason, `decision.Reason`, reported by the Routing API):
  not_connected                 the account has no key for its provider;
  lacks_tools / lacks_vision / lacks_json_schema   it lacks a capability the request needs;
  output_too_large / context_too_small / over_cap   see `budget.fit`;
  circuit_open                  its provider:model breaker is open.
With `explain`, every other catalog row is reported too: `not_requested` when the
client named a model.

Breakers (see `breaker`): a half-open row carrying the probe ranks where its strategy
puts it; one whose probe is out ranks after every other candidate. When every row
that passed the other checks is circuit open, they are all kept, ranked: a breaker
exists to route around a failing model, and with no way around, trying it beats a
certain refusal (its outcomes then feed the breaker like any probe's).

Refusals (`code`, and the HTTP status the gateway maps it to):
  invalid_request (400)           unknown stepblend_strategy, bad stepblend_max_cost,
                                  empty model, tools with a strategy;
  model_not_found (404)           no catalog row has that name;
  provider_not_connected (409)    a named model none of whose providers is connected;
  no_model_under_cost_cap (400)   some row passed every check but the cost cap;
  no_eligible_model (400)         otherwise; the message says which check stopped the
                                  rows that got furthest (see `refusals`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Protocol

from services.common.vocab import Strategy, parse_strategy
from services.router.breaker import ALLOWED, Admission, Admit
from services.router.budget import UNCAPPED_ESTIMATE_TOKENS, Fit, fit, worst_case_cost
from services.router.catalog import Catalog, ModelEntry
from services.router.decision import (
    Candidate,
    Decision,
    Exclusion,
    Reason,
    Refusal,
    RefusalCode,
    RouteRequest,
)
from services.router.refusals import CAPABILITY_WORDS, explain_refusal, listed, not_allowed
from services.router.strategies import (
    FORCE_MODEL,
    CatalogPriors,
    Option,
    Ranked,
    Stats,
    rank,
)

__all__ = [
    "DEFAULT_FORCED_ORDER",
    "MAX_COST_CAP",
    "MIN_COST_CAP",
    "Candidate",
    "Circuits",
    "Decision",
    "Exclusion",
    "Reason",
    "Refusal",
    "RefusalCode",
    "RouteRequest",
    "route",
]

#: A named model's providers are ordered by this unless stepblend_strategy says otherwise (SPEC §11).
DEFAULT_FORCED_ORDER = Strategy.BALANCED

#: The accepted range of stepblend_max_cost, USD.
MIN_COST_CAP = Decimal("0.000000000001")
MAX_COST_CAP = Decimal("1000000")

_BUDGET_REASONS = {
    "output_too_large": Reason.OUTPUT_TOO_LARGE,
    "context_too_small": Reason.CONTEXT_TOO_SMALL,
    "over_cap": Reason.OVER_CAP,
}


class Circuits(Protocol):
    """Whether a decision may use a model, given its breaker (`stats.StatsBook`)."""

    def admission(self, entry: ModelEntry, *, take_probe: bool) -> Admission:
        """ALLOW, PROBE, LAST or DENY for `entry` now; `take_probe` claims a free probe."""
        ...


@dataclass(frozen=True)
class _Eligible:
    option: Option
    fit: Fit
    prompt_tokens: int
    admission: Admission


@dataclass(frozen=True)
class _Screened:
    eligible: list[_Eligible] = field(default_factory=list)
    #: Passed every check but the breaker.
    denied: list[_Eligible] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)


def route(
    catalog: Catalog,
    request: RouteRequest,
    stats: Stats | None = None,
    circuits: Circuits | None = None,
) -> Decision | Refusal:
    """Decide which models may serve `request`, best first, or refuse it.

    `stats` supplies latency and reliability (the catalog's priors when None);
    `circuits` the breakers (every model allowed when None).
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
            "model is required: a strategy (lowest-cost, balanced, fastest, max-reliability) or a model id",
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
        if not rows and catalog.resolve_embedding(model):
            return Refusal(
                RefusalCode.INVALID_REQUEST,
                f"{_quote(model)} is an embedding model: send it to POST /api/v1/embeddings",
                "model",
            )
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
    if request.allowed_models:
        rows = [entry for entry in rows if listed(entry, request.allowed_models)]
        if not rows and body_strategy is None:
            return not_allowed(model, request.allowed_models)
        if not rows:
            return Refusal(
                RefusalCode.NO_ELIGIBLE_MODEL,
                f"no model that this API key allows can serve {_quote(model)}; "
                f"it allows {', '.join(sorted(request.allowed_models))}",
                "model",
            )

    screened = _screen(rows, request, cap, circuits)
    eligible = screened.eligible
    excluded = screened.excluded
    if screened.denied:
        if eligible:
            excluded.extend(_circuit_exclusion(d) for d in screened.denied)
        else:
            eligible = screened.denied
    if not eligible:
        return explain_refusal(model, body_strategy is None, rows, request, cap, excluded)

    ranked = rank(order, [e.option for e in eligible], stats or CatalogPriors())
    by_key = {e.option.entry.key: e for e in eligible}
    # Stable: a half-open row whose probe is out keeps its order among the last ones.
    ranked.sort(key=lambda r: by_key[r.option.entry.key].admission.admit is Admit.LAST)
    if request.explain and body_strategy is None:
        excluded.extend(_not_requested(catalog, rows, model))
    return Decision(
        strategy_used=strategy_used,
        candidates=tuple(_candidate(r, by_key[r.option.entry.key]) for r in ranked),
        catalog_version=catalog.version,
        excluded=tuple(excluded),
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


def _screen(
    rows: Sequence[ModelEntry],
    request: RouteRequest,
    cap: Decimal | None,
    circuits: Circuits | None,
) -> _Screened:
    out = _Screened()
    comparable_tokens = _comparable_tokens(request)
    for entry in rows:
        gap = _capability_gap(entry, request)
        if gap is not None:
            out.excluded.append(gap)
            continue
        prompt = entry.tokenizer.estimate(request.prompt_tokens, request.needs_tools)
        result = fit(entry, prompt, request.max_output_tokens, cap)
        if not isinstance(result, Fit):
            reason = _BUDGET_REASONS[result.reason]
            out.excluded.append(Exclusion(entry.provider, entry.id, reason, result.detail, result.cheapest_cost))
            continue
        # Asked last, so that a probe is only claimed by a request the row can serve.
        admission = circuits.admission(entry, take_probe=not request.explain) if circuits else ALLOWED
        comparable = worst_case_cost(entry, prompt, comparable_tokens)
        option = Option(entry, result.estimated_cost, comparable, result.estimate_tokens)
        eligible = _Eligible(option, result, prompt, admission)
        (out.denied if admission.admit is Admit.DENY else out.eligible).append(eligible)
    return out


def _comparable_tokens(request: RouteRequest) -> int:
    """Output tokens every model is priced at for ranking: the client's max_tokens, else
    the uncapped estimate's assumption (a cap's per-model budgets are not comparable)."""
    return request.max_output_tokens or UNCAPPED_ESTIMATE_TOKENS


def _capability_gap(entry: ModelEntry, request: RouteRequest) -> Exclusion | None:
    if entry.provider not in request.connected_providers:
        return Exclusion(entry.provider, entry.id, Reason.NOT_CONNECTED, f"no {entry.provider} key connected")
    caps = entry.capabilities
    needs = (
        (request.needs_tools and not caps.tools, Reason.LACKS_TOOLS),
        (request.needs_vision and not caps.vision, Reason.LACKS_VISION),
        (request.needs_json_schema and not caps.json_schema, Reason.LACKS_JSON_SCHEMA),
    )
    for lacking, reason in needs:
        if lacking:
            detail = f"{entry.id} is not {CAPABILITY_WORDS[reason][0]}"
            return Exclusion(entry.provider, entry.id, reason, detail)
    refused = sorted(request.params.intersection(entry.unsupported_params))
    if refused:
        detail = f"{entry.id} does not take {', '.join(refused)}"
        return Exclusion(entry.provider, entry.id, Reason.UNSUPPORTED_PARAM, detail)
    return None


def _circuit_exclusion(denied: _Eligible) -> Exclusion:
    entry = denied.option.entry
    return Exclusion(entry.provider, entry.id, Reason.CIRCUIT_OPEN, denied.admission.detail)


def _not_requested(catalog: Catalog, rows: Sequence[ModelEntry], model: str) -> list[Exclusion]:
    named = {entry.key for entry in rows}
    return [
        Exclusion(e.provider, e.id, Reason.NOT_REQUESTED, f"the request named {_quote(model)}")
        for e in catalog.models
        if e.key not in named
    ]


def _candidate(ranked: Ranked, eligible: _Eligible) -> Candidate:
    entry = ranked.option.entry
    prompt = eligible.prompt_tokens
    worst_output = eligible.fit.output_budget or min(entry.max_output_tokens, entry.context_window - prompt)
    return Candidate(
        provider=entry.provider,
        model=entry.id,
        upstream_model=entry.upstream_model,
        estimated_cost_usd=eligible.fit.estimated_cost,
        input_price_per_mtok=entry.input_per_mtok,
        output_price_per_mtok=entry.output_per_mtok,
        output_budget=eligible.fit.output_budget,
        param_renames=entry.param_renames,
        unsupported_params=entry.unsupported_params,
        score=ranked.score,
        cached_input_price_per_mtok=entry.cached_input_per_mtok,
        prompt_tokens=prompt,
        worst_cost_usd=worst_case_cost(entry, prompt, worst_output),
    )
