"""The real router gRPC server, in-process on a random port, called through a channel."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import Settings
from services.common.grpcio import channel
from services.router.catalog import Catalog, CatalogError
from services.router.main import SERVICE_NAME, serve, start
from stepblend.v1 import router_pb2, router_pb2_grpc
from tests.support.procs import free_port, wait_port

TOKEN = "router-test-token"


def settings(port: int = 0) -> Settings:
    return dataclasses.replace(
        Settings.from_env(), host="127.0.0.1", port=port, internal_token=TOKEN
    )


@pytest.fixture
async def address(catalog: Catalog) -> AsyncIterator[str]:
    server, port = await start(settings(), catalog)
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def test_route_over_grpc(address: str) -> None:
    async with channel(address, TOKEN) as ch:
        stub = router_pb2_grpc.RouterStub(ch)
        response = await stub.Route(
            router_pb2.RouteRequest(
                model="lowest-cost",
                features=router_pb2.RequestFeatures(prompt_tokens=1000),
                max_cost_usd="0.01",
                connected_providers=["openai", "groq"],
            ),
            timeout=5,
        )
    assert response.WhichOneof("result") == "decision"
    decision = response.decision
    assert decision.strategy_used == "lowest_cost"
    assert decision.catalog_version == "2026-11-01"
    first = decision.candidates[0]
    assert (first.provider, first.model, first.upstream_model) == (
        "groq",
        "llama-3.1-8b-instant",
        "llama-3.1-8b-instant",
    )
    assert first.input_price_per_mtok == "0.05" and first.output_price_per_mtok == "0.08"
    assert first.output_budget > 0
    assert all(float(c.estimated_cost_usd) <= 0.01 for c in decision.candidates)
    assert "e" not in first.estimated_cost_usd.lower()
    o3 = next(c for c in decision.candidates if c.model == "o3-mini")
    assert dict(o3.param_renames) == {"max_tokens": "max_completion_tokens"}
    assert "temperature" in o3.unsupported_params


async def test_refusal_over_grpc(address: str) -> None:
    async with channel(address, TOKEN) as ch:
        response = await router_pb2_grpc.RouterStub(ch).Route(
            router_pb2.RouteRequest(model="deepseek-chat", connected_providers=["openai"]),
            timeout=5,
        )
    assert response.WhichOneof("result") == "refusal"
    assert response.refusal.code == "provider_not_connected"
    assert "PUT /api/v1/account/keys/deepseek" in response.refusal.message


async def test_call_without_token_is_unauthenticated(address: str) -> None:
    for token in ("", "wrong-token"):
        async with channel(address, token) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await router_pb2_grpc.RouterStub(ch).Route(
                    router_pb2.RouteRequest(model="gpt-4o"), timeout=5
                )
        assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_health_is_open_and_serving(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_serve_runs_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPBLEND_CATALOG_FILE", raising=False)
    port = free_port()
    task = asyncio.create_task(serve(settings(port)))
    await asyncio.to_thread(wait_port, port)
    async with channel(f"127.0.0.1:{port}", TOKEN) as ch:
        response = await router_pb2_grpc.RouterStub(ch).Route(
            router_pb2.RouteRequest(model="gpt-4o", connected_providers=["openai"]), timeout=5
        )
    assert response.decision.candidates[0].model == "gpt-4o"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError):
        await asyncio.to_thread(wait_port, port, 0.3)


async def test_serve_refuses_a_bad_catalog(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "catalog.toml"
    bad.write_text('version = "x"\n[[models]]\nid = "m"\nprovider = "nope"\n')
    monkeypatch.setenv("STEPBLEND_CATALOG_FILE", str(bad))
    with pytest.raises(CatalogError, match="missing fields"):
        await serve(settings())
