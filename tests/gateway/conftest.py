"""The gateway in-process, for tests of its request path: the FastAPI app driven
through httpx's ASGI transport, with REAL services behind it in the test event
loop — router, providers and billing started from their own code, a real
nats-server, and the mock provider (the only fake: LLM providers) in a thread.
Billing is reached through a proxy that can hold its answers (proxy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from fastapi import FastAPI

from services.billing.main import serve as serve_billing
from services.billing.options import BillingOptions
from services.common import grpcio
from services.common.config import Settings
from services.gateway.app import create_app
from services.gateway.deps import Deps
from services.gateway.invalidation import Invalidations
from services.gateway.settings import GatewaySettings
from services.providers.main import serve as serve_providers
from services.providers.timeouts import Timeouts
from services.providers.vault import new_kek
from services.router.main import catalog_from_env
from services.router.main import start as start_router
from stepblend.mockprovider import RunningMockProvider, start_in_thread
from stepblend.v1 import billing_pb2_grpc
from tests.gateway.proxy import HoldingProxy
from tests.support.procs import NatsServer, free_port

INTERNAL_TOKEN = "gateway-test-internal-token"
JWT_SECRET = "gateway-tests-jwt-secret-0123456789abcdef"
# A stream whose first token takes longer than this gets keep-alives.
KEEPALIVE_S = 0.3
TIMEOUTS = Timeouts(connect=2.0, read=2.0, total=20.0, first_token=5.0)


@dataclass
class Stack:
    app: FastAPI
    http: httpx.AsyncClient
    mock_url: str
    billing: billing_pb2_grpc.BillingStub
    billing_proxy: HoldingProxy
    settings: Settings

    @contextlib.asynccontextmanager
    async def another_gateway(self, gateway: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
        """A second gateway in front of the same services, with its own settings."""
        app = create_app(self.settings, gateway)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://x") as http,
        ):
            yield http

    @property
    def deps(self) -> Deps:
        deps: Deps = self.app.state.deps
        return deps

    @property
    def invalidations(self) -> Invalidations:
        invalidations: Invalidations = self.app.state.invalidations
        return invalidations

    async def behave(self, **behaviour: Any) -> None:
        async with httpx.AsyncClient(base_url=self.mock_url) as mock:
            (await mock.post("/_mock/behaviour", json=behaviour)).raise_for_status()

    async def reset_mock(self) -> None:
        async with httpx.AsyncClient(base_url=self.mock_url) as mock:
            (await mock.delete("/_mock/behaviour")).raise_for_status()

    async def account(self) -> tuple[str, dict[str, str]]:
        """A new account with an OpenAI key: its id, and the headers of its requests."""
        signup = await self.http.post(
            "/api/v1/auth/signup", json={"email": f"u-{uuid.uuid4().hex[:12]}@example.com", "password": "pw-12345678"}
        )
        assert signup.status_code == 201, signup.text
        headers = {"authorization": f"Bearer {signup.json()['token']}"}
        put = await self.http.put("/api/v1/account/keys/openai", headers=headers, json={"api_key": "sk-openai-test"})
        assert put.status_code == 200, put.text
        return signup.json()["account_id"], headers


@pytest.fixture(scope="session")
def mock_provider() -> Iterator[RunningMockProvider]:
    running = start_in_thread()
    yield running
    running.stop()


async def _wait_serving(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 20)


@pytest.fixture(scope="session")
def stack_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """The stack's own nats-server: its billing's durable consumer must not take the
    usage events other suites' billings are waiting for on the shared one."""
    server = NatsServer(Path(tmp_path_factory.mktemp("gateway-nats"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def stack(
    stack_nats: NatsServer, mock_provider: RunningMockProvider, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    nats_server = stack_nats
    data_dir = Path(tmp_path_factory.mktemp("gateway-stack"))
    base = Settings.from_env().model_copy(
        update=dict(
            data_dir=data_dir,
            nats_url=nats_server.url,
            internal_token=INTERNAL_TOKEN,
            jwt_secret=JWT_SECRET,
            api_key_pepper="gateway-stack-api-key-pepper",
            key_encryption_key=new_kek(),
            host="127.0.0.1",
            plans_file="",
            signup_enabled=True,
            billing_fail_open=False,
            sse_keepalive_s=KEEPALIVE_S,
            chat_port=None,
            provider_base_urls={"openai": mock_provider.base_url},
        )
    )
    router, router_port = await start_router(base.model_copy(update={"port": 0}), catalog_from_env())
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    providers = asyncio.create_task(
        serve_providers(
            base.model_copy(update={"port": 0, "database_url": f"sqlite:///{data_dir}/providers.db"}),
            timeouts=TIMEOUTS,
            on_ready=ready.set_result,
        )
    )
    billing_port = free_port()
    # Every account of the session signs up from 127.0.0.1: the per-address sign-in
    # limit is for the public, not for a test session (the per-email one stays).
    options = BillingOptions.from_env()
    options = dataclasses.replace(options, auth_limits=dataclasses.replace(options.auth_limits, per_address=100_000))
    billing = asyncio.create_task(serve_billing(base.model_copy(update={"port": billing_port}), options=options))
    tasks = [providers, billing]
    try:
        done, _ = await asyncio.wait([ready, providers], timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if providers in done:
            providers.result()
        await _wait_serving(f"127.0.0.1:{billing_port}")
        proxy = await HoldingProxy(billing_port).start()
        settings = base.model_copy(
            update={
                "router_addr": f"127.0.0.1:{router_port}",
                "providers_addr": f"127.0.0.1:{ready.result()}",
                "billing_addr": f"127.0.0.1:{proxy.port}",
            }
        )
        app = create_app(settings, GatewaySettings())
        billing_channel = grpcio.channel(f"127.0.0.1:{billing_port}", INTERNAL_TOKEN)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
                billing_stub = billing_pb2_grpc.BillingStub(billing_channel)
                yield Stack(app, http, mock_provider.url, billing_stub, proxy, settings)
        await billing_channel.close()
        await proxy.stop()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await router.stop(None)


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[Stack]:
    await stack.reset_mock()
    yield stack
    await stack.reset_mock()
