"""`stepblend serve NAME`: one service in the foreground, as in Kubernetes.

Each service module exposes `async def serve(settings)`, which runs until it is
cancelled; SIGTERM and SIGINT cancel it, and it shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.common.config import Settings

SERVICES = ("gateway", "router", "providers", "billing")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # uvloop does not build on Windows
        return asyncio.new_event_loop
    return uvloop.new_event_loop


async def _until_signal(serve: Callable[[Settings], Awaitable[None]], settings: Settings) -> None:
    task = asyncio.ensure_future(serve(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _uses_rs256(settings: Settings) -> bool:
    return bool(settings.jwt_private_key_file or settings.jwt_public_key_file or settings.jwt_previous_public_key_file)


def run(name: str) -> None:
    if name not in SERVICES:
        raise SystemExit(f"unknown service {name!r}: one of {', '.join(SERVICES)}")
    if name != "providers" and "aiohttp" not in sys.modules:
        # nats-py imports aiohttp only for its WebSocket transport, which StepBlend
        # never uses (nats:// and tls:// URLs): 14 MB of memory in each service
        # that has no other use for it. Only providers calls HTTP with aiohttp.
        # Before anything imports nats, hence the imports below.
        sys.modules["aiohttp"] = None  # type: ignore[assignment]
    if name == "gateway":
        from stepblend import forks

        # The token tables first; with several workers, they fork here.
        forks.preload_and_fork()
    from services.common import logs, telemetry
    from services.common.config import ConfigError, Settings

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"stepblend serve {name}: {exc}") from None
    logs.setup(name, settings.log_level)
    if name == "gateway" and not _uses_rs256(settings) and "cryptography" not in sys.modules:
        # PyJWT imports cryptography (6 MB) for RS256 alone; a gateway that signs
        # and verifies HS256 only has no other use for it.
        sys.modules["cryptography"] = None  # type: ignore[assignment]
    if name != "gateway" and not settings.internal_token:
        # The internal services trust any caller holding this token; without one
        # their gRPC would be open to anyone who can reach the port.
        raise SystemExit(f"stepblend serve {name}: STEPBLEND_INTERNAL_TOKEN is not set")
    # Before the service builds its servers and channels, which it instruments.
    tracing = telemetry.setup(name)
    serve = importlib.import_module(f"services.{name}.main").serve
    # What is loaded by now (the modules, their classes and functions) lives
    # as long as the process: out of the collector's sight, a full collection no
    # longer walks it, which keeps its pauses short.
    gc.collect()
    gc.freeze()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_until_signal(serve, settings))
    finally:
        tracing.shutdown()
