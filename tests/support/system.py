"""The real system for end-to-end tests: a mock provider process speaking every
vendor's wire format, and `stepblend up` (embedded nats-server, router,
providers, billing, gateway) in a data dir of the test's own.

`running_system(data_dir, **env)` starts both and yields a `System`; suites
that need a system of their own (other settings, processes to kill) call it
instead of copying this start-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.procs import free_port, wait_port

PROVIDERS = (
    *("openai", "anthropic", "groq", "deepseek", "mistral", "together", "xai", "gemini"),
    *("fireworks", "cerebras", "openrouter", "perplexity"),
)
TEST_PLANS = 'default_plan = "free"\n[plans]\nfree = 1000\nstarter = 50000\npro = 1000000\nenterprise = 0\ntiny = 3\n'


# The shared mock provider answers this key with 401 invalid_api_key, as a provider
# answers a revoked one.
REJECTED_KEY = "sk-rejected-e2e-0000000000000000"


@dataclass
class System:
    data_dir: Path
    base_url: str
    mock_url: str
    env: dict[str, str]
    chat_addr: str = ""
    up: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "stepblend", *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(f"stepblend {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    def mock_requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = httpx.get(f"{self.mock_url}/_mock/requests").json()
        return requests

    def ledger_rows(self, request_ids: list[str]) -> list[tuple[str, ...]]:
        import sqlite3

        with sqlite3.connect(self.data_dir / "billing.db") as db:
            marks = ",".join("?" * len(request_ids))
            return db.execute(
                f"SELECT request_id FROM ledger_entries WHERE request_id IN ({marks})", request_ids
            ).fetchall()


@dataclass
class Account:
    email: str
    token: str
    keys: dict[str, str]


def make_account(system: System, plan: str = "free") -> Account:
    """A fresh account with a key stored for every mocked provider: openai's through
    the CLI, the others through the HTTP API."""
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    token = system.cli("account", "create", email, "--plan", plan)
    keys = {provider: f"sk-{provider}-{uuid.uuid4().hex}" for provider in PROVIDERS}
    masked = system.cli("keys", "set", email, "openai", keys["openai"])
    assert keys["openai"] not in masked and masked.endswith(keys["openai"][-4:])
    for provider in PROVIDERS[1:]:
        response = httpx.put(
            f"{system.base_url}/account/keys/{provider}",
            headers={"authorization": f"Bearer {token}"},
            json={"api_key": keys[provider]},
        )
        assert response.status_code == 200, response.text
    return Account(email=email, token=token, keys=keys)


@contextmanager
def running_system(data_dir: Path, *up_args: str, **extra_env: str) -> Iterator[System]:
    """Start the mock provider and `stepblend up [up_args]`; stop both on exit."""
    mock_port = free_port()
    mock = subprocess.Popen(
        [sys.executable, "-m", "stepblend.mockprovider", "--port", str(mock_port), "--reject-key", REJECTED_KEY],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    up: subprocess.Popen[bytes] | None = None
    try:
        wait_port(mock_port)
        mock_url = f"http://127.0.0.1:{mock_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STEPBLEND_")}
        env["STEPBLEND_DATA_DIR"] = str(data_dir)
        plans = data_dir / "plans.toml"
        plans.write_text(TEST_PLANS)
        env["STEPBLEND_PLANS_FILE"] = str(plans)
        for provider in PROVIDERS:
            # The mock serves each vendor's flavour under its own prefix; Anthropic's and
            # Gemini's base URLs are the root their paths (/v1/messages, /v1beta/...) follow.
            env[f"STEPBLEND_{provider.upper()}_BASE_URL"] = (
                mock_url if provider in ("anthropic", "gemini") else f"{mock_url}/{provider}/v1"
            )
        # Every test's client is 127.0.0.1: the per-address sign-in limit is for the
        # public, not for a test session (the per-email one stays as shipped).
        env["STEPBLEND_AUTH_ATTEMPTS_PER_ADDRESS"] = "1000"
        # One gateway and one providers process, as before `--workers` (whose default is
        # the machine's cores); a suite that wants more passes `--workers N`.
        env["STEPBLEND_WORKERS"] = "1"
        env.update(extra_env)
        up = subprocess.Popen(
            [sys.executable, "-m", "stepblend", "up", "--port", str(free_port()), *up_args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not (data_dir / "services.json").exists():
            if up.poll() is not None or time.monotonic() > deadline:
                output = up.stdout.read().decode() if up.stdout and up.poll() is not None else ""
                raise RuntimeError(f"stepblend up failed:\n{output}")
            time.sleep(0.1)
        services = json.loads((data_dir / "services.json").read_text())
        yield System(
            data_dir=data_dir,
            base_url=services["gateway"] + "/api/v1",
            mock_url=mock_url,
            env=env,
            chat_addr=services["chat"],
            up=up,
        )
    finally:
        if up is not None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(40)
            except subprocess.TimeoutExpired:
                up.kill()
        mock.kill()
        mock.wait()
