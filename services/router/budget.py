"""What one request costs on one model, and the output budget it may be given.

`prompt_tokens` here is already the row's own estimate (the gateway's o200k_base count
through the row's tokenizer margin, see `catalog.Tokenizer`), so the worst case errs
high where the provider's tokenizer is not public.

Worst-case cost = prompt_tokens x input price + output budget x output price, prices
per million tokens, in Decimal (a request can cost a millionth of a cent). Cached-input
prices are ignored on purpose: the worst case is a cache miss.

The output budget is what the executor sends upstream as max_tokens:

- the request set one: that budget. A model whose max_output_tokens is lower cannot
  take the request (`output_too_large`); so cannot one whose context window cannot hold
  prompt + budget (`context_too_small`); with a cap, neither can one whose worst case
  exceeds it (`over_cap`).
- the request set none, with a cap: the largest budget that fits every limit, i.e.
  min(model max_output_tokens, context window - prompt, floor((cap - prompt cost) /
  output price)). Below MIN_OUTPUT_BUDGET tokens the answer would be cut off before it
  says anything useful, so the model is not eligible instead.
- the request set none and there is no cap: 0, which leaves the limit to the provider.
  The cost estimate (used for ranking and reported to the client) then assumes
  min(model max_output_tokens, UNCAPPED_ESTIMATE_TOKENS, context room) output tokens:
  a typical long answer, not a true worst case, which nothing depends on without a cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Literal

from services.router.catalog import ModelEntry

#: The smallest output budget StepBlend sets under a cost cap.
MIN_OUTPUT_BUDGET = 16
#: Output tokens assumed for the estimate of an uncapped request with no max_tokens.
UNCAPPED_ESTIMATE_TOKENS = 4096

_PER_MTOK = Decimal(1_000_000)

Shortfall = Literal["output_too_large", "context_too_small", "over_cap"]


@dataclass(frozen=True)
class Fit:
    """The model can take the request."""

    #: Sent upstream as the completion limit; 0 leaves it to the provider.
    output_budget: int
    #: Worst case in USD (see the module docstring for the uncapped case).
    estimated_cost: Decimal
    #: Output tokens the estimate assumed.
    estimate_tokens: int


@dataclass(frozen=True)
class Misfit:
    """The model cannot take the request, and why."""

    reason: Shortfall
    detail: str
    #: For over_cap: the cheapest worst case this model could offer.
    cheapest_cost: Decimal | None = None


def worst_case_cost(entry: ModelEntry, prompt_tokens: int, output_tokens: int) -> Decimal:
    """USD for `prompt_tokens` in and `output_tokens` out at the model's list prices."""
    return (prompt_tokens * entry.input_per_mtok + output_tokens * entry.output_per_mtok) / _PER_MTOK


def fit(entry: ModelEntry, prompt_tokens: int, max_output_tokens: int, cap: Decimal | None) -> Fit | Misfit:
    """Whether `entry` can take a request, with its output budget and cost estimate."""
    room = entry.context_window - prompt_tokens
    if max_output_tokens:
        return _fit_requested(entry, prompt_tokens, max_output_tokens, room, cap)
    if room < MIN_OUTPUT_BUDGET:
        return Misfit(
            "context_too_small",
            f"{entry.id}: ~{prompt_tokens} prompt tokens leave less than {MIN_OUTPUT_BUDGET} "
            f"of its {entry.context_window}-token context",
        )
    if cap is None:
        tokens = min(entry.max_output_tokens, UNCAPPED_ESTIMATE_TOKENS, room)
        return Fit(0, worst_case_cost(entry, prompt_tokens, tokens), tokens)
    return _fit_under_cap(entry, prompt_tokens, min(entry.max_output_tokens, room), cap)


def _fit_requested(entry: ModelEntry, prompt_tokens: int, budget: int, room: int, cap: Decimal | None) -> Fit | Misfit:
    if budget > entry.max_output_tokens:
        return Misfit(
            "output_too_large",
            f"{entry.id}: max output {entry.max_output_tokens} tokens < the requested {budget}",
        )
    if budget > room:
        return Misfit(
            "context_too_small",
            f"{entry.id}: ~{prompt_tokens} prompt + {budget} output tokens exceed its "
            f"{entry.context_window}-token context",
        )
    cost = worst_case_cost(entry, prompt_tokens, budget)
    if cap is not None and cost > cap:
        return Misfit("over_cap", f"{entry.id}: worst case ${cost:f} > cap ${cap:f}", cost)
    return Fit(budget, cost, budget)


def _fit_under_cap(entry: ModelEntry, prompt_tokens: int, ceiling: int, cap: Decimal) -> Fit | Misfit:
    cheapest = worst_case_cost(entry, prompt_tokens, MIN_OUTPUT_BUDGET)
    over = Misfit(
        "over_cap",
        f"{entry.id}: ~{prompt_tokens} prompt tokens + {MIN_OUTPUT_BUDGET} output tokens cost "
        f"${cheapest:f} > cap ${cap:f}",
        cheapest,
    )
    remaining = cap - worst_case_cost(entry, prompt_tokens, 0)
    if remaining < 0:
        return over
    if entry.output_per_mtok == 0:
        budget = ceiling
    else:
        affordable = (remaining * _PER_MTOK / entry.output_per_mtok).to_integral_value(ROUND_FLOOR)
        budget = min(ceiling, int(affordable))
    # The division above is rounded to the context's 28 digits and may land a token
    # high; exact multiplication decides, so the cap is never exceeded.
    while budget > 0 and worst_case_cost(entry, prompt_tokens, budget) > cap:
        budget -= 1
    if budget < MIN_OUTPUT_BUDGET:
        if ceiling < MIN_OUTPUT_BUDGET:
            return Misfit(
                "output_too_large",
                f"{entry.id}: max output {entry.max_output_tokens} tokens < {MIN_OUTPUT_BUDGET}",
            )
        return over
    # The budget is what the cap allows, not what an answer is expected to use: the
    # estimate is the same as without a cap (the cap itself bounds the worst case).
    return Fit(budget, worst_case_cost(entry, prompt_tokens, min(budget, UNCAPPED_ESTIMATE_TOKENS)), budget)
