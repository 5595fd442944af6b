"""The shared TTL cache: single-flight loads, no value resurrected by a load that
raced its invalidation, TTL and bound."""

from __future__ import annotations

import asyncio

import pytest

from services.common.cache import TtlCache


class Loader:
    """Loads `f"{key}:{n}"` for the n-th load of a key; each load waits on a gate."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()

    async def __call__(self, key: str) -> str:
        self.calls.append(key)
        self.started.set()
        await self.gate.wait()
        return f"{key}:{self.calls.count(key)}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_misses_share_one_load() -> None:
    load = Loader()
    load.gate.clear()
    cache: TtlCache[str, str] = TtlCache(load, ttl_s=10)
    waiters = [asyncio.ensure_future(cache.get("a")) for _ in range(50)]
    await load.started.wait()
    load.gate.set()
    assert await asyncio.gather(*waiters) == ["a:1"] * 50
    assert load.calls == ["a"]


async def test_a_load_racing_an_invalidation_is_not_kept() -> None:
    load = Loader()
    load.gate.clear()
    cache: TtlCache[str, str] = TtlCache(load, ttl_s=10)
    before = asyncio.ensure_future(cache.get("a"))
    await load.started.wait()
    cache.drop("a")  # the change event arrives while the old value is loading
    load.gate.set()
    assert await before == "a:1"  # asked before the change: gets what was loading
    assert await cache.get("a") == "a:2"  # asked after: a fresh load, not the stale value
    assert load.calls == ["a", "a"]


async def test_clear_also_discards_loads_in_flight() -> None:
    load = Loader()
    load.gate.clear()
    cache: TtlCache[str, str] = TtlCache(load, ttl_s=10)
    before = asyncio.ensure_future(cache.get("a"))
    await load.started.wait()
    cache.clear()
    load.gate.set()
    await before
    assert await cache.get("a") == "a:2"


async def test_entries_expire_after_the_ttl() -> None:
    load, clock = Loader(), Clock()
    cache: TtlCache[str, str] = TtlCache(load, ttl_s=10, clock=clock)
    assert await cache.get("a") == "a:1"
    clock.now += 9.9
    assert await cache.get("a") == "a:1"
    clock.now += 0.2
    assert await cache.get("a") == "a:2"


async def test_the_oldest_entry_goes_past_the_bound() -> None:
    load = Loader()
    cache: TtlCache[str, str] = TtlCache(load, ttl_s=10, max_entries=2)
    for key in ("a", "b", "c"):
        await cache.get(key)
    assert len(cache) == 2
    assert await cache.get("b") == "b:1"
    assert await cache.get("a") == "a:2"  # evicted, loaded again


async def test_a_failed_load_is_not_cached_and_reaches_every_waiter() -> None:
    failures = 0

    async def flaky(key: str) -> str:
        nonlocal failures
        failures += 1
        await asyncio.sleep(0)
        if failures == 1:
            raise ConnectionError("billing unreachable")
        return "ok"

    cache: TtlCache[str, str] = TtlCache(flaky, ttl_s=10)
    results = await asyncio.gather(cache.get("a"), cache.get("a"), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert await cache.get("a") == "ok"


async def test_one_cancelled_waiter_does_not_cancel_the_others() -> None:
    load = Loader()
    load.gate.clear()
    cache: TtlCache[str, str] = TtlCache(load, ttl_s=10)
    leaving = asyncio.ensure_future(cache.get("a"))
    staying = asyncio.ensure_future(cache.get("a"))
    await load.started.wait()
    leaving.cancel()
    load.gate.set()
    assert await staying == "a:1"
    with pytest.raises(asyncio.CancelledError):
        await leaving
