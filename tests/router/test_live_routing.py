"""Strategies on synthetic statistics, and routing through live breakers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from services.common.events import AttemptRecord, UsageEvent
from services.router.breaker import BreakerConfig
from services.router.catalog import Catalog, ModelEntry
from services.router.routing import Decision, Reason, RouteRequest, route
from services.router.stats import StatsBook
from services.router.strategies import BALANCED_WEIGHTS
from tests.router.conftest import ALL_PROVIDERS


@dataclass(frozen=True)
class Synthetic:
    """Stats with some provider:model values replaced; priors for the rest."""

    ttft: Mapping[str, float] = field(default_factory=dict)
    throughput: Mapping[str, float] = field(default_factory=dict)
    success: Mapping[str, float] = field(default_factory=dict)

    def ttft_ms(self, entry: ModelEntry) -> float:
        return self.ttft.get(entry.key, entry.ttft_ms_prior)

    def tokens_per_s(self, entry: ModelEntry) -> float:
        return self.throughput.get(entry.key, entry.tokens_per_s_prior)

    def reliability(self, entry: ModelEntry) -> float:
        return self.success.get(entry.key, entry.reliability_prior)


def ranked(catalog: Catalog, strategy: str, stats: object = None, **features: object) -> Decision:
    features.setdefault("connected_providers", ALL_PROVIDERS)
    features.setdefault("prompt_tokens", 800)
    decision = route(catalog, RouteRequest(model=strategy, **features), stats)  # type: ignore[arg-type]
    assert isinstance(decision, Decision)
    return decision


def keys(decision: Decision) -> list[str]:
    return [f"{c.provider}:{c.model}" for c in decision.candidates]


# --- each strategy on synthetic statistics -------------------------------------------


def test_fastest_moves_away_from_a_model_whose_first_token_is_slow(catalog: Catalog) -> None:
    before = keys(ranked(catalog, "fastest"))
    top = before[0]
    after = keys(ranked(catalog, "fastest", Synthetic(ttft={top: 8000})))
    assert after[0] == before[1]
    assert after.index(top) > len(after) // 2


def test_fastest_weighs_throughput(catalog: Catalog) -> None:
    top = keys(ranked(catalog, "fastest"))[0]
    # A quick first token does not make up for 5 tokens/s over a typical answer.
    after = keys(ranked(catalog, "fastest", Synthetic(ttft={top: 10}, throughput={top: 5})))
    assert after.index(top) > 10


def test_fastest_scores_are_minus_the_expected_seconds(catalog: Catalog) -> None:
    decision = ranked(catalog, "fastest", max_output_tokens=100)
    first = decision.candidates[0]
    entry = catalog.resolve(f"{first.provider}:{first.model}")[0]
    expected = entry.ttft_ms_prior / 1000 + 100 / entry.tokens_per_s_prior
    assert first.score == pytest.approx(-expected)


def test_max_reliability_follows_the_smoothed_success_rate(catalog: Catalog) -> None:
    before = keys(ranked(catalog, "max-reliability"))
    top = before[0]
    after = ranked(catalog, "max-reliability", Synthetic(success={top: 0.9}))
    assert keys(after)[0] == before[1]
    assert keys(after)[-1] == top  # 90% is the worst of the catalog
    assert after.candidates[-1].score == pytest.approx(0.9)
    # And a provider that has been flawless beats the priors of everyone else.
    star = "mistral:mistral-small-latest"
    assert keys(ranked(catalog, "max-reliability", Synthetic(success={star: 1.0})))[0] == star


def test_balanced_loses_the_reliability_term_at_ten_percent_failures(catalog: Catalog) -> None:
    before = ranked(catalog, "balanced")
    top = before.candidates[0]
    key = f"{top.provider}:{top.model}"
    after = ranked(catalog, "balanced", Synthetic(success={key: 0.9}))
    moved = next(c for c in after.candidates if f"{c.provider}:{c.model}" == key)
    # 1 - 10 x 0.10 = 0: the whole 0.15 weight, less the prior's 0.9 of it.
    assert top.score - moved.score == pytest.approx(BALANCED_WEIGHTS["reliability"] * 0.9)
    assert keys(after)[0] != key


def test_lowest_cost_ignores_live_statistics(catalog: Catalog) -> None:
    before = keys(ranked(catalog, "lowest-cost"))
    top = before[0]
    stats = Synthetic(ttft={top: 60_000}, throughput={top: 1}, success={top: 0.2})
    assert keys(ranked(catalog, "lowest-cost", stats)) == before


# --- breakers -----------------------------------------------------------------------


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def failures(entry: ModelEntry, count: int) -> list[UsageEvent]:
    return [
        UsageEvent(
            request_id=f"fail-{entry.key}-{n}",
            account_id=f"acct-{n % 3}",  # several tenants' requests: an outage, not one account's key
            outcome="failed",
            admitted_at=0.0,
            attempts=[AttemptRecord(provider=entry.provider, model=entry.id, outcome="timeout")],
        )
        for n in range(count)
    ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(catalog: Catalog, clock: Clock) -> StatsBook:
    return StatsBook(catalog, breaker=BreakerConfig(cooldown_s=30), clock=clock)


def decide(catalog: Catalog, book: StatsBook, model: str, **features: object) -> Decision:
    features.setdefault("connected_providers", ALL_PROVIDERS)
    request = RouteRequest(model=model, **features)  # type: ignore[arg-type]
    decision = route(catalog, request, book, book)
    assert isinstance(decision, Decision), decision
    return decision


def test_an_open_circuit_is_excluded_and_explained(catalog: Catalog, book: StatsBook) -> None:
    cheapest = catalog.resolve("groq:llama-3.1-8b-instant")[0]
    for e in failures(cheapest, 5):
        book.observe(e)
    decision = decide(catalog, book, "lowest-cost", explain=True)
    assert cheapest.key not in keys(decision)
    (why,) = [e for e in decision.excluded if e.model == cheapest.id]
    assert why.reason is Reason.CIRCUIT_OPEN
    assert "5 consecutive failures" in why.detail


def test_a_half_open_model_gets_one_probe_then_waits_last(catalog: Catalog, book: StatsBook, clock: Clock) -> None:
    cheapest = catalog.resolve("groq:llama-3.1-8b-instant")[0]
    for e in failures(cheapest, 5):
        book.observe(e)
    clock.now = 31
    # The Routing API looks without taking the probe.
    assert keys(decide(catalog, book, "lowest-cost", explain=True))[0] == cheapest.key
    # The first real request carries the probe, in its normal place...
    assert keys(decide(catalog, book, "lowest-cost"))[0] == cheapest.key
    # ...the next ones keep the model as their last fallback until the probe reports.
    assert keys(decide(catalog, book, "lowest-cost"))[-1] == cheapest.key
    book.observe(
        UsageEvent(
            request_id="probe",
            account_id="acct",
            outcome="completed",
            admitted_at=0.0,
            attempts=[AttemptRecord(provider="groq", model=cheapest.id, outcome="ok")],
        )
    )
    assert keys(decide(catalog, book, "lowest-cost"))[0] == cheapest.key


def test_when_every_way_is_open_the_open_ones_are_tried(catalog: Catalog, book: StatsBook) -> None:
    (chat,) = catalog.resolve("deepseek-chat")
    for e in failures(chat, 5):
        book.observe(e)
    # A named model with one provider: refusing would make its outage certain.
    assert keys(decide(catalog, book, "deepseek-chat")) == [chat.key]
    # A strategy with one connected provider whose models are all open: the same.
    (reasoner,) = catalog.resolve("deepseek-reasoner")
    for e in failures(reasoner, 5):
        book.observe(e)
    only = decide(catalog, book, "fastest", connected_providers=frozenset({"deepseek"}))
    assert set(keys(only)) == {chat.key, reasoner.key}


def test_a_named_model_falls_back_to_its_other_hosts(catalog: Catalog, book: StatsBook) -> None:
    before = keys(decide(catalog, book, "gpt-oss-120b"))
    assert len(before) == len(catalog.resolve("gpt-oss-120b")) > 2
    (first,) = catalog.resolve(before[0])
    for e in failures(first, 5):
        book.observe(e)
    decision = decide(catalog, book, "gpt-oss-120b", explain=True)
    # The host whose circuit opened is left out; every other host still serves it.
    assert keys(decision) == before[1:]
    reasons = {(e.provider, e.reason) for e in decision.excluded if e.model == "gpt-oss-120b"}
    assert reasons == {(first.provider, Reason.CIRCUIT_OPEN)}
