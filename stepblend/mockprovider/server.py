"""Running the mock provider: in the current event loop, blocking, or in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass

import uvicorn

from stepblend.mockprovider.app import BrokenStream, MockProvider


class _HideBrokenStreams(logging.Filter):
    """A stream dropped on purpose is not an application error worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], BrokenStream))


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and
    # without it every answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """Leaves signals to whoever runs the mock (`run` stops on Ctrl-C, `serve` when cancelled)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield


def _server(app: MockProvider) -> uvicorn.Server:
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideBrokenStreams) for f in error_log.filters):
        error_log.addFilter(_HideBrokenStreams())
    config = uvicorn.Config(
        app,
        # Leave logging to whoever runs us: no dictConfig of uvicorn's own.
        log_config=None,
        lifespan="off",
        access_log=False,
        log_level="warning",
        http="httptools",
        timeout_graceful_shutdown=1,
        # The benchmark opens many keep-alive connections; keep them open between bursts.
        timeout_keep_alive=30,
    )
    return _Server(config)


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    prefix: str = "/v1",
    *,
    reject_keys: Iterable[str] = (),
    app: MockProvider | None = None,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve the mock in the running loop until cancelled; `ready(port)` once listening."""
    sock = _bind(host, port)
    server = _server(app or MockProvider(prefix, reject_keys))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.005)
        if ready is not None:
            ready(sock.getsockname()[1])
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        await task
        raise
    finally:
        sock.close()


def run(host: str = "127.0.0.1", port: int = 9001, prefix: str = "/v1", *, reject_keys: Iterable[str] = ()) -> None:
    """Serve the mock until interrupted (blocking), on uvloop when it is installed."""
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        runner = asyncio.Runner()
    with runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(serve(host, port, prefix, reject_keys=reject_keys))


@dataclass
class RunningMockProvider:
    """A mock provider serving in a background thread (for tests and demos)."""

    app: MockProvider
    port: int
    host: str
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """Root URL, for the control API (`{url}/_mock/requests`)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What `STEPBLEND_<PROVIDER>_BASE_URL` should be set to."""
        return self.url + self.app.prefix

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def start_in_thread(
    host: str = "127.0.0.1", port: int = 0, prefix: str = "/v1", *, reject_keys: Iterable[str] = ()
) -> RunningMockProvider:
    """Start the mock in a daemon thread with its own event loop; returns once it listens."""
    app = MockProvider(prefix, reject_keys)
    sock = _bind(host, port)
    server = _server(app)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="mockprovider", daemon=True
    )
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the mock provider did not start")
        threading.Event().wait(0.005)
    return RunningMockProvider(app, sock.getsockname()[1], host, server, thread)
