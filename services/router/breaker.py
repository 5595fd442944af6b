"""A circuit breaker per provider:model, driven by the attempt outcomes of usage events.

    closed ──(CONSECUTIVE failures in a row, or a failure rate >= RATE over the last
              WINDOW attempts once MIN_WINDOW have been seen — in both cases
              failures from at least MIN_ACCOUNTS accounts)──▶ open
    open ──(cooldown elapsed)──▶ half_open
    half_open ──(a success)──▶ closed
    half_open ──(a failure)──▶ open, the cooldown starting again

While open, the model is not routed to (exclusion reason `circuit_open`). While half
open, one request at a time probes it: the first decision that finds the probe free
takes it and ranks the model where its strategy puts it; other decisions keep the
model only as a last fallback, until the probe's outcome arrives or the probe expires
after one cooldown (its request may never have reached the model, e.g. when an earlier
candidate answered). Outcomes that arrive while open are ignored: they belong to
requests routed before it opened.

One tenant cannot open a breaker for the others: a failure is recorded with the
account whose request it was, and the breaker opens only when the failures that
trip it come from MIN_ACCOUNTS (default 2) different accounts. An account whose
own key is rate-limited or out of credit, or whose requests time out because they
are huge, fails alone; its requests still fall back per request (the executor), and
the model stays routable for everyone else. (Failures that are always the account's
own — a rejected key, a bad request — are not recorded at all; see stats.py.) A
single-tenant deployment can set MIN_ACCOUNTS to 1.

Time is a monotonic clock in seconds, passed in, never read here, so tests drive it.
Transitions use the time the outcome happened (from the event); admissions use the
router's now. Every replica folds every event, so all replicas' breakers agree as soon
as an event reaches them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum


class CircuitState(StrEnum):
    """Where a breaker is in the state machine above."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Admit(StrEnum):
    """What a decision may do with a model, given its breaker."""

    #: Closed: rank it where its strategy puts it.
    ALLOW = "allow"
    #: Half open, and this decision carries the probe: rank it normally.
    PROBE = "probe"
    #: Half open, the probe is out: keep it, as the last fallback only.
    LAST = "last"
    #: Open: exclude it (unless nothing else could serve the request).
    DENY = "deny"


@dataclass(frozen=True)
class Admission:
    """A breaker's answer for one decision, with a human reason when not ALLOW."""

    admit: Admit
    detail: str = ""


ALLOWED = Admission(Admit.ALLOW)


@dataclass(frozen=True)
class BreakerConfig:
    """Thresholds; the defaults are production's (env overrides in `main`)."""

    #: Failures in a row that open the breaker (an outage: every call fails).
    consecutive_failures: int = 5
    #: Recent attempts the failure rate is taken over (flapping: half the calls fail).
    window: int = 20
    #: Attempts the window needs before its rate may open the breaker.
    min_window: int = 10
    failure_rate: float = 0.5
    #: Distinct accounts the failures that open the breaker must come from.
    min_accounts: int = 2
    #: Seconds open before a probe is let through; also how long a probe may stay out.
    cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1 or self.window < 1 or self.cooldown_s <= 0 or self.min_accounts < 1:
            raise ValueError("breaker thresholds must be positive")
        if not 1 <= self.min_window <= self.window or not 0 < self.failure_rate <= 1:
            raise ValueError("breaker window settings are out of range")


class CircuitBreaker:
    """One provider:model's breaker. Not thread-safe: the router runs on one event loop."""

    __slots__ = ("_config", "_opened_at", "_probe_at", "_recent", "_streak", "_streak_accounts", "_why")

    def __init__(self, config: BreakerConfig) -> None:
        self._config = config
        # (success, account); only the last `window` attempts matter for the rate.
        self._recent: deque[tuple[bool, str]] = deque(maxlen=config.window)
        self._streak = 0
        self._streak_accounts: set[str] = set()
        self._opened_at: float | None = None
        self._why = ""
        self._probe_at: float | None = None

    def state(self, now: float) -> CircuitState:
        """The state at `now` (open turns half open by itself once the cooldown is over)."""
        if self._opened_at is None:
            return CircuitState.CLOSED
        if now - self._opened_at < self._config.cooldown_s:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def record(self, success: bool, at: float, account: str = "") -> None:
        """Fold one attempt's outcome that happened at `at`, for `account`'s request."""
        state = self.state(at)
        if state is CircuitState.OPEN:
            return
        if state is CircuitState.HALF_OPEN:
            if success:
                self._close()
            else:
                self._open(at, "the half-open probe failed")
            return
        self._recent.append((success, account))
        if success:
            self._streak = 0
            self._streak_accounts.clear()
        else:
            self._streak += 1
            self._streak_accounts.add(account)
        config = self._config
        if self._streak >= config.consecutive_failures and len(self._streak_accounts) >= config.min_accounts:
            self._open(at, f"{self._streak} consecutive failures")
            return
        failed = [who for ok, who in self._recent if not ok]
        if (
            len(self._recent) >= config.min_window
            and len(failed) >= config.failure_rate * len(self._recent)
            and len(set(failed)) >= config.min_accounts
        ):
            self._open(at, f"{len(failed)} of the last {len(self._recent)} attempts failed")

    def admission(self, now: float, *, take_probe: bool) -> Admission:
        """What a decision at `now` may do with this model; `take_probe` claims a free probe
        (the Routing API only looks, so that an explanation never uses up a probe)."""
        opened_at = self._opened_at
        if opened_at is None:
            return ALLOWED
        cooldown = self._config.cooldown_s
        if now - opened_at < cooldown:
            left = cooldown - (now - opened_at)
            return Admission(Admit.DENY, f"circuit open: {self._why}; a probe in {left:.0f}s")
        if self._probe_at is None or now - self._probe_at >= cooldown:
            if take_probe:
                self._probe_at = now
            return Admission(Admit.PROBE, f"circuit half open after {self._why}: probing")
        return Admission(Admit.LAST, f"circuit half open after {self._why}: a probe is out")

    def _open(self, at: float, why: str) -> None:
        self._opened_at = at
        self._why = why
        self._probe_at = None

    def _close(self) -> None:
        self._opened_at = None
        self._why = ""
        self._probe_at = None
        self._recent.clear()
        self._streak = 0
        self._streak_accounts.clear()
