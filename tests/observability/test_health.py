"""The gateway's probes as SPEC.md defines them: `/healthz` while the process lives;
`/readyz` while it reaches NATS — a downstream outage (router, providers, billing
all down) leaves it ready, with OpenAI-shaped 503s for requests and the outage in
`/readyz?verbose=1`; losing NATS makes it unready until NATS is back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.common.config import Settings
from services.gateway.auth import Keyring
from tests.support.procs import NatsServer, free_port, wait_port

SECRET = "health-test-secret-0123456789abcdef"


@pytest.fixture
def lonely_gateway(tmp_path: Path) -> Iterator[tuple[str, NatsServer]]:
    """A gateway whose router, providers and billing addresses answer nothing."""
    nats = NatsServer(tmp_path / "nats").start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPBLEND_", "OTEL_"))}
    env.update(
        STEPBLEND_DATA_DIR=str(tmp_path),
        STEPBLEND_NATS_URL=nats.url,
        STEPBLEND_JWT_SECRET=SECRET,
        STEPBLEND_PORT=str(port),
        STEPBLEND_ROUTER_ADDR=f"127.0.0.1:{free_port()}",
        STEPBLEND_PROVIDERS_ADDR=f"127.0.0.1:{free_port()}",
        STEPBLEND_BILLING_ADDR=f"127.0.0.1:{free_port()}",
    )
    log = (tmp_path / "gateway.log").open("wb")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "stepblend", "serve", "gateway"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}", nats
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(20)
        except subprocess.TimeoutExpired:
            gateway.kill()
        log.close()
        nats.stop()


def _eventually(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_downstream_outage_leaves_the_gateway_ready_with_503s(
    lonely_gateway: tuple[str, NatsServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, nats = lonely_gateway
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}

    verbose = httpx.get(f"{url}/readyz", params={"verbose": 1})
    assert verbose.status_code == 200
    dependencies = verbose.json()["dependencies"]
    assert dependencies["nats"] == "connected"
    for service in ("router", "providers", "billing"):
        assert dependencies[service].startswith("unavailable"), dependencies

    monkeypatch.setenv("STEPBLEND_JWT_SECRET", SECRET)
    token = Keyring.from_settings(Settings.from_env()).issue("acct-health")
    response = httpx.post(
        f"{url}/api/v1/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=30,
    )
    assert response.status_code == 503
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "api_error" and error["code"] == "billing_unavailable"
    assert response.headers["x-request-id"]
    # The operator's log says why.
    logged = (tmp_path / "gateway.log").read_text()
    assert "a call to StepBlend's billing service failed: UNAVAILABLE" in logged, logged
    assert httpx.get(f"{url}/readyz").status_code == 200

    # NATS is the one dependency readiness is about.
    nats.stop()
    _eventually(lambda: httpx.get(f"{url}/readyz").status_code == 503)
    assert httpx.get(f"{url}/readyz").json()["status"] == "not_ready"
    assert httpx.get(f"{url}/healthz").status_code == 200
    restarted = NatsServer(nats.store, nats.port).start()
    try:
        _eventually(lambda: httpx.get(f"{url}/readyz").status_code == 200)
    finally:
        restarted.stop()
