"""The real router gRPC server, in-process on a random port, called through a channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import Settings
from services.common.grpcio import channel
from services.router.catalog import Catalog, CatalogError
from services.router.main import SERVICE_NAME, RouterOptions, serve, start
from stepblend.v1 import router_pb2, router_pb2_grpc
from tests.support.procs import free_port, wait_port

TOKEN = "router-test-token"


def settings(port: int = 0) -> Settings:
    return Settings.from_env().model_copy(update=dict(host="127.0.0.1", port=port, internal_token=TOKEN))


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
    assert decision.catalog_version == "2026-12-05"
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
    assert [c.score for c in decision.candidates] == sorted((c.score for c in decision.candidates), reverse=True)
    assert first.cached_input_price_per_mtok == ""  # Groq publishes none
    gpt4o = next(c for c in decision.candidates if c.model == "gpt-4o")
    assert gpt4o.cached_input_price_per_mtok == "1.25"
    assert not decision.excluded  # only filled when explain is set


async def test_route_explains_every_exclusion_over_grpc(address: str, catalog: Catalog) -> None:
    async with channel(address, TOKEN) as ch:
        response = await router_pb2_grpc.RouterStub(ch).Route(
            router_pb2.RouteRequest(
                model="fastest",
                features=router_pb2.RequestFeatures(prompt_tokens=1000, needs_vision=True),
                max_cost_usd="0.002",
                connected_providers=["openai", "groq", "anthropic"],
                explain=True,
            ),
            timeout=5,
        )
    decision = response.decision
    listed = {(c.provider, c.model) for c in decision.candidates} | {(e.provider, e.model) for e in decision.excluded}
    assert listed == {(e.provider, e.id) for e in catalog.models}
    reasons = {e.reason for e in decision.excluded}
    assert {"not_connected", "lacks_vision", "over_cap"} <= reasons
    assert all(e.detail for e in decision.excluded)
    mistral = next(e for e in decision.excluded if e.provider == "mistral")
    assert (mistral.reason, mistral.detail) == ("not_connected", "no mistral key connected")


async def test_forced_model_explains_the_other_models(address: str, catalog: Catalog) -> None:
    async with channel(address, TOKEN) as ch:
        response = await router_pb2_grpc.RouterStub(ch).Route(
            router_pb2.RouteRequest(model="gpt-4o", connected_providers=["openai"], explain=True),
            timeout=5,
        )
    decision = response.decision
    assert [c.model for c in decision.candidates] == ["gpt-4o"]
    assert len(decision.excluded) == len(catalog.models) - 1
    # The other row of gpt-4o is Azure's, not connected here.
    assert {(e.reason, e.provider) for e in decision.excluded if e.model == "gpt-4o"} == {("not_connected", "azure")}
    assert {e.reason for e in decision.excluded if e.model != "gpt-4o"} == {"not_requested"}


async def test_list_models_over_grpc(address: str, catalog: Catalog) -> None:
    async with channel(address, TOKEN) as ch:
        response = await router_pb2_grpc.RouterStub(ch).ListModels(router_pb2.ListModelsRequest(), timeout=5)
    assert response.catalog_version == catalog.version
    chat = [(m.provider, m.id) for m in response.models if not m.kind]
    assert chat == [(e.provider, e.id) for e in catalog.models]
    embedding = {m.id: (m.kind, m.dimensions) for m in response.models if m.kind}
    assert embedding == {e.id: ("embedding", e.dimensions) for e in catalog.embeddings}
    assert embedding["text-embedding-3-small"] == ("embedding", 1536)
    sonnet = next(m for m in response.models if m.id == "claude-sonnet-4-20250514")
    assert (sonnet.provider, sonnet.input_price_per_mtok, sonnet.output_price_per_mtok) == (
        "anthropic",
        "3",
        "15",
    )
    assert (sonnet.context_window, sonnet.max_output_tokens) == (200000, 64000)
    assert sonnet.tools and sonnet.vision and not sonnet.json_schema
    assert list(sonnet.aliases) == ["claude-sonnet-4-0"]


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
                await router_pb2_grpc.RouterStub(ch).Route(router_pb2.RouteRequest(model="gpt-4o"), timeout=5)
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
    bad.write_text(
        'version = "x"\n[tokenizers.o200k_base]\nmargin = "1"\nbasis = "exact"\n'
        '[[models]]\nid = "m"\nprovider = "nope"\n'
    )
    monkeypatch.setenv("STEPBLEND_CATALOG_FILE", str(bad))
    with pytest.raises(CatalogError, match="missing fields"):
        await serve(settings())


def test_router_options_from_env() -> None:
    options = RouterOptions.from_env(
        {
            "STEPBLEND_ROUTER_BREAKER_FAILURES": "3",
            "STEPBLEND_ROUTER_BREAKER_COOLDOWN_S": "12.5",
            "STEPBLEND_ROUTER_STATS_REPLAY_S": "900",
        }
    )
    assert options.breaker.consecutive_failures == 3
    assert options.breaker.cooldown_s == 12.5
    assert options.consumer.replay_s == 900
    assert options.consumer.max_age_s >= 900
    defaults = RouterOptions.from_env({})
    assert (defaults.breaker.consecutive_failures, defaults.breaker.cooldown_s) == (5, 30.0)
    assert defaults.consumer.replay_s == 300


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STEPBLEND_ROUTER_BREAKER_FAILURES", "many"),
        ("STEPBLEND_ROUTER_BREAKER_FAILURES", "0"),
        ("STEPBLEND_ROUTER_BREAKER_COOLDOWN_S", "-1"),
        ("STEPBLEND_ROUTER_STATS_REPLAY_S", "nan"),
    ],
)
def test_bad_router_options_stop_the_router(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        RouterOptions.from_env({name: value})
