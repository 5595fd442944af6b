"""Waiting on the event itself: poll a condition until it holds, or fail at a deadline.

Tests wait for what they are about to assert (a row written, a message seen, a
request held), never for a guessed number of seconds: under load a guess is
either too short (a flaky failure) or so long the suite crawls. Each poll is
cheap, so the interval is short; the deadline only bounds a failure.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually", "wait_until"]

T = TypeVar("T")


async def eventually(check: Callable[[], T | Awaitable[T]], timeout: float = 10.0, what: str = "") -> T:
    """Poll `check()` (plain or async) until it returns something truthy; return that.

    Raises AssertionError naming `what` when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        value: T = await result if inspect.isawaitable(result) else result  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or 'condition'}")
        await asyncio.sleep(0.02)


def wait_until(check: Callable[[], T], timeout: float = 10.0, what: str = "", interval: float = 0.05) -> T:
    """`eventually` for synchronous tests (a system in other processes): blocks between polls."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or 'condition'}")
        time.sleep(interval)
