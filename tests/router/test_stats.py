"""Folding usage events into live statistics, on a hand-driven clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from services.common.events import AttemptRecord, UsageEvent
from services.router.breaker import Admit, BreakerConfig, CircuitState
from services.router.catalog import Catalog, ModelEntry
from services.router.stats import DecayedMean, StatsBook, StatsConfig


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Book:
    catalog: Catalog
    clock: Clock = field(default_factory=Clock)
    config: StatsConfig = field(default_factory=StatsConfig)

    def __post_init__(self) -> None:
        self.book = StatsBook(self.catalog, self.config, BreakerConfig(), self.clock)


def one(catalog: Catalog, name: str) -> ModelEntry:
    return catalog.resolve(name)[0]


def attempt(entry: ModelEntry, outcome: str = "ok", **fields: int) -> AttemptRecord:
    return AttemptRecord(provider=entry.provider, model=entry.id, outcome=outcome, **fields)


def event(
    attempts: Sequence[AttemptRecord],
    *,
    stream: bool = True,
    latency_ms: int = 0,
    completion_tokens: int = 0,
    n: int = 0,
) -> UsageEvent:
    served = next((a for a in reversed(attempts) if a.outcome == "ok"), None)
    return UsageEvent(
        request_id=f"req-{n}",
        account_id=f"acct-{n}",  # each request another tenant's (a breaker needs failures from several)
        outcome="completed" if served else "failed",
        admitted_at=0.0,
        routed_model=served.model if served else "",
        provider=served.provider if served else "",
        stream=stream,
        completion_tokens=completion_tokens,
        latency_ms=latency_ms,
        provider_answered=served is not None,
        attempts=list(attempts),
    )


@pytest.fixture
def books(catalog: Catalog) -> Book:
    return Book(catalog)


def test_no_data_means_priors(books: Book) -> None:
    gpt4o = one(books.catalog, "gpt-4o")
    assert books.book.ttft_ms(gpt4o) == gpt4o.ttft_ms_prior
    assert books.book.tokens_per_s(gpt4o) == gpt4o.tokens_per_s_prior
    assert books.book.reliability(gpt4o) == gpt4o.reliability_prior
    snapshot = books.book.snapshot(gpt4o)
    assert snapshot.samples == 0 and snapshot.circuit is CircuitState.CLOSED


def test_a_streamed_success_folds_ttft_latency_and_throughput(books: Book) -> None:
    gpt4o = one(books.catalog, "gpt-4o")  # priors: 450 ms, 90 tokens/s
    # 2000 ms in all, first token at 1000 ms, 500 tokens in the remaining second.
    folded = books.book.observe(
        event([attempt(gpt4o, ttft_ms=1000, latency_ms=1000)], latency_ms=2000, completion_tokens=500)
    )
    assert folded == 1
    # One sample against two pseudo-samples of prior: (2 x prior + x) / 3.
    assert books.book.ttft_ms(gpt4o) == pytest.approx((2 * 450 + 1000) / 3)
    assert books.book.tokens_per_s(gpt4o) == pytest.approx((2 * 90 + 500) / 3)
    assert books.book.reliability(gpt4o) == pytest.approx((2 * 0.995 + 1) / 3)
    assert books.book.snapshot(gpt4o).latency_ms > 0


def test_estimates_converge_on_what_is_observed(books: Book) -> None:
    gpt4o = one(books.catalog, "gpt-4o")
    for n in range(60):
        books.book.observe(event([attempt(gpt4o, ttft_ms=3000)], latency_ms=4000, completion_tokens=100, n=n))
    # Memory ~10 samples against 2 of prior: mostly live, the prior still a fifth.
    assert books.book.ttft_ms(gpt4o) == pytest.approx((2 * 450 + 10 * 3000) / 12, rel=0.01)
    assert books.book.tokens_per_s(gpt4o) == pytest.approx((2 * 90 + 10 * 100) / 12, rel=0.01)


def test_failures_lower_the_success_rate_and_open_the_circuit(books: Book) -> None:
    flaky = one(books.catalog, "gpt-4o-mini")
    backup = one(books.catalog, "gpt-4.1-nano")
    for n in range(5):
        books.book.observe(
            event(
                [attempt(flaky, "provider_error", status=502, latency_ms=300), attempt(backup)],
                latency_ms=900,
                completion_tokens=50,
                n=n,
            )
        )
    assert books.book.reliability(flaky) < 0.35  # 2 x 0.995 / (2 + 4.1)
    assert books.book.reliability(backup) > 0.99
    assert books.book.snapshot(flaky).circuit is CircuitState.OPEN
    assert books.book.admission(flaky, take_probe=True).admit is Admit.DENY
    # After the cooldown a probe goes through; its success closes the circuit.
    books.clock.now += 30
    assert books.book.admission(flaky, take_probe=True).admit is Admit.PROBE
    assert books.book.admission(flaky, take_probe=True).admit is Admit.LAST
    books.book.observe(event([attempt(flaky, ttft_ms=400)], latency_ms=800, completion_tokens=40))
    assert books.book.admission(flaky, take_probe=True).admit is Admit.ALLOW


# (An outcome no one knows is not skipped: the event is invalid, tests/common/test_vocab.py.)
@pytest.mark.parametrize("outcome", ["bad_request", "provider_not_connected", "provider_key_invalid"])
def test_outcomes_that_are_not_the_providers_fault_are_skipped(books: Book, outcome: str) -> None:
    gpt4o = one(books.catalog, "gpt-4o")
    for n in range(10):
        assert books.book.observe(event([attempt(gpt4o, outcome, status=400)], n=n)) == 0
    assert books.book.reliability(gpt4o) == gpt4o.reliability_prior
    assert books.book.snapshot(gpt4o).circuit is CircuitState.CLOSED


@pytest.mark.parametrize("outcome", ["timeout", "connect_error", "rate_limited", "provider_error"])
def test_provider_failures_count(books: Book, outcome: str) -> None:
    gpt4o = one(books.catalog, "gpt-4o")
    for n in range(5):
        assert books.book.observe(event([attempt(gpt4o, outcome)], n=n)) == 1
    assert books.book.snapshot(gpt4o).circuit is CircuitState.OPEN


def test_the_served_attempt_is_timed_from_its_own_start(books: Book) -> None:
    first, second = one(books.catalog, "gpt-4o"), one(books.catalog, "gpt-4.1")
    # 5 s timeout on the first, then the second streams: first token 400 ms after its
    # start, the whole request ends at 7000 ms -> the second ran 2000 ms, 1600 of them
    # generating 800 tokens = 500 tokens/s.
    books.book.observe(
        event(
            [
                attempt(first, "timeout", latency_ms=5000),
                attempt(second, ttft_ms=400, latency_ms=400),
            ],
            latency_ms=7000,
            completion_tokens=800,
        )
    )
    assert books.book.tokens_per_s(second) == pytest.approx((2 * 95 + 500) / 3)
    assert books.book.ttft_ms(second) == pytest.approx((2 * 500 + 400) / 3)
    assert books.book.ttft_ms(first) == first.ttft_ms_prior  # a timeout says no TTFT


def test_a_non_streamed_answer_feeds_throughput_but_not_ttft(books: Book) -> None:
    gpt4o = one(books.catalog, "gpt-4o")  # TTFT prior 450 ms
    books.book.observe(
        event(
            [attempt(gpt4o, ttft_ms=2450, latency_ms=2450)],
            stream=False,
            latency_ms=2450,
            completion_tokens=400,
        )
    )
    assert books.book.ttft_ms(gpt4o) == gpt4o.ttft_ms_prior
    # 2450 ms less the 450 ms TTFT estimate: 400 tokens in 2 s.
    assert books.book.tokens_per_s(gpt4o) == pytest.approx((2 * 90 + 200) / 3)


def test_tiny_answers_do_not_fake_a_throughput(books: Book) -> None:
    gpt4o = one(books.catalog, "gpt-4o")
    books.book.observe(event([attempt(gpt4o, ttft_ms=300)], latency_ms=310, completion_tokens=3))
    assert books.book.tokens_per_s(gpt4o) == gpt4o.tokens_per_s_prior


def test_models_outside_the_catalog_are_ignored(books: Book) -> None:
    stranger = AttemptRecord(provider="openai", model="gpt-9", outcome="timeout")
    assert books.book.observe(event([stranger])) == 0


def test_statistics_fade_back_to_the_prior_without_traffic(books: Book) -> None:
    gpt4o = one(books.catalog, "gpt-4o")
    for n in range(20):
        books.book.observe(event([attempt(gpt4o, "rate_limited")], n=n))
    low = books.book.reliability(gpt4o)
    books.clock.now += books.config.half_life_s
    halfway = books.book.reliability(gpt4o)
    books.clock.now += 10 * books.config.half_life_s
    assert low < halfway < books.book.reliability(gpt4o) == pytest.approx(0.995, abs=0.01)


def test_a_late_event_counts_as_old(books: Book) -> None:
    slow = one(books.catalog, "gpt-4o")
    # It happened one half-life ago: worth half a fresh sample.
    books.book.observe(
        event([attempt(slow, ttft_ms=2450)], latency_ms=3000),
        at=books.clock.now - books.config.half_life_s,
    )
    assert books.book.ttft_ms(slow) == pytest.approx((2 * 450 + 0.5 * 2450) / 2.5)


def test_decayed_mean_weights_newer_samples_more() -> None:
    config = StatsConfig(sample_decay=0.5, half_life_s=100, prior_weight=1)
    mean = DecayedMean()
    mean.add(10, 0, config)
    mean.add(20, 0, config)
    # weights 0.5 and 1: (1 x 0 + 0.5 x 10 + 20) / (1 + 1.5)
    assert mean.estimate(0, 0, config) == pytest.approx(25 / 2.5)
    assert mean.samples(100, config) == pytest.approx(0.75)


def test_one_accounts_failures_do_not_open_the_circuit_for_others(books: Book) -> None:
    gpt4o = one(books.catalog, "gpt-4o")
    for n in range(50):
        failed = event([attempt(gpt4o, "rate_limited")], n=n)
        books.book.observe(failed.model_copy(update={"account_id": "acct-with-its-own-limit"}))
    assert books.book.admission(gpt4o, take_probe=False).admit is Admit.ALLOW
