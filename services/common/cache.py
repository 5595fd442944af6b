"""One async TTL cache for every service: bounded, single-flight, invalidation-safe.

The gateway caches account status, connected providers and verified
credentials; providers caches sealed keys. Each entry lives for a TTL and is
dropped at once by an invalidation event (`accounts.v1.changed`,
`keys.v1.changed`). Two properties the hand-written caches lacked:

- **Single flight.** Concurrent misses for one key share one load: a burst of
  requests for a cold account costs one gRPC call, not one each.
- **No resurrection.** Every key has a generation, bumped by `drop` (and `clear`
  bumps them all). A load stores its value only if the generation it started
  under is still current, so a value that was loading while its invalidation
  arrived is handed to the callers already waiting (who asked before the
  change) but never kept for later ones.

Bounded: past `max_entries` the least recently stored entry goes. No I/O of its
own; `load` is whatever the owner passes in.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TtlCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """`get(key)` returns a value no older than `ttl_s`, loaded by `load(key)`."""

    def __init__(
        self,
        load: Callable[[K], Awaitable[V]],
        ttl_s: float,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0 or max_entries <= 0:
            raise ValueError("ttl_s and max_entries must be positive")
        self._load = load
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V]] = {}
        # A key's generation is (the cache's epoch, the key's own count of drops).
        self._epoch = 0
        self._drops: dict[K, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: K) -> V:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fill(key, self._generation(key)))
            self._loading[key] = pending
            pending.add_done_callback(functools.partial(self._loaded, key))
        # shield: one waiter cancelled (its client went away) must not cancel the
        # load the others are waiting for.
        return await asyncio.shield(pending)

    def drop(self, key: K) -> None:
        """Forget `key`'s value; a load of it already under way will not be kept."""
        self._entries.pop(key, None)
        self._drops[key] = self._drops.get(key, 0) + 1
        self._loading.pop(key, None)
        if len(self._drops) > self._max:
            # The counts only need to differ from those of loads in flight: a new epoch does that for all.
            self.clear()

    def clear(self) -> None:
        """Forget every value; no load under way will be kept."""
        self._entries.clear()
        self._drops.clear()
        self._loading.clear()
        self._epoch += 1

    def _loaded(self, key: K, future: asyncio.Future[V]) -> None:
        if self._loading.get(key) is future:
            del self._loading[key]
        if not future.cancelled():
            future.exception()  # retrieved: a failed load whose waiters all left is not "never retrieved"

    def _generation(self, key: K) -> tuple[int, int]:
        return self._epoch, self._drops.get(key, 0)

    async def _fill(self, key: K, generation: tuple[int, int]) -> V:
        value = await self._load(key)
        if self._generation(key) == generation:
            self._entries[key] = (self._clock() + self._ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return value
