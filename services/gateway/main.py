"""`stepblend serve gateway`: the HTTP edge on uvicorn (uvloop + httptools)."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from services.common.config import Settings

from .app import create_app
from .settings import GatewaySettings

GRACEFUL_S = 30


async def serve(settings: Settings) -> None:
    config = uvicorn.Config(
        create_app(settings, GatewaySettings.from_env()),
        host=settings.host,
        port=settings.port or 8080,
        http="httptools",
        loop="none",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_S,
    )
    server = uvicorn.Server(config)
    # The CLI owns the signals (it cancels this task on SIGTERM/SIGINT, and we turn
    # that into uvicorn's graceful exit), so uvicorn must not capture them itself.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        await task
        raise
