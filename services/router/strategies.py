"""Strategies: how eligible (model, provider) options are ordered. Pure, no I/O.

Cost, for ranking, is each option's `comparable_cost`: the prompt plus the *same*
number of output tokens on every model (see routing). The worst-case estimate is not
used for ranking because under a cost cap every model's budget is stretched to fill
the cap, so every worst case is about the cap and says nothing about cheapness.

- lowest_cost: cheapest comparable cost first; ties by higher quality.
- fastest: shortest expected time to a typical answer, ttft + tokens / throughput,
  where tokens = min(the output tokens the estimate assumed, TYPICAL_OUTPUT_TOKENS);
  ties by cost.
- max_reliability: highest success rate first; ties by cost.
- balanced: highest weighted score (BALANCED_WEIGHTS: cost 0.30, quality 0.35,
  speed 0.20, reliability 0.15) of four terms in [0, 1], relative to the options at
  hand:
    cost         1 for the cheapest option, 0 for the dearest, on a log scale
                 (prices span two orders of magnitude; linear would lump every cheap
                 model together);
    quality      1 for the best option, 0 for the worst, linear (the catalog scale is
                 editorial; only its order and gaps mean something);
    speed        1 for the fastest expected time, 0 for the slowest, linear: waiting
                 is felt in seconds, and 3 s vs 18 s matters more than 0.2 s vs 1 s;
    reliability  1 - 10 x failure rate, floored at 0 (99% -> 0.9, 90% -> 0), an
                 absolute scale so that 99.5% vs 99% is a small gap, not all-or-nothing.
  With the shipped catalog and priors this favours mid-priced, capable, quick models
  (gpt-oss-120b, grok-4-fast, Qwen3) over both the tiniest and the slow reasoning ones.
  Ties by cost.

Every order ends on (provider, model) so that equal options rank deterministically.

Each ranked option carries its strategy's score, higher is better, reported by the
Routing API: lowest_cost -comparable USD; fastest -expected seconds to a typical
answer; max_reliability the expected success rate; balanced the weighted score.

Latency and reliability come from a `Stats`: `CatalogPriors` (the catalog's priors
alone) or `stats.StatsBook` (live statistics folded from usage events, blended with
the priors by sample count).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Protocol

from services.common.vocab import Strategy, strategy_spellings
from services.router.catalog import ModelEntry

#: `strategy_used` when the client named a model.
FORCE_MODEL = "force_model"

#: Every accepted spelling (`lowest-cost` and `lowest_cost`...): no model may use one.
STRATEGY_NAMES = frozenset(spelling for s in Strategy for spelling in strategy_spellings(s))

#: Output tokens of a typical answer, for the expected-time estimate.
TYPICAL_OUTPUT_TOKENS = 300

BALANCED_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"cost": 0.30, "quality": 0.35, "speed": 0.20, "reliability": 0.15}
)


class Stats(Protocol):
    """What the router knows of a model's behaviour on its provider."""

    def ttft_ms(self, entry: ModelEntry) -> float:
        """Expected time to first token, milliseconds."""
        ...

    def tokens_per_s(self, entry: ModelEntry) -> float:
        """Expected output throughput, tokens per second (> 0)."""
        ...

    def reliability(self, entry: ModelEntry) -> float:
        """Expected share of requests that succeed, in [0, 1]."""
        ...


class CatalogPriors:
    """`Stats` from the catalog's priors alone: what is known before any traffic."""

    def ttft_ms(self, entry: ModelEntry) -> float:
        return entry.ttft_ms_prior

    def tokens_per_s(self, entry: ModelEntry) -> float:
        return entry.tokens_per_s_prior

    def reliability(self, entry: ModelEntry) -> float:
        return entry.reliability_prior


@dataclass(frozen=True)
class Option:
    """An eligible model on one provider, with its cost estimate for this request."""

    entry: ModelEntry
    #: Worst case for this request (reported; checked against the cap).
    estimated_cost: Decimal
    #: Cost of the prompt plus the same output length on every model (ranked on).
    comparable_cost: Decimal
    #: Output tokens the estimate assumed (the budget, or the uncapped assumption).
    estimate_tokens: int


@dataclass(frozen=True)
class Ranked:
    """An option in its strategy's order, with the strategy's score (higher is better)."""

    option: Option
    score: float


def expected_ms(option: Option, stats: Stats) -> float:
    """Expected milliseconds to a typical answer of this request on `option`."""
    tokens = min(option.estimate_tokens, TYPICAL_OUTPUT_TOKENS)
    return stats.ttft_ms(option.entry) + 1000.0 * tokens / stats.tokens_per_s(option.entry)


def balanced_scores(options: Sequence[Option], stats: Stats) -> list[float]:
    """The balanced score of each option (higher is better), in the input order."""
    # The offset keeps a zero cost (a free model) finite on the log scale.
    cost = _lower_is_better([math.log(float(o.comparable_cost) + 1e-9) for o in options])
    speed = _lower_is_better([expected_ms(o, stats) for o in options])
    quality = _lower_is_better([-o.entry.quality for o in options])
    w = BALANCED_WEIGHTS
    return [
        w["cost"] * cost[i]
        + w["quality"] * quality[i]
        + w["speed"] * speed[i]
        + w["reliability"] * max(0.0, 1.0 - 10.0 * (1.0 - stats.reliability(o.entry)))
        for i, o in enumerate(options)
    ]


def scores(strategy: Strategy, options: Sequence[Option], stats: Stats) -> list[float]:
    """Each option's score under `strategy` (higher is better), in the input order."""
    if strategy is Strategy.LOWEST_COST:
        return [-float(o.comparable_cost) for o in options]
    if strategy is Strategy.FASTEST:
        return [-expected_ms(o, stats) / 1000.0 for o in options]
    if strategy is Strategy.MAX_RELIABILITY:
        return [stats.reliability(o.entry) for o in options]
    return balanced_scores(options, stats)


def rank(strategy: Strategy, options: Sequence[Option], stats: Stats) -> list[Ranked]:
    """`options` best first under `strategy`: the first is tried, the rest are fallbacks."""
    ranked = [Ranked(o, s) for o, s in zip(options, scores(strategy, options, stats), strict=True)]
    key: Callable[[Ranked], tuple[object, ...]]
    if strategy is Strategy.LOWEST_COST:
        # Exact Decimal costs, not the float score: equal prices must tie exactly.
        key = lambda r: (r.option.comparable_cost, -r.option.entry.quality, *_tail(r.option))  # noqa: E731
    else:
        key = lambda r: (-r.score, r.option.comparable_cost, *_tail(r.option))  # noqa: E731
    return sorted(ranked, key=key)


def _tail(option: Option) -> tuple[str, str]:
    return option.entry.provider, option.entry.id


def _lower_is_better(values: list[float]) -> list[float]:
    """1 for the smallest value, 0 for the largest, linear between; all 1 when equal."""
    low, high = min(values, default=0.0), max(values, default=0.0)
    if high - low < 1e-12:
        return [1.0] * len(values)
    return [(high - x) / (high - low) for x in values]
