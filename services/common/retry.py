"""Retrying with jittered exponential backoff, on tenacity, for every service.

One place says how StepBlend retries: the first retry after about `first_delay_s`,
each delay doubling up to `max_delay_s`, jittered (so replicas retrying the same
thing spread out), at most `attempts` tries, only for errors `retry_if` accepts;
the last error propagates unchanged (never wrapped in a RetryError). Callers keep
their own logging through `on_retry`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

__all__ = ["call"]

T = TypeVar("T")


def call(
    work: Callable[[], T],
    *,
    attempts: int,
    retry_if: Callable[[BaseException], bool],
    first_delay_s: float = 0.01,
    max_delay_s: float = 1.0,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """`work()`, re-run (blocking between tries) while it raises an error `retry_if` accepts."""

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            if error is not None:
                on_retry(state.attempt_number, error)

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=first_delay_s, max=max_delay_s, jitter=first_delay_s),
        retry=retry_if_exception(retry_if),
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(work)
