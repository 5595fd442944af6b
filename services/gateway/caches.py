"""What the gateway remembers between requests: each account's status and its
connected providers, so the hot path makes no extra gRPC calls.

Entries live for a short TTL and are dropped at once by the `accounts.v1.changed`
and `keys.v1.changed` events, so a disabled account or a new key takes effect
within one event delivery on every gateway replica.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class AccountStatus:
    account_id: str
    exists: bool
    disabled: bool
    plan: str


class TtlCache(Generic[T]):
    """A per-account cache in front of an async loader; bounded, with a TTL."""

    def __init__(self, load: Callable[[str], Awaitable[T]], ttl_s: float, max_entries: int = 100_000) -> None:
        self._load = load
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, T]] = {}

    async def get(self, key: str) -> T:
        hit = self._entries.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await self._load(key)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (now + self._ttl, value)
        return value

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
