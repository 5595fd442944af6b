"""`stepblend serve gateway`: the HTTP edge on uvicorn (uvloop + httptools).

With `STEPBLEND_REUSE_PORT=true` the HTTP port is bound with SO_REUSEPORT, so that
several gateway processes on one machine (`stepblend up --workers N`) listen on it
together and the kernel spreads new connections across them. The socket is bound
here but listens only once the app has started (uvicorn listens after the lifespan
startup), so a worker takes no connection before it can serve it. The gRPC chat
port needs nothing of the kind: gRPC binds its ports with SO_REUSEPORT already.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn

from services.common.config import ServiceSettings, Settings

from .app import create_app
from .settings import GatewaySettings

GRACEFUL_S = 30


class ListenSettings(ServiceSettings):
    """How the HTTP port is bound: `STEPBLEND_REUSE_PORT` (false)."""

    reuse_port: bool = False


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` with SO_REUSEPORT, not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


async def serve(settings: Settings) -> None:
    listen = ListenSettings.from_env()
    port = settings.port or 8080
    config = uvicorn.Config(
        create_app(settings, GatewaySettings.from_env()),
        host=settings.host,
        port=port,
        http="httptools",
        ws="none",  # no WebSocket endpoints: no websockets library loaded
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
    sockets = [reuse_port_socket(settings.host, port)] if listen.reuse_port else None
    task = asyncio.create_task(server.serve(sockets=sockets))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        await task
        raise
    finally:
        for sock in sockets or ():
            sock.close()
