"""The gateway stops as Kubernetes stops it: SIGTERM (after the preStop sleep) while a
stream is in flight.

The manifests promise (deploy/k8s/README.md, "Graceful shutdown") that the gateway
then stops accepting connections, lets the in-flight stream finish within 30 s,
publishes the request's usage event before exiting, and exits well inside
terminationGracePeriodSeconds. This runs the real processes: `stepblend up` for
NATS, router, providers and billing, the mock provider streaming slowly, and a
second gateway started as in a pod (`stepblend serve gateway`), which is the one
signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from stepblend.datadir import read_or_create
from tests.support.procs import free_port, wait_port
from tests.support.waiting import wait_until

WORDS = 24
CHUNK_DELAY_MS = 250  # a stream of ~6 s: long enough to signal mid-way, well under 30 s
GRACE_S = 45  # terminationGracePeriodSeconds in deploy/k8s


@dataclass
class Backend:
    data_dir: Path
    services: dict[str, str]
    env: dict[str, str]
    mock_url: str

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "stepblend", *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, f"stepblend {' '.join(args)}: {result.stderr}"
        return result.stdout.strip()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    data_dir = Path(tmp_path_factory.mktemp("shutdown"))
    mock_port = free_port()
    mock = subprocess.Popen(
        [sys.executable, "-m", "stepblend.mockprovider", "--port", str(mock_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mock_url = f"http://127.0.0.1:{mock_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPBLEND_")}
    env["STEPBLEND_DATA_DIR"] = str(data_dir)
    env["STEPBLEND_OPENAI_BASE_URL"] = f"{mock_url}/v1"
    up = subprocess.Popen(
        [sys.executable, "-m", "stepblend", "up", "--port", str(free_port()), "--workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(mock_port)
        deadline = time.monotonic() + 60
        while not (data_dir / "services.json").exists():
            if up.poll() is not None or time.monotonic() > deadline:
                output = up.stdout.read().decode() if up.stdout and up.poll() is not None else ""
                pytest.fail(f"stepblend up did not start:\n{output}")
            time.sleep(0.1)
        services = json.loads((data_dir / "services.json").read_text())
        yield Backend(data_dir=data_dir, services=services, env=env, mock_url=mock_url)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(40)
        except subprocess.TimeoutExpired:
            up.kill()
        mock.kill()
        mock.wait()


def start_gateway(backend: Backend, port: int) -> subprocess.Popen[bytes]:
    """A gateway configured as the Deployment configures it, from the environment alone."""
    env = dict(backend.env)
    env.update(
        STEPBLEND_HOST="127.0.0.1",
        STEPBLEND_PORT=str(port),
        STEPBLEND_NATS_URL=backend.services["nats"],
        STEPBLEND_ROUTER_ADDR=backend.services["router"],
        STEPBLEND_PROVIDERS_ADDR=backend.services["providers"],
        STEPBLEND_BILLING_ADDR=backend.services["billing"],
        STEPBLEND_INTERNAL_TOKEN=read_or_create(backend.data_dir, "STEPBLEND_INTERNAL_TOKEN", create=False),
        STEPBLEND_JWT_SECRET=read_or_create(backend.data_dir, "STEPBLEND_JWT_SECRET", create=False),
    )
    log = backend.data_dir / f"gateway-{port}.log"
    with log.open("wb") as out:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "stepblend", "serve", "gateway"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert gateway.poll() is None, f"the gateway exited:\n{log.read_text()}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    gateway.kill()
    pytest.fail("the gateway never became ready")


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_sigterm_lets_the_in_flight_stream_finish_and_publishes_its_usage(backend: Backend) -> None:
    email = "shutdown@example.com"
    token = backend.cli("account", "create", email)
    backend.cli("keys", "set", email, "openai", "sk-shutdown-test-0000")
    content = " ".join(f"word{i}" for i in range(WORDS))
    httpx.post(
        f"{backend.mock_url}/_mock/behaviour",
        json={"model": "*", "chunk_delay_ms": CHUNK_DELAY_MS, "content": content},
    ).raise_for_status()

    port = free_port()
    gateway = start_gateway(backend, port)
    try:
        received: list[str] = []
        with httpx.stream(
            "POST",
            f"http://127.0.0.1:{port}/api/v1/chat/completions",
            headers={"authorization": f"Bearer {token}"},
            json={"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
            timeout=60,
        ) as response:
            assert response.status_code == 200, (
                f"the request path fails before any shutdown ({response.read().decode()}): "
                "this test needs the whole system to stream; see tests/e2e"
            )
            request_id = response.headers["x-request-id"]
            signalled_at = None
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                received.append(line.removeprefix("data: "))
                if signalled_at is None and len(received) >= 2:
                    gateway.send_signal(signal.SIGTERM)  # what the kubelet does after preStop
                    signalled_at = time.monotonic()
                    wait_until(lambda: refuses_connections(port), what="after SIGTERM the gateway stops accepting")
        assert signalled_at is not None, "the stream ended before the gateway could be signalled"
        stream_s = time.monotonic() - signalled_at

        assert received[-1] == "[DONE]", "the in-flight stream was cut short"
        chunks = [json.loads(data) for data in received[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert text == content
        assert any("stepblend" in c for c in chunks), "the closing stepblend chunk was sent"
        assert stream_s > CHUNK_DELAY_MS / 1000 * (WORDS / 2), "the stream was still in flight at SIGTERM"

        returncode = gateway.wait(timeout=GRACE_S - stream_s)
        assert returncode == 0, f"the gateway exited with {returncode}"
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()

    # The usage event left with the gateway: billing settles it into the ledger.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with sqlite3.connect(backend.data_dir / "billing.db") as db:
            rows = db.execute("SELECT request_id FROM ledger_entries WHERE request_id = ?", (request_id,)).fetchall()
        if rows:
            break
        time.sleep(0.2)
    assert rows, f"no ledger entry for {request_id}: the gateway exited without publishing its usage event"
