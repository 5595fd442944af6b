from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from services.common.vocab import parse_strategy
from services.router.catalog import Catalog, ModelEntry
from services.router.routing import Decision, RouteRequest, route
from services.router.strategies import (
    STRATEGY_NAMES,
    CatalogPriors,
    Option,
    Strategy,
    balanced_scores,
    rank,
)
from tests.router.conftest import ALL_PROVIDERS


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lowest-cost", Strategy.LOWEST_COST),
        ("lowest_cost", Strategy.LOWEST_COST),
        ("max-reliability", Strategy.MAX_RELIABILITY),
        ("max_reliability", Strategy.MAX_RELIABILITY),
        ("balanced", Strategy.BALANCED),
        ("fastest", Strategy.FASTEST),
        (" Fastest ", Strategy.FASTEST),
        ("cheapest", None),
        ("gpt-4o", None),
        ("", None),
    ],
)
def test_parse_strategy(name: str, expected: Strategy | None) -> None:
    assert parse_strategy(name) is expected


def test_strategy_names_cover_both_spellings() -> None:
    assert {
        "lowest-cost",
        "lowest_cost",
        "max-reliability",
        "max_reliability",
        "balanced",
        "fastest",
    } <= (STRATEGY_NAMES)


def ranked_ids(catalog: Catalog, strategy: str, **features: object) -> list[str]:
    request = RouteRequest(model=strategy, connected_providers=ALL_PROVIDERS, **features)  # type: ignore[arg-type]
    decision = route(catalog, request)
    assert isinstance(decision, Decision)
    return [c.model for c in decision.candidates]


def test_lowest_cost_orders_by_cost_then_quality(catalog: Catalog) -> None:
    decision = route(
        catalog,
        RouteRequest(model="lowest-cost", prompt_tokens=1000, connected_providers=ALL_PROVIDERS),
    )
    assert isinstance(decision, Decision)
    ids = [c.model for c in decision.candidates]
    costs = [c.estimated_cost_usd for c in decision.candidates]
    assert ids[0] == "llama-3.1-8b-instant"
    assert costs == sorted(costs)
    # deepseek-chat and deepseek-reasoner cost the same: the better model goes first.
    assert ids.index("deepseek-reasoner") == ids.index("deepseek-chat") - 1
    assert ids[-1] == "claude-opus-4-1-20250805"
    scores = [c.score for c in decision.candidates]
    assert scores == sorted(scores, reverse=True)


def test_lowest_cost_under_a_cap_ranks_by_comparable_cost(catalog: Catalog) -> None:
    # Under a cap every budget is stretched to the cap, so worst cases are all ~equal;
    # the order must still be by price.
    uncapped = ranked_ids(catalog, "lowest_cost", prompt_tokens=1000)
    capped = ranked_ids(catalog, "lowest_cost", prompt_tokens=1000, max_cost_usd="0.05")
    assert capped == uncapped


def test_fastest_prefers_cerebras_and_groq_and_puts_reasoning_models_last(catalog: Catalog) -> None:
    request = RouteRequest(model="fastest", connected_providers=ALL_PROVIDERS, prompt_tokens=500)
    decision = route(catalog, request)
    assert isinstance(decision, Decision)
    assert [(c.provider, c.model) for c in decision.candidates[:3]] == [
        ("cerebras", "gpt-oss-120b"),
        ("groq", "gpt-oss-20b"),
        ("groq", "llama-3.1-8b-instant"),
    ]
    ids = [c.model for c in decision.candidates]
    rows = {e.id: e for e in catalog.models if e.provider != "cerebras"}
    # Models that think for seconds before their first token sit at the bottom (only
    # the slowest streamers, e.g. deepseek-chat at ~30 tokens/s, keep them company).
    thinkers = [i for i, name in enumerate(ids) if rows[name].ttft_ms_prior >= 5000]
    assert min(thinkers) >= len(ids) - len(thinkers) - 3
    assert ids[-1] == "deepseek-reasoner"


def test_max_reliability_prefers_openai_then_cheapest(catalog: Catalog) -> None:
    ids = ranked_ids(catalog, "max-reliability", prompt_tokens=500)
    assert ids[0] == "gpt-5-nano"
    openai = [e.id for e in catalog.models if e.provider == "openai"]
    assert set(ids[: len(openai)]) == set(openai)
    assert set(ids[-2:]) == {"deepseek-chat", "deepseek-reasoner"}


def test_balanced_picks_a_mid_priced_capable_model(catalog: Catalog) -> None:
    ids = ranked_ids(catalog, "balanced", prompt_tokens=1000)
    rows = {e.id: e for e in catalog.models}
    first = rows[ids[0]]
    # Neither the tiniest, the dearest nor a slow thinker: capable, cheap enough, quick.
    assert ids[0] not in {"llama-3.1-8b-instant", "claude-opus-4-1-20250805", "deepseek-reasoner"}
    assert first.quality >= 0.75
    assert first.input_per_mtok < 1
    assert first.ttft_ms_prior < 1000


def options(catalog: Catalog, *names: str) -> list[Option]:
    out = []
    for name in names:
        (entry,) = catalog.resolve(name)
        cost = (1000 * entry.input_per_mtok + 1000 * entry.output_per_mtok) / Decimal(10**6)
        out.append(Option(entry, cost, cost, 1000))
    return out


def test_balanced_scores_are_in_range_and_weighted(catalog: Catalog) -> None:
    opts = options(catalog, "openai:gpt-4o", "gpt-4.1-mini", "llama-3.1-8b-instant", "deepseek-reasoner")
    scores = balanced_scores(opts, CatalogPriors())
    assert all(0.0 <= s <= 1.0 for s in scores)
    # A single option scores full marks on every relative term.
    (alone,) = balanced_scores(opts[:1], CatalogPriors())
    assert alone == pytest.approx(0.30 + 0.35 + 0.20 + 0.15 * (1 - 10 * 0.005))


@dataclass(frozen=True)
class FlakyOpenAI:
    """Stats as live statistics will provide them: OpenAI has been failing."""

    def ttft_ms(self, entry: ModelEntry) -> float:
        return entry.ttft_ms_prior

    def tokens_per_s(self, entry: ModelEntry) -> float:
        return entry.tokens_per_s_prior

    def reliability(self, entry: ModelEntry) -> float:
        return 0.5 if entry.provider == "openai" else entry.reliability_prior


def test_stats_are_pluggable(catalog: Catalog) -> None:
    opts = options(catalog, "gpt-4.1-nano", "groq:llama-3.3-70b")
    by_priors = rank(Strategy.MAX_RELIABILITY, opts, CatalogPriors())
    by_live = rank(Strategy.MAX_RELIABILITY, opts, FlakyOpenAI())
    assert by_priors[0].option.entry.id == "gpt-4.1-nano"
    assert by_live[0].option.entry.key == "groq:llama-3.3-70b"
    assert by_live[0].score == pytest.approx(0.99) and by_live[1].score == pytest.approx(0.5)
    request = RouteRequest(model="max_reliability", connected_providers=ALL_PROVIDERS)
    decision = route(catalog, request, FlakyOpenAI())
    assert isinstance(decision, Decision)
    assert decision.candidates[0].provider == "groq"


def test_rank_is_deterministic_on_ties(catalog: Catalog) -> None:
    opts = options(catalog, "o4-mini", "o3-mini")
    for strategy in Strategy:
        first = [r.option.entry.id for r in rank(strategy, opts, CatalogPriors())]
        again = [r.option.entry.id for r in rank(strategy, list(reversed(opts)), CatalogPriors())]
        assert first == again
