"""Fixtures for the providers service: the real mock provider in a thread, and the
real service (gRPC server, SQLite vault, nats-server) in the test event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from pydantic import SecretStr

from services.common import grpcio
from services.common.config import Settings
from services.gateway.errors import ApiError, from_domain
from services.providers.main import serve
from services.providers.timeouts import Timeouts
from services.providers.vault import new_kek
from stepblend.mockprovider import RunningMockProvider, start_in_thread
from stepblend.v1 import providers_pb2, providers_pb2_grpc, router_pb2
from tests.support.procs import NatsServer

INTERNAL_TOKEN = "test-internal-token"
REJECTED_KEY = "sk-rejected-0000000000000000"
# Short, so that timeout tests take about two seconds; long enough that a loaded
# machine does not turn an answer into a timeout (the mock's delays in those tests
# are at least twice as long).
TIMEOUTS = Timeouts(connect=2.0, read=2.0, total=20.0, first_token=2.0)


class Mock:
    """The mock provider and its control API."""

    def __init__(self, running: RunningMockProvider, http: httpx.AsyncClient) -> None:
        self.running = running
        self.base_url = running.base_url
        self._http = http

    async def behave(self, **behaviour: Any) -> None:
        response = await self._http.post("/_mock/behaviour", json=behaviour)
        response.raise_for_status()

    async def requests(self) -> list[dict[str, Any]]:
        response = await self._http.get("/_mock/requests")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    async def hung_up(self) -> list[dict[str, Any]]:
        """What the mock saw, once its first request's caller has hung up (else nothing)."""
        seen = await self.requests()
        return seen if seen and seen[0]["disconnected"] else []

    async def reset(self) -> None:
        await self._http.delete("/_mock/behaviour")
        await self._http.delete("/_mock/requests")


@pytest.fixture(scope="session")
def mock_provider() -> Iterator[RunningMockProvider]:
    running = start_in_thread(reject_keys=[REJECTED_KEY])
    yield running
    running.stop()


@pytest.fixture(scope="session")
async def mock_control(mock_provider: RunningMockProvider) -> AsyncIterator[Mock]:
    # One client for the session: building one loads the CA bundle (~0.1 s).
    async with httpx.AsyncClient(base_url=mock_provider.url) as http:
        yield Mock(mock_provider, http)


@pytest.fixture
async def mock(mock_control: Mock) -> AsyncIterator[Mock]:
    await mock_control.reset()
    yield mock_control
    await mock_control.reset()


@dataclasses.dataclass
class Service:
    address: str
    channel: grpc.aio.Channel
    providers: providers_pb2_grpc.ProvidersStub
    keys: providers_pb2_grpc.KeysStub

    def call(self, **request: Any) -> Any:
        # grpcio.channel() adds the token to unary calls only (grpc.aio files an
        # interceptor under its first matching kind), so streams send it explicitly.
        metadata = ((grpcio.TOKEN_HEADER, INTERNAL_TOKEN),)
        return self.providers.Execute(providers_pb2.ExecuteRequest(**request), metadata=metadata)

    async def messages(self, **request: Any) -> list[providers_pb2.ExecuteEvents]:
        """Execute's gRPC messages, each a batch of events."""
        return [message async for message in self.call(**request)]

    async def execute(self, **request: Any) -> list[providers_pb2.ExecuteEvent]:
        """Execute's events, whatever messages carried them."""
        return [event for message in await self.messages(**request) for event in message.events]


@contextlib.asynccontextmanager
async def running_service(
    nats_server: NatsServer, mock_provider: RunningMockProvider, data_dir: Path, **settings: Any
) -> AsyncIterator[Service]:
    """The providers service (`serve`) on a free port, its vendors at the mock, with
    `settings` over the test defaults."""
    configured = Settings.from_env().model_copy(
        update=dict(
            data_dir=data_dir,
            nats_url=nats_server.url,
            internal_token=INTERNAL_TOKEN,
            database_url=f"sqlite:///{data_dir}/providers.db",
            key_encryption_key=new_kek(),
            host="127.0.0.1",
            port=0,
            provider_base_urls={
                **{name: mock_provider.base_url for name in ("openai", "groq", "deepseek")},
                **{name: f"{mock_provider.url}/{name}/v1" for name in ("mistral", "together", "xai")},
                "anthropic": mock_provider.url,
                "gemini": mock_provider.url,
                "bedrock": f"{mock_provider.url}/bedrock",
            },
            **settings,
        )
    )
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(configured, timeouts=TIMEOUTS, on_ready=ready.set_result))
    done, _ = await asyncio.wait([ready, task], timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    address = f"127.0.0.1:{ready.result()}"
    channel = grpcio.channel(address, INTERNAL_TOKEN)
    try:
        yield Service(address, channel, providers_pb2_grpc.ProvidersStub(channel), providers_pb2_grpc.KeysStub(channel))
    finally:
        await channel.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture(scope="session")
async def service(
    nats_server: NatsServer, mock_provider: RunningMockProvider, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    async with running_service(nats_server, mock_provider, Path(tmp_path_factory.mktemp("providers"))) as running:
        yield running


@pytest.fixture
def account() -> str:
    return f"acct-{uuid.uuid4().hex[:12]}"


def candidate(provider: str, model: str, upstream: str | None = None, **fields: Any) -> router_pb2.Candidate:
    return router_pb2.Candidate(provider=provider, model=model, upstream_model=upstream or model, **fields)


class MemoryKeys:
    """A key source holding keys in memory (the vault's interface), by provider."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    async def plaintext(self, account_id: str, provider: str) -> SecretStr | None:
        key = self.keys.get(provider)
        return None if key is None else SecretStr(key)


def key_for(provider: str, account: str) -> str:
    """A distinct, realistic-looking key per provider and account."""
    return f"sk-{provider}-{account}-0123456789abcdef"


def http(error: providers_pb2.Error) -> ApiError:
    """A providers error as the gateway's HTTP edge answers it: what the client sees."""
    return from_domain(error)
