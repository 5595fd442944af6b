"""Live statistics per provider:model, folded from usage events, blended with priors.

`StatsBook` is both the strategies' `Stats` (expected TTFT, throughput, success rate)
and routing's `Circuits` (a breaker per provider:model, see `breaker`). The consumer
feeds it events; the servicer reads it on every decision. One book per router
process, built in `main`.

What one usage event (services.common.events.UsageEvent) contributes:
- every attempt: a success (outcome "ok") or a failure (timeout, connect_error,
  rate_limited, provider_error) to the success rate and the breaker. Other outcomes
  say nothing about the provider's health and are skipped: bad_request is the
  request's fault, provider_not_connected and provider_key_invalid the account's.
- the served attempt (the last "ok" one), when the event reports it:
  TTFT         its ttft_ms, for streams only (a non-streamed answer's first token
               arrives with its last);
  latency      the event's latency_ms minus the attempts tried before it, i.e. the
               served attempt from its start to the request's end;
  throughput   completion_tokens / (latency - TTFT): for streams the attempt's own
               TTFT, otherwise the current TTFT estimate; skipped when fewer than
               MIN_THROUGHPUT_TOKENS or under MIN_GENERATION_MS of generation, where
               timer resolution would make it noise.

Every metric is a decayed mean. A sample's weight shrinks by `sample_decay` for each
newer sample (an EWMA with ~1/(1 - decay) samples of memory) and halves every
`half_life_s` without new samples, so a model nobody routes to any more drifts back to
its prior instead of being judged forever on its worst minute. The estimate blends
the catalog prior in as `prior_weight` pseudo-samples:

    estimate = (prior_weight x prior + sum(w_i x x_i)) / (prior_weight + sum(w_i))

No data: the prior. Ten fresh samples at decay 0.9: about 80% live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from services.common.events import AttemptRecord, UsageEvent
from services.common.vocab import Outcome
from services.router.breaker import (
    ALLOWED,
    Admission,
    BreakerConfig,
    CircuitBreaker,
    CircuitState,
)
from services.router.catalog import Catalog, ModelEntry
from services.router.strategies import TYPICAL_OUTPUT_TOKENS

#: Attempt outcomes that count against a provider:model (success rate and breaker).
FAILURE_OUTCOMES = frozenset({Outcome.TIMEOUT, Outcome.CONNECT_ERROR, Outcome.RATE_LIMITED, Outcome.PROVIDER_ERROR})
SUCCESS_OUTCOME = Outcome.OK
#: The rest say nothing about the model: the account's key or request was at fault,
#: or nothing was called. A test checks the three sets cover every Outcome.
NEUTRAL_OUTCOMES = frozenset({Outcome.PROVIDER_NOT_CONNECTED, Outcome.PROVIDER_KEY_INVALID, Outcome.BAD_REQUEST})
#: Throughput samples below these are timer noise, not a measurement.
MIN_THROUGHPUT_TOKENS = 16
MIN_GENERATION_MS = 50.0


@dataclass(frozen=True)
class StatsConfig:
    """How fast live statistics move; the defaults are production's."""

    sample_decay: float = 0.9
    half_life_s: float = 300.0
    prior_weight: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.sample_decay <= 1 or self.half_life_s <= 0 or self.prior_weight <= 0:
            raise ValueError("stats settings are out of range")


class DecayedMean:
    """Samples weighted down by newer samples and by age (see the module docstring)."""

    __slots__ = ("at", "total", "weight")

    def __init__(self) -> None:
        self.total = 0.0
        self.weight = 0.0
        self.at = 0.0

    def add(self, value: float, at: float, config: StatsConfig) -> None:
        """Fold `value`, observed at `at` (a late sample does not age the others)."""
        factor = config.sample_decay * _age_factor(self.at, at, config) if self.weight else 0.0
        self.total = self.total * factor + value
        self.weight = self.weight * factor + 1.0
        self.at = max(self.at, at)

    def estimate(self, prior: float, now: float, config: StatsConfig) -> float:
        """The prior blended with the samples, as seen at `now`."""
        if not self.weight:
            return prior
        age = _age_factor(self.at, now, config)
        k = config.prior_weight
        return (k * prior + age * self.total) / (k + age * self.weight)

    def samples(self, now: float, config: StatsConfig) -> float:
        """The samples' total weight at `now` (how much data backs the estimate)."""
        return self.weight * _age_factor(self.at, now, config)


def _age_factor(then: float, now: float, config: StatsConfig) -> float:
    age = now - then
    return 1.0 if age <= 0 else 0.5 ** (age / config.half_life_s)


@dataclass(frozen=True)
class ModelSnapshot:
    """One provider:model's estimates at one moment, for logs, tests and operators."""

    key: str
    ttft_ms: float
    tokens_per_s: float
    latency_ms: float
    reliability: float
    samples: float
    circuit: CircuitState


