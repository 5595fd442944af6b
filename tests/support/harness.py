"""Run pytest so that an interrupted run leaves nothing behind (`dev.py test`).

Standard library only: dev.py imports it before the project's venv exists.

pytest runs as a child in its own session, with its own TMPDIR (so `tmp_path` and
`tempfile` directories of every fixture land in one directory this module owns) and a
marker variable every process it starts inherits. On SIGINT or SIGTERM the run is
interrupted the way Ctrl-C interrupts pytest (SIGINT to pytest, so fixtures tear down);
when pytest has exited — or not within the grace period, when its process group is
killed — every process still carrying the marker, or naming the run's directory on its
command line or as its working directory, is stopped (SIGTERM, then SIGKILL), whatever
started it and whether or not it left pytest's process group (a daemonised PostgreSQL,
a process started in a new session). Then the directory is removed.

    python -m tests.support.harness PYTHON [pytest args]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType

MARKER = "PYTEST_HARNESS_RUN"  # not STEPBLEND_: fixtures strip those from the env they pass on
GRACE_S = 60.0
STOP_S = 10.0


def _carries(pid: int, run_id: str, root: str) -> bool:
    proc = Path("/proc") / str(pid)
    try:
        if f"{MARKER}={run_id}".encode() in (proc / "environ").read_bytes().split(b"\0"):
            return True
        if root.encode() in (proc / "cmdline").read_bytes():
            return True
        return os.readlink(proc / "cwd").startswith(root)
    except OSError:
        return False


def leftovers(run_id: str, root: str) -> list[int]:
    """Live processes of the run (zombies, already dead, are not counted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and _carries(pid, run_id, root):
            found.append(pid)
    return found


def sweep(run_id: str, root: str) -> list[int]:
    """Stop every process of the run; returns those that had to be stopped."""
    stopped = leftovers(run_id, root)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = leftovers(run_id, root)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_S
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = leftovers(run_id, root)
        if not pids:
            break
    return stopped


def run(python: str, args: list[str]) -> int:
    """pytest with `args`; its exit status (128 + signal when it died of one)."""
    run_id = uuid.uuid4().hex
    root = os.path.realpath(tempfile.mkdtemp(prefix="stepblend-tests-"))
    # Traversable by others, like /tmp itself: run as root, the PostgreSQL fixture
    # runs initdb as the postgres user inside a directory of its own under here.
    os.chmod(root, 0o755)
    env = dict(os.environ, **{MARKER: run_id, "TMPDIR": root})
    child = subprocess.Popen([python, "-m", "pytest", *args], env=env, start_new_session=True)
    interrupted: list[float] = []  # when each signal came (monotonic)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        interrupted.append(time.monotonic())
        with contextlib.suppress(OSError):
            os.kill(child.pid, signal.SIGINT if len(interrupted) == 1 else signal.SIGKILL)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # Short waits, never an unbounded one: a wait begun before the signal would be
        # resumed after it with no timeout, and a pytest stuck in teardown never killed.
        while child.poll() is None:
            try:
                child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if interrupted and time.monotonic() - interrupted[0] > GRACE_S:
                    with contextlib.suppress(OSError):
                        os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(child.pid, signal.SIGKILL)  # whatever is left in pytest's own group
        stopped = sweep(run_id, root)
        if stopped and not interrupted:
            print(f"harness: stopped {len(stopped)} process(es) the tests left running", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = child.returncode
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    sys.exit(run(sys.argv[1], sys.argv[2:]))
