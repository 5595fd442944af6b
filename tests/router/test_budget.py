from __future__ import annotations

from decimal import Decimal

from services.router.budget import (
    MIN_OUTPUT_BUDGET,
    UNCAPPED_ESTIMATE_TOKENS,
    Fit,
    Misfit,
    fit,
    worst_case_cost,
)
from services.router.catalog import Catalog, ModelEntry


def one(catalog: Catalog, name: str) -> ModelEntry:
    (entry,) = catalog.resolve(name)
    return entry


def test_worst_case_cost_is_exact(catalog: Catalog) -> None:
    gpt4o = one(catalog, "openai:gpt-4o")  # 2.50 in, 10.00 out per million
    assert worst_case_cost(gpt4o, 1000, 500) == Decimal("0.0075")


def test_requested_budget_is_kept(catalog: Catalog) -> None:
    result = fit(one(catalog, "openai:gpt-4o"), 1000, 500, None)
    assert result == Fit(500, Decimal("0.0075"), 500)


def test_uncapped_without_max_leaves_budget_to_provider(catalog: Catalog) -> None:
    result = fit(one(catalog, "openai:gpt-4o"), 1000, 0, None)
    assert isinstance(result, Fit)
    assert result.output_budget == 0
    assert result.estimate_tokens == UNCAPPED_ESTIMATE_TOKENS
    assert result.estimated_cost == worst_case_cost(one(catalog, "openai:gpt-4o"), 1000, UNCAPPED_ESTIMATE_TOKENS)


def test_cap_sets_the_largest_budget_that_fits(catalog: Catalog) -> None:
    gpt4o = one(catalog, "openai:gpt-4o")
    # $0.01 - 1000 x 2.50/1M = $0.0075 left, at $10/M: 750 tokens exactly.
    result = fit(gpt4o, 1000, 0, Decimal("0.01"))
    assert result == Fit(750, Decimal("0.01"), 750)


def test_cap_budget_is_bounded_by_model_max_output(catalog: Catalog) -> None:
    result = fit(one(catalog, "openai:gpt-4o"), 10, 0, Decimal("100"))
    assert isinstance(result, Fit)
    assert result.output_budget == 16384


def test_cap_budget_is_bounded_by_context_room(catalog: Catalog) -> None:
    llama = one(catalog, "llama-3.1-8b-instant")  # 131072 context and output
    result = fit(llama, 131072 - 1000, 0, Decimal("100"))
    assert isinstance(result, Fit)
    assert result.output_budget == 1000


def test_budget_below_minimum_is_over_cap(catalog: Catalog) -> None:
    gpt4o = one(catalog, "openai:gpt-4o")
    # Prompt costs 0.0025; 15 output tokens would be 0.00015 more.
    result = fit(gpt4o, 1000, 0, Decimal("0.0025") + Decimal("0.00015"))
    assert isinstance(result, Misfit)
    assert result.reason == "over_cap"
    assert result.cheapest_cost == worst_case_cost(gpt4o, 1000, MIN_OUTPUT_BUDGET)
    ok = fit(gpt4o, 1000, 0, Decimal("0.0025") + Decimal("0.00016"))
    assert ok == Fit(MIN_OUTPUT_BUDGET, Decimal("0.00266"), MIN_OUTPUT_BUDGET)


def test_prompt_alone_over_cap(catalog: Catalog) -> None:
    # 500k prompt tokens at $2/M is $1 before any output.
    result = fit(one(catalog, "openai:gpt-4.1"), 500_000, 0, Decimal("0.5"))
    assert isinstance(result, Misfit) and result.reason == "over_cap"


def test_requested_budget_over_model_max(catalog: Catalog) -> None:
    result = fit(one(catalog, "openai:gpt-4o"), 10, 16385, None)
    assert isinstance(result, Misfit) and result.reason == "output_too_large"


def test_requested_budget_over_context(catalog: Catalog) -> None:
    result = fit(one(catalog, "openai:gpt-4o"), 120_000, 16_000, None)
    assert isinstance(result, Misfit) and result.reason == "context_too_small"


def test_requested_budget_over_cap(catalog: Catalog) -> None:
    result = fit(one(catalog, "openai:gpt-4o"), 1000, 1000, Decimal("0.01"))
    assert isinstance(result, Misfit) and result.reason == "over_cap"
    assert result.cheapest_cost == Decimal("0.0125")


def test_prompt_that_fills_the_context_does_not_fit(catalog: Catalog) -> None:
    result = fit(one(catalog, "openai:gpt-4o"), 128_000 - MIN_OUTPUT_BUDGET + 1, 0, None)
    assert isinstance(result, Misfit) and result.reason == "context_too_small"


def test_a_generous_cap_reports_the_estimate_not_the_cap(catalog: Catalog) -> None:
    gpt4o = one(catalog, "openai:gpt-4o")
    capped = fit(gpt4o, 1000, 0, Decimal("5"))
    uncapped = fit(gpt4o, 1000, 0, None)
    assert isinstance(capped, Fit) and isinstance(uncapped, Fit)
    assert capped.output_budget > uncapped.output_budget  # the cap allows a larger answer...
    assert capped.estimated_cost == uncapped.estimated_cost < Decimal("5")  # ...the estimate is the same
