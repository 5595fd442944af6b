"""`dev.py test` stops cleanly: interrupting the suite leaves no process and no
temporary directory behind.

A small test suite of its own starts a nats-server and a gateway (each stopped by
its fixture) and a process no fixture stops, reports what it started, then waits.
The harness that `dev.py test` runs pytest under is sent SIGINT or SIGTERM mid-test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]

INNER = """
import json, os, subprocess, sys, tempfile, time
from pathlib import Path

import pytest

from tests.support.procs import NatsServer, free_port, wait_port


@pytest.fixture
def gateway(tmp_path):
    nats = NatsServer(tmp_path / "nats").start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPBLEND_")}
    env.update(
        STEPBLEND_DATA_DIR=str(tmp_path), STEPBLEND_NATS_URL=nats.url, STEPBLEND_JWT_SECRET="s" * 32,
        STEPBLEND_PORT=str(port), STEPBLEND_ROUTER_ADDR=f"127.0.0.1:{free_port()}",
        STEPBLEND_PROVIDERS_ADDR=f"127.0.0.1:{free_port()}", STEPBLEND_BILLING_ADDR=f"127.0.0.1:{free_port()}",
    )
    proc = subprocess.Popen([sys.executable, "-m", "stepblend", "serve", "gateway"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=60)
        yield nats, proc, port
    finally:
        proc.terminate()
        proc.wait(20)
        nats.stop()


def test_waits_to_be_interrupted(gateway):
    nats, proc, port = gateway
    leaked = subprocess.Popen(["sleep", "600"], start_new_session=True)  # no fixture stops this one
    report = {"pids": [nats.proc.pid, proc.pid, leaked.pid], "ports": [nats.port, port],
              "tmp": tempfile.gettempdir()}
    Path(os.environ["HARNESS_REPORT"]).write_text(json.dumps(report))
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _parsed(report: Path) -> dict[str, Any] | None:
    """The report, once written whole (it is written in one call, but not atomically)."""
    try:
        parsed: dict[str, Any] = json.loads(report.read_text())
    except json.JSONDecodeError:
        return None
    return parsed


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_leaves_no_process_and_no_temp_dir(tmp_path: Path, signum: signal.Signals) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "test_inner.py").write_text(INNER)
    report = tmp_path / "report.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), HARNESS_REPORT=str(report))
    harness = subprocess.Popen(
        [sys.executable, "-m", "tests.support.harness", sys.executable, "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def reported() -> bool:
            assert harness.poll() is None, harness.communicate()[0].decode()
            return report.exists()

        wait_until(reported, timeout=120, what="the inner test starting its processes", interval=0.1)
        started = wait_until(lambda: _parsed(report), what="the report written whole")
        assert all(_alive(pid) for pid in started["pids"]) and all(_listening(p) for p in started["ports"])
        assert Path(started["tmp"]).is_dir()

        harness.send_signal(signum)
        output = harness.communicate(timeout=120)[0].decode()
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()

    assert harness.returncode != 0, output
    assert [pid for pid in started["pids"] if _alive(pid)] == [], output
    assert [port for port in started["ports"] if _listening(port)] == [], output
    assert not Path(started["tmp"]).exists(), output
