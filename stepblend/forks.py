"""Gateway workers forked from one process that has built the token tables (`--workers N`).

A gateway counts prompt tokens with OpenAI's o200k_base tables, which tiktoken's
Rust core holds in about 46 MB. N gateway processes that each built their own would
hold N copies. Instead `stepblend up` starts one gateway process, which builds them
and then forks the N workers: they share those pages copy-on-write, and nothing
writes to them after they are built.

The parent serves nothing. It waits, and passes SIGTERM and SIGINT on to its
workers. When one of them exits, it stops the others and exits with that worker's
code, so `stepblend up` sees a gateway stop as it would with one process. A worker
ends with its parent, even one killed with SIGKILL (PR_SET_PDEATHSIG). Each worker
is named in the process table (`gateway-1`…, /proc/PID/comm) and writes to a log
of its own.

The fork comes before anything starts a thread or opens a gRPC channel: by then
the parent has imported tiktoken and nothing else of the gateway.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

__all__ = ["PLAN_ENV", "Worker", "encode", "preload_and_fork", "worker_pids"]

PLAN_ENV = "STEPBLEND_GATEWAY_FORKS"  # set by `stepblend up`; not an operator setting
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Worker:
    name: str  # gateway-1…
    providers_addr: str  # its own providers process (stepblend/workers.py)
    log: str


def encode(plan: list[Worker]) -> str:
    return json.dumps([asdict(worker) for worker in plan])


def preload_and_fork() -> None:
    """Build the token tables first, while the process is small, and release what
    building them took (so its peak memory is not that on top of the gateway's).
    With a plan of workers in the environment, fork them: each returns from here
    as one of them; the parent never returns."""
    from services.gateway.tokens import o200k_base

    o200k_base()
    gc.collect()
    _trim()
    raw = os.environ.pop(PLAN_ENV, "")
    if raw:
        plan = [Worker(**entry) for entry in json.loads(raw)]
        if len(plan) > 1:
            _fork(plan)


def worker_pids(parent: int) -> dict[str, int]:
    """The workers of the gateway process `parent`, by name (Linux)."""
    found: dict[str, int] = {}
    if not Path("/proc").is_dir():
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent:
                found[(entry / "comm").read_text().strip()] = int(entry.name)
    return dict(sorted(found.items()))


def _fork(plan: list[Worker]) -> None:
    children: dict[int, str] = {}
    parent = os.getpid()
    for worker in plan:
        pid = os.fork()
        if pid == 0:
            _become(worker, parent)
            return
        children[pid] = worker.name
    sys.exit(_supervise(children))


def _become(worker: Worker, parent: int) -> None:
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        libc.prctl(_PR_SET_NAME, worker.name.encode()[:15])
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)
    log = os.open(worker.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ["STEPBLEND_PROVIDERS_ADDR"] = worker.providers_addr


def _supervise(children: dict[int, str]) -> int:
    stopping = False

    def forward(signum: int, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code: int | None = None
    while children:
        pid, status = os.wait()
        name = children.pop(pid, None)
        if name is None or code is not None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if children and not stopping:
            print(f"{name} exited with code {code}; stopping the other gateway workers", file=sys.stderr, flush=True)
            forward(signal.SIGTERM)
    return 128 - code if code is not None and code < 0 else code or 0


def _trim() -> None:
    """Hand the C heap's free pages back to the system (glibc); elsewhere, nothing."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
