"""Large request bodies are worked on off the event loop.

Parsing and counting the tokens of a body of `LARGE_BYTES` or more (up to the 8 MiB
limit) takes milliseconds to a second; on the event loop it would hold up every
other tenant's small requests. Such work runs in a worker thread instead, while the
request's account slot stays held (fairness.py). Small bodies stay on the loop,
where a thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["LARGE_BYTES", "is_large", "run"]

LARGE_BYTES = 256 * 1024

P = ParamSpec("P")
T = TypeVar("T")


def is_large(raw: bytes) -> bool:
    return len(raw) >= LARGE_BYTES


async def run(large: bool, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`work(...)`: in a worker thread when the body is `large`, else right here."""
    if large:
        return await asyncio.to_thread(work, *args, **kwargs)
    return work(*args, **kwargs)
