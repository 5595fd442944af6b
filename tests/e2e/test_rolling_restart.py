"""A rolling restart of the router and of providers under load fails no request.

The gateway sends Route and Complete calls as messages on one long-lived stream to
each (services/common/mux.py). A replacement process starts on the same address
(SO_REUSEPORT, as a new pod behind a Service), then the old one gets SIGTERM. The
old one refuses new streams, tells the gateway's stream to move on, answers what it
has and exits; the gateway's next calls go on a new stream, to the replacement.
Before the streams drained, the calls in flight when the old process's grace ran
out failed with 503, and the router's grace was all spent waiting for the stream.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.stack import Stack, complete, new_account, running_stack

LOAD_CONCURRENCY = 8


@pytest.fixture(params=["sqlite"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(request, tmp_path) as running:
        yield running


def _replace(stack: Stack, name: str, **extra: str) -> float:
    """Start `name`'s replacement on its address, then SIGTERM the old process and
    wait for it to exit; return how long the old one took to stop."""
    old = stack.procs[name]
    address = stack.env[f"STEPBLEND_{name.upper()}_ADDR"]
    new = stack.serve(f"{name}-new", name, address, **extra)
    # Ready as a new pod's probe would see it: the address answers the old process too.
    log = stack.root / "logs" / f"{name}-new.log"
    deadline = time.monotonic() + 60
    while f"listening on {address}" not in log.read_text():
        assert new.poll() is None and time.monotonic() < deadline, f"{name}-new did not start"
        time.sleep(0.05)
    started = time.monotonic()
    old.send_signal(signal.SIGTERM)
    old.wait(60)
    return time.monotonic() - started


def test_replacing_the_router_and_providers_under_load_fails_no_request(stack: Stack) -> None:
    _email, token, _account_id = new_account(stack, "big")
    url = stack.gateway_urls[0]
    stopped: dict[str, float] = {}

    async def load(until: asyncio.Event) -> list[httpx.Response]:
        answers: list[httpx.Response] = []
        async with httpx.AsyncClient(timeout=60) as client:

            async def worker(w: int) -> None:
                i = 0
                while not until.is_set():
                    answers.append(await complete(client, url, token, f"rolling {w}-{i}"))
                    i += 1

            await asyncio.gather(*(worker(w) for w in range(LOAD_CONCURRENCY)))
        return answers

    async def run() -> list[httpx.Response]:
        until = asyncio.Event()
        loading = asyncio.ensure_future(load(until))
        await asyncio.sleep(1)
        stopped["router"] = await asyncio.to_thread(_replace, stack, "router")
        await asyncio.sleep(1)
        providers_db = f"sqlite:///{stack.root / 'providers.db'}"
        stopped["providers"] = await asyncio.to_thread(
            _replace, stack, "providers", STEPBLEND_DATABASE_URL=providers_db
        )
        await asyncio.sleep(1)
        until.set()
        return await loading

    answers = asyncio.run(run())
    statuses = Counter(r.status_code for r in answers)
    print(f"statuses {dict(statuses)}, old processes stopped in {stopped}")
    failed = [f"{r.status_code} {r.text[:300]}" for r in answers if r.status_code != 200][:3]
    assert not failed, f"{dict(statuses)}: {failed}\n{stack.logs()}"
    assert len(answers) > 100
    # Drained, not waited out: each stopped long before its grace (router 5 s, providers 30 s).
    assert stopped["router"] < 4 and stopped["providers"] < 10, stopped
