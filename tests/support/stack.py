"""The replicated stack of separate processes (`python -m stepblend serve NAME`):
two gateways, two billings sharing one database, a router, providers, nats-server
and the mock provider, for the tests that kill, restart or replace some of them
(tests/e2e/test_plan_limits.py, tests/e2e/test_rolling_restart.py)."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.grpcio import TOKEN_HEADER
from stepblend.v1 import billing_pb2, billing_pb2_grpc
from tests.billing.pgcluster import PostgresCluster
from tests.support.procs import NatsServer, free_port, wait_port

START_TIMEOUT_S = 60.0
PLANS = 'default_plan = "trial"\n[plans]\ntrial = 50\nhundred = 100\nbig = 100000\n'
MODEL = "openai:gpt-4o-mini"


@dataclass
class Stack:
    """The running processes, and how to reach and restart them."""

    root: Path
    env: dict[str, str]
    billing_url: str
    mock_url: str
    billing_addrs: list[str]
    gateway_urls: list[str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    envs: dict[str, dict[str, str]] = field(default_factory=dict)

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.procs[name] = proc
        self.envs[name] = env
        return proc

    def serve(self, name: str, service: str, address: str, **extra: str) -> subprocess.Popen[bytes]:
        host, _, port = address.rpartition(":")
        env = dict(self.env, STEPBLEND_HOST=host, STEPBLEND_PORT=port, **extra)
        return self.spawn(name, [sys.executable, "-m", "stepblend", "serve", service], env)

    def kill9(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)

    def restart(self, name: str) -> None:
        args = [sys.executable, "-m", "stepblend", "serve", "billing"]
        self.spawn(name, args, self.envs[name])

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "stepblend", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"stepblend {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((self.root / "logs").glob("*.log")))

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_grpc(address: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{what} exited with {proc.returncode} while starting"
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.05)
    raise TimeoutError(f"{what} not healthy at {address}")


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited with {proc.returncode} while starting"
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready at {url}")


@contextlib.contextmanager
def running_stack(
    request: pytest.FixtureRequest, root: Path, lease_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """The processes started, on the backend `request.param` names (PostgreSQL: a new
    database in the session's cluster); `lease_env` added to every service's environment."""
    (root / "logs").mkdir()
    (root / "plans.toml").write_text(PLANS)
    if request.param == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        billing_url = cluster.url(cluster.create_database())
    else:
        billing_url = f"sqlite:///{root / 'billing.db'}"
    nats = NatsServer(root / "nats").start()
    mock_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPBLEND_")}
    env.update(
        STEPBLEND_DATA_DIR=str(root),
        STEPBLEND_NATS_URL=nats.url,
        STEPBLEND_JWT_SECRET=secrets.token_urlsafe(48),
        STEPBLEND_INTERNAL_TOKEN=secrets.token_urlsafe(32),
        STEPBLEND_KEY_ENCRYPTION_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        STEPBLEND_API_KEY_PEPPER=secrets.token_urlsafe(32),
        STEPBLEND_PLANS_FILE=str(root / "plans.toml"),
        STEPBLEND_OPENAI_BASE_URL=f"http://127.0.0.1:{mock_port}/v1",
        STEPBLEND_ROUTER_ADDR=f"127.0.0.1:{free_port()}",
        STEPBLEND_PROVIDERS_ADDR=f"127.0.0.1:{free_port()}",
        # The test's one account sends all 200 requests at once: the plan limit,
        # not the per-account concurrency limit, is what it measures.
        STEPBLEND_MAX_CONCURRENT_PER_ACCOUNT="0",
    )
    env.update(lease_env or {})
    billing_addrs = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    gateway_ports = [free_port() for _ in range(2)]
    env["STEPBLEND_BILLING_ADDR"] = billing_addrs[0]  # for the CLI
    running = Stack(
        root=root,
        env=env,
        billing_url=billing_url,
        mock_url=f"http://127.0.0.1:{mock_port}",
        billing_addrs=billing_addrs,
        gateway_urls=[f"http://127.0.0.1:{port}" for port in gateway_ports],
    )
    try:
        mock = running.spawn(
            "mock", [sys.executable, "-m", "stepblend.mockprovider", "--port", str(mock_port)], running.env
        )
        wait_port(mock_port)
        assert mock.poll() is None
        running.serve("router", "router", env["STEPBLEND_ROUTER_ADDR"])
        running.serve(
            "providers",
            "providers",
            env["STEPBLEND_PROVIDERS_ADDR"],
            STEPBLEND_DATABASE_URL=f"sqlite:///{root / 'providers.db'}",
        )
        # Both billings start together on one empty database: they take turns migrating it.
        for i, address in enumerate(billing_addrs):
            running.serve(f"billing-{i}", "billing", address, STEPBLEND_DATABASE_URL=billing_url)
        for name, address in [
            ("router", env["STEPBLEND_ROUTER_ADDR"]),
            ("providers", env["STEPBLEND_PROVIDERS_ADDR"]),
            ("billing-0", billing_addrs[0]),
            ("billing-1", billing_addrs[1]),
        ]:
            wait_grpc(address, running.procs[name], name)
        # Each gateway has its own billing, so killing one billing takes out one path.
        for i, port in enumerate(gateway_ports):
            running.serve(f"gateway-{i}", "gateway", f"127.0.0.1:{port}", STEPBLEND_BILLING_ADDR=billing_addrs[i])
        for i, url in enumerate(running.gateway_urls):
            wait_http(f"{url}/readyz", running.procs[f"gateway-{i}"], f"gateway-{i}")
        yield running
    except BaseException:
        print(running.logs())
        raise
    finally:
        running.stop()
        nats.stop()


def new_account(stack: Stack, plan: str) -> tuple[str, str, str]:
    """A new account on `plan` with an OpenAI key: (email, token, account id)."""
    email = f"limits-{uuid.uuid4().hex[:10]}@example.com"
    token = stack.cli("account", "create", email, "--plan", plan)
    stack.cli("keys", "set", email, "openai", f"sk-{uuid.uuid4().hex}")
    with grpc.insecure_channel(stack.billing_addrs[0]) as channel:
        reply = billing_pb2_grpc.BillingStub(channel).GetAccount(
            billing_pb2.GetAccountRequest(email=email), metadata=internal_metadata(stack), timeout=10
        )
    return email, token, str(reply.account.account_id)


def internal_metadata(stack: Stack) -> tuple[tuple[str, str], ...]:
    return ((TOKEN_HEADER, stack.env["STEPBLEND_INTERNAL_TOKEN"]),)


async def complete(client: httpx.AsyncClient, url: str, token: str, content: str) -> httpx.Response:
    return await client.post(
        f"{url}/api/v1/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": content}]},
    )