class _ModelStats:
    __slots__ = ("breaker", "latency", "success", "throughput", "ttft")

    def __init__(self, breaker: BreakerConfig) -> None:
        self.ttft = DecayedMean()
        self.latency = DecayedMean()
        self.throughput = DecayedMean()
        self.success = DecayedMean()
        self.breaker = CircuitBreaker(breaker)


class StatsBook:
    """Live statistics and breakers for every catalog row; implements `Stats` and `Circuits`.

    Not thread-safe: folding and routing run on the router's one event loop.
    """

    def __init__(
        self,
        catalog: Catalog,
        config: StatsConfig | None = None,
        breaker: BreakerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config or StatsConfig()
        self._clock = clock
        breaker_config = breaker or BreakerConfig()
        self._models = {entry.key: _ModelStats(breaker_config) for entry in catalog.models}
        self._entries = {entry.key: entry for entry in catalog.models}

    # ---------------------------------------------------------------- Stats protocol

    def ttft_ms(self, entry: ModelEntry) -> float:
        stats = self._models.get(entry.key)
        if stats is None:
            return entry.ttft_ms_prior
        return stats.ttft.estimate(entry.ttft_ms_prior, self._clock(), self._config)

    def tokens_per_s(self, entry: ModelEntry) -> float:
        stats = self._models.get(entry.key)
        if stats is None:
            return entry.tokens_per_s_prior
        return stats.throughput.estimate(entry.tokens_per_s_prior, self._clock(), self._config)

    def reliability(self, entry: ModelEntry) -> float:
        stats = self._models.get(entry.key)
        if stats is None:
            return entry.reliability_prior
        return stats.success.estimate(entry.reliability_prior, self._clock(), self._config)

    # ------------------------------------------------------------- Circuits protocol

    def admission(self, entry: ModelEntry, *, take_probe: bool) -> Admission:
        stats = self._models.get(entry.key)
        if stats is None:
            return ALLOWED
        return stats.breaker.admission(self._clock(), take_probe=take_probe)

    # ------------------------------------------------------------------- folding

    def observe(self, event: UsageEvent, at: float | None = None) -> int:
        """Fold one usage event that ended at `at` (the router's clock; now when None).

        Returns how many attempts it contributed (0: nothing in it is ours to learn).
        """
        when = self._clock() if at is None else at
        config = self._config
        folded = 0
        before_ms = 0
        served: AttemptRecord | None = None
        served_before_ms = 0
        for attempt in event.attempts:
            stats = self._models.get(f"{attempt.provider}:{attempt.model}")
            if attempt.outcome == SUCCESS_OUTCOME:
                served, served_before_ms = attempt, before_ms
            if stats is not None and (attempt.outcome == SUCCESS_OUTCOME or attempt.outcome in FAILURE_OUTCOMES):
                success = attempt.outcome == SUCCESS_OUTCOME
                stats.success.add(1.0 if success else 0.0, when, config)
                stats.breaker.record(success, when, event.account_id)
                folded += 1
            before_ms += max(0, attempt.latency_ms)
        if served is not None:
            self._fold_served(event, served, served_before_ms, when)
        return folded

    def _fold_served(self, event: UsageEvent, served: AttemptRecord, before_ms: int, when: float) -> None:
        key = f"{served.provider}:{served.model}"
        stats, entry = self._models.get(key), self._entries.get(key)
        if stats is None or entry is None:
            return
        config = self._config
        # The attempt's own latency_ms ends at its first chunk (the executor reports it
        # then); the request's end is the event's latency, less the attempts before it.
        latency = float(max(event.latency_ms - before_ms, served.latency_ms, 0))
        ttft: float | None = None
        if event.stream:
            ttft = float(served.ttft_ms or served.latency_ms)
            if ttft > 0:
                stats.ttft.add(ttft, when, config)
        if latency > 0:
            stats.latency.add(latency, when, config)
        if ttft is None:
            ttft = stats.ttft.estimate(entry.ttft_ms_prior, when, config)
        generation_ms = latency - ttft
        if event.completion_tokens >= MIN_THROUGHPUT_TOKENS and generation_ms >= MIN_GENERATION_MS:
            stats.throughput.add(1000.0 * event.completion_tokens / generation_ms, when, config)

    # ------------------------------------------------------------------- reading

    def snapshot(self, entry: ModelEntry) -> ModelSnapshot:
        """Every estimate for `entry` now."""
        now = self._clock()
        stats = self._models.get(entry.key) or _ModelStats(BreakerConfig())
        config = self._config
        return ModelSnapshot(
            key=entry.key,
            ttft_ms=stats.ttft.estimate(entry.ttft_ms_prior, now, config),
            tokens_per_s=stats.throughput.estimate(entry.tokens_per_s_prior, now, config),
            # The catalog has no latency prior: a typical answer's, from the other two.
            latency_ms=stats.latency.estimate(
                entry.ttft_ms_prior + 1000.0 * TYPICAL_OUTPUT_TOKENS / entry.tokens_per_s_prior,
                now,
                config,
            ),
            reliability=stats.success.estimate(entry.reliability_prior, now, config),
            samples=stats.success.samples(now, config),
            circuit=stats.breaker.state(now),
        )
