"""Several gateway and providers processes under one `stepblend up` (`--workers N`).

The gateway workers are forked by one gateway process, after it has built the
token tables they share (stepblend/forks.py). They share the HTTP port: each binds it with SO_REUSEPORT
(`STEPBLEND_REUSE_PORT`) and the kernel hands each new connection to one of them;
their gRPC chat servers share the chat port the same way (gRPC sets SO_REUSEPORT
on its own). Each gateway calls a providers process of its own, on a port of its
own: a gateway keeps one HTTP/2 connection to providers, so on a shared port the
kernel would place each gateway's single connection by a hash and could leave one
providers process with two gateways and another idle; paired, every providers
process carries the load of one gateway. Router and billing stay one each: billing
is where limits are counted, so they stay exact whatever N is.

Nothing here imports gRPC: the supervisor stays small.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


class WorkersError(ValueError):
    """A worker count that is not a whole number of at least one."""


def parse_workers(value: str, source: str) -> int:
    try:
        workers = int(value)
    except ValueError:
        raise WorkersError(f"{source}={value!r}: a whole number of at least 1") from None
    if workers < 1:
        raise WorkersError(f"{source}={value!r}: a whole number of at least 1")
    return workers


def default_workers() -> int:
    """`STEPBLEND_WORKERS`, else the machine's cores (one where the port cannot be shared)."""
    value = os.environ.get("STEPBLEND_WORKERS", "").strip()
    if value:
        return parse_workers(value, "STEPBLEND_WORKERS")
    return (os.cpu_count() or 1) if sys.platform == "linux" else 1


def names(service: str, workers: int) -> list[str]:
    """The name of each process of `service`: its own with one worker, numbered with several."""
    return [service] if workers == 1 else [f"{service}-{i}" for i in range(1, workers + 1)]


def check_port_free(host: str, port: int) -> None:
    """Fail now, naming the port, if something listens on it. Bound without SO_REUSEPORT,
    so another system's gateways (which set it) count as taken too, and a second
    `stepblend up` on the same port stops here instead of sharing it."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise SystemExit(f"stepblend up: port {port} on {host} is in use ({exc.strerror})") from None


def listeners(port: int) -> int | None:
    """How many sockets listen on `port` on this machine; None where /proc cannot tell."""
    found = 0
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not any(table.exists() for table in tables):
        return None
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == LISTEN and int(fields[1].rpartition(":")[2], 16) == port:
                found += 1
    return found


def wait_listening(port: int, count: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until `count` gateway workers listen on `port` (each does once its app has
    started); SystemExit if the gateway process exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited with code {proc.returncode} while starting")
        found = listeners(port)
        if found is None or found >= count:
            return
        time.sleep(0.05)
    raise SystemExit(f"not every gateway worker listens on port {port} after {timeout:.0f} s")
