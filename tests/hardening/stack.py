"""A real StepBlend for the hardening tests, started the way `stepblend up` starts it.

`Stack` runs `stepblend up`'s own `Supervisor` (embedded nats-server with
JetStream, router, providers, billing and the gateway as processes, secrets
generated into the data dir, `services.json` written) plus the mock provider,
and remembers how each child was launched, so a test can `kill -9` any one of
them and start it again on the same port, with the same environment and store.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from stepblend.control import Control
from stepblend.up import Supervisor, wait_grpc_health, wait_http_ready, wait_tcp
from tests.support.procs import free_port

PROVIDERS = ("openai", "anthropic", "groq", "deepseek", "mistral", "together", "xai")
PLANS = 'default_plan = "free"\n[plans]\nfree = 1000\nstarter = 50000\npro = 1000000\nenterprise = 0\n'
GRPC_SERVICES = ("router", "providers", "billing")


@dataclass
class Tree(Supervisor):
    """`stepblend up`'s supervisor, remembering each child's command and environment."""

    launched: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self.launched[name] = (list(args), dict(env))
        self.procs = [(n, p) for n, p in self.procs if n != name]
        return super().spawn(name, args, env)


@dataclass
class Account:
    email: str
    account_id: str
    token: str
    keys: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """Run with exactly `env` as os.environ (the supervisor and the CLI read it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class Stack:
    root: Path
    tree: Tree
    env: dict[str, str]
    addresses: dict[str, str]
    mock_url: str

    @property
    def gateway_url(self) -> str:
        return self.addresses["gateway"]

    @property
    def base_url(self) -> str:
        return self.addresses["gateway"] + "/api/v1"

    @property
    def internal_token(self) -> str:
        return (self.root / "internal_token").read_text().strip()

    @property
    def jwt_secret(self) -> str:
        return (self.root / "jwt_secret").read_text().strip()

    def proc(self, name: str) -> subprocess.Popen[bytes]:
        return next(p for n, p in self.tree.procs if n == name)

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.tree.procs if p.poll() is None}

    def kill9(self, name: str) -> None:
        proc = self.proc(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def terminate(self, name: str, timeout: float = 40) -> int:
        proc = self.proc(name)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def restart(self, name: str) -> float:
        """Start `name` again exactly as it was launched; return seconds until it serves."""
        started = time.monotonic()
        args, env = self.tree.launched[name]
        proc = self.tree.spawn(name, args, env)
        if name == "nats":
            wait_tcp(int(args[args.index("-p") + 1]), proc, name)
        elif name in GRPC_SERVICES:
            wait_grpc_health(self.addresses[name], proc, name)
        elif name == "gateway":
            wait_http_ready(self.gateway_url + "/readyz", proc)
        return time.monotonic() - started

    def control(self) -> Control:
        with environ(self.env):
            return Control.find(self.root)

    def account(self, plan: str = "enterprise", providers: tuple[str, ...] = PROVIDERS) -> Account:
        """A new account on `plan` with a random key stored for each of `providers`."""
        control = self.control()
        email = f"hard-{uuid.uuid4().hex[:12]}@example.com"
        account_id = control.create_account(email, plan)
        keys = {provider: f"sk-{provider}-{uuid.uuid4().hex}{uuid.uuid4().hex}" for provider in providers}
        for provider, key in keys.items():
            control.set_key(account_id, provider, key)
        return Account(email, account_id, control.token(account_id), keys)

    def counted(self, account_id: str) -> set[str]:
        """Request ids billing's ledger counts for the account."""
        with contextlib.closing(sqlite3.connect(f"file:{self.root / 'billing.db'}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT request_id FROM ledger_entries WHERE account_id = ? AND counted = 1", (account_id,)
            ).fetchall()
        return {row[0] for row in rows}

    def ledger(self, account_id: str) -> dict[str, bool]:
        """Every ledger row of the account: request id → counted."""
        with contextlib.closing(sqlite3.connect(f"file:{self.root / 'billing.db'}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT request_id, counted FROM ledger_entries WHERE account_id = ?", (account_id,)
            ).fetchall()
        return {row[0]: bool(row[1]) for row in rows}

    def mock(self, method: str, path: str, payload: Any = None) -> Any:
        response = httpx.request(method, f"{self.mock_url}{path}", json=payload, timeout=10)
        response.raise_for_status()
        return response.json()

    def logs(self) -> dict[str, str]:
        return {p.name: p.read_text(errors="replace") for p in sorted((self.root / "logs").glob("*.log"))}

    def tail(self) -> str:
        return "\n".join(f"--- {name}\n{text[-3000:]}" for name, text in self.logs().items())

    def stop(self) -> None:
        self.tree.stop()


def start_stack(root: Path, **extra_env: str) -> Stack:
    """The whole system in `root`, its providers all pointed at one mock provider."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    (root / "plans.toml").write_text(PLANS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPBLEND_")}
    env.update(STEPBLEND_DATA_DIR=str(root), STEPBLEND_PLANS_FILE=str(root / "plans.toml"))
    mock_port = free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    for provider in PROVIDERS:
        # Anthropic's base URL is the root that /v1/messages is appended to.
        env[f"STEPBLEND_{provider.upper()}_BASE_URL"] = (
            mock_url if provider == "anthropic" else f"{mock_url}/{provider}/v1"
        )
    env.update(extra_env)
    tree = Tree(data_dir=root.resolve(), port=free_port())
    mock = tree.spawn("mock", [sys.executable, "-m", "stepblend.mockprovider", "--port", str(mock_port)], env)
    try:
        wait_tcp(mock_port, mock, "mock provider")
        with environ(env):
            addresses = tree.start(demo=False)
    except BaseException:
        tree.stop()
        raise
    return Stack(root=root.resolve(), tree=tree, env=env, addresses=addresses, mock_url=mock_url)


@contextlib.contextmanager
def running(root: Path, **extra_env: str) -> Iterator[Stack]:
    stack = start_stack(root, **extra_env)
    try:
        yield stack
    except BaseException:
        print(stack.tail())
        raise
    finally:
        stack.stop()


def is_openai_error(body: Any) -> bool:
    """`{"error": {"message", "type", "param", "code"}}` with a string message and type."""
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return False
    error = body["error"]
    return (
        set(error) == {"message", "type", "param", "code"}
        and isinstance(error["message"], str)
        and bool(error["message"])
        and isinstance(error["type"], str)
        and (error["param"] is None or isinstance(error["param"], str))
        and (error["code"] is None or isinstance(error["code"], str))
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The OpenAI error object of a response, asserting its shape."""
    body = json.loads(response.content)
    assert is_openai_error(body), f"not an OpenAI error: {response.status_code} {response.text[:500]}"
    error: dict[str, Any] = body["error"]
    return error


def is_anthropic_error(body: Any) -> bool:
    """`{"type": "error", "error": {"type", "message"}}` with string type and message."""
    if not isinstance(body, dict) or body.get("type") != "error" or not isinstance(body.get("error"), dict):
        return False
    error = body["error"]
    return (
        set(body) == {"type", "error"}
        and set(error) == {"type", "message"}
        and isinstance(error["type"], str)
        and isinstance(error["message"], str)
        and bool(error["message"])
    )
