"""The circuit breaker's state machine, driven by hand with explicit times."""

from __future__ import annotations

import pytest

from services.router.breaker import Admit, BreakerConfig, CircuitBreaker, CircuitState

# The state machine, with every failure counting (one account is enough): the
# per-account rule has its own tests below.
CONFIG = BreakerConfig(
    consecutive_failures=5, window=20, min_window=10, failure_rate=0.5, cooldown_s=30, min_accounts=1
)


def failing(times: int, start: float = 0.0) -> CircuitBreaker:
    breaker = CircuitBreaker(CONFIG)
    for i in range(times):
        breaker.record(False, start + i)
    return breaker


def test_a_new_breaker_is_closed_and_allows() -> None:
    breaker = CircuitBreaker(CONFIG)
    assert breaker.state(0) is CircuitState.CLOSED
    assert breaker.admission(0, take_probe=True).admit is Admit.ALLOW


def test_consecutive_failures_open_it() -> None:
    breaker = failing(4)
    assert breaker.state(4) is CircuitState.CLOSED
    breaker.record(False, 4)
    assert breaker.state(4) is CircuitState.OPEN
    admission = breaker.admission(10, take_probe=True)
    assert admission.admit is Admit.DENY
    assert "5 consecutive failures" in admission.detail
    assert "a probe in 24s" in admission.detail


def test_a_success_resets_the_streak() -> None:
    breaker = failing(4)
    breaker.record(True, 5)
    for t in range(6, 10):
        breaker.record(False, t)
    assert breaker.state(10) is CircuitState.CLOSED


def test_a_failure_rate_over_the_window_opens_it() -> None:
    breaker = CircuitBreaker(CONFIG)
    # Alternating: never 5 in a row, but half of the window fails.
    for t in range(9):
        breaker.record(t % 2 == 0, t)
    assert breaker.state(9) is CircuitState.CLOSED  # 4 of 9: under the minimum window
    breaker.record(False, 9)
    assert breaker.state(9) is CircuitState.OPEN
    assert "5 of the last 10 attempts failed" in breaker.admission(9, take_probe=False).detail


def test_occasional_failures_keep_it_closed() -> None:
    breaker = CircuitBreaker(CONFIG)
    for t in range(200):
        breaker.record(t % 5 != 0, t)  # 20% failures
    assert breaker.state(200) is CircuitState.CLOSED


def test_cooldown_turns_open_into_half_open_with_one_probe() -> None:
    breaker = failing(5)  # opened at t=4
    assert breaker.state(33.9) is CircuitState.OPEN
    assert breaker.state(34) is CircuitState.HALF_OPEN
    # Looking (the Routing API) does not take the probe.
    assert breaker.admission(34, take_probe=False).admit is Admit.PROBE
    assert breaker.admission(34, take_probe=True).admit is Admit.PROBE
    # The probe is out: other decisions keep the model as the last fallback only.
    later = breaker.admission(35, take_probe=True)
    assert later.admit is Admit.LAST and "a probe is out" in later.detail
    # A probe that never reported (its request was served by another candidate)
    # expires after one cooldown, and the next decision probes again.
    assert breaker.admission(63.9, take_probe=True).admit is Admit.LAST
    assert breaker.admission(64, take_probe=True).admit is Admit.PROBE


def test_a_successful_probe_closes_it() -> None:
    breaker = failing(5)
    breaker.admission(40, take_probe=True)
    breaker.record(True, 41)
    assert breaker.state(41) is CircuitState.CLOSED
    # A fresh start: one failure after closing does not reopen it.
    breaker.record(False, 42)
    assert breaker.state(42) is CircuitState.CLOSED


def test_a_failed_probe_reopens_it_for_a_full_cooldown() -> None:
    breaker = failing(5)
    breaker.admission(40, take_probe=True)
    breaker.record(False, 41)
    assert breaker.state(41) is CircuitState.OPEN
    assert breaker.state(70.9) is CircuitState.OPEN
    assert breaker.state(71) is CircuitState.HALF_OPEN
    assert "probe failed" in breaker.admission(50, take_probe=True).detail


def test_outcomes_while_open_are_ignored() -> None:
    breaker = failing(5)  # opened at t=4
    # Requests routed before it opened still report; they change nothing.
    breaker.record(True, 10)
    breaker.record(False, 11)
    assert breaker.state(20) is CircuitState.OPEN
    assert breaker.state(34) is CircuitState.HALF_OPEN


def test_a_late_outcome_from_before_the_opening_is_ignored() -> None:
    breaker = failing(5, start=100)  # opened at t=104
    breaker.record(True, 90)  # happened before it opened, arrived after
    assert breaker.state(105) is CircuitState.OPEN


@pytest.mark.parametrize(
    "changes",
    [
        {"consecutive_failures": 0},
        {"cooldown_s": 0},
        {"min_window": 30},
        {"failure_rate": 0},
        {"failure_rate": 1.5},
    ],
)
def test_bad_config_is_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(**changes)  # type: ignore[arg-type]


TENANT_SAFE = BreakerConfig(consecutive_failures=5, window=20, min_window=10, failure_rate=0.5, cooldown_s=30)


def test_one_account_failing_alone_never_opens_the_circuit() -> None:
    breaker = CircuitBreaker(TENANT_SAFE)
    for t in range(50):
        breaker.record(False, t, "acct-with-a-rate-limited-key")
    assert breaker.state(50) is CircuitState.CLOSED
    assert breaker.admission(50, take_probe=True).admit is Admit.ALLOW


def test_failures_from_two_accounts_open_it() -> None:
    breaker = CircuitBreaker(TENANT_SAFE)
    for t in range(5):
        breaker.record(False, t, "acct-a" if t % 2 else "acct-b")
    assert breaker.state(5) is CircuitState.OPEN


def test_one_account_failing_among_others_succeeding_does_not_open_it_by_rate() -> None:
    breaker = CircuitBreaker(TENANT_SAFE)
    for t in range(40):
        # Half the attempts fail, all of them one account's.
        breaker.record(t % 2 == 0, t, "acct-ok" if t % 2 == 0 else "acct-bad")
    assert breaker.state(40) is CircuitState.CLOSED
