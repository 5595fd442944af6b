"""One streamed request is one trace: gateway → router, billing, providers (and the
provider's HTTP call) over gRPC, → billing's and the router's consumers over NATS;
the provider call in the GenAI conventions; the metrics operators chart."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import grpc
import httpx
import openai
import pytest

from stepblend.v1 import (
    chat_pb2,
    chat_pb2_grpc,
    providers_pb2,
    providers_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from tests.observability import otlp
from tests.observability.conftest import Observed
from tests.support.system import make_account

EXECUTE = "/stepblend.v1.Providers/Execute"


def _consumer_span(receiver: otlp.Receiver, request_id: str, service: str) -> otlp.Span | None:
    for span in receiver.snapshot()[0]:
        if (
            span.service == service
            and span.kind == "CONSUMER"
            and span.attributes.get("messaging.message.id") == request_id
        ):
            return span
    return None


def _streamed(observed: Observed, token: str, content: str, model: str = "gpt-4o-mini") -> str:
    sdk = openai.OpenAI(api_key=token, base_url=observed.system.base_url, max_retries=0)
    stream = sdk.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": content}],
        stream=True,
        stream_options={"include_usage": True},
    )
    request_id = stream.response.headers["x-request-id"]
    chunks = list(stream)
    assert chunks[-1].model_extra["stepblend"]["routed_model"] == model
    return request_id


def _one(spans: list[otlp.Span], service: str, name: str, kind: str) -> otlp.Span:
    found = [s for s in spans if s.service == service and s.name == name and s.kind == kind]
    assert len(found) == 1, f"{name} [{kind}, {service}] x{len(found)} in:\n" + "\n".join(otlp.tree(spans))
    return found[0]


def test_one_streamed_request_is_one_trace(observed: Observed) -> None:
    account = make_account(observed.system)
    request_id = _streamed(observed, account.token, "Tell me about tracing")
    receiver = observed.receiver

    def complete(receiver: otlp.Receiver) -> list[otlp.Span] | None:
        billing = _consumer_span(receiver, request_id, "stepblend-billing")
        router = _consumer_span(receiver, request_id, "stepblend-router")
        if billing is None or router is None:
            return None
        spans = receiver.trace(billing.trace_id)
        services = {s.service for s in spans}
        names = {s.name for s in spans}
        wanted = {"stepblend-gateway", "stepblend-router", "stepblend-providers", "stepblend-billing"}
        # Every span the assertions read, the gateway's edge included: it ends (and is
        # exported) after the response, so it may arrive after the consumers' spans.
        edge = "POST /api/v1/chat/completions"
        return spans if services >= wanted and {"chat gpt-4o-mini", "POST", edge} <= names else None

    spans = receiver.wait_for(complete)
    assert spans, "no complete trace; spans seen:\n" + "\n".join(
        f"{s.service} {s.name} {s.kind} {s.trace_id}" for s in receiver.snapshot()[0]
    )
    rendered = "\n".join(otlp.tree(spans))
    print(rendered)
    if out := os.environ.get("STEPBLEND_TRACE_TREE_OUT"):
        Path(out).write_text(rendered + "\n")
    by_id = {s.span_id: s for s in spans}

    # The HTTP edge is the root; every gRPC call is a client span with the server's span under it.
    # Admission: the account's first request, so its gateway leases slots of the month.
    edge = _one(spans, "stepblend-gateway", "POST /api/v1/chat/completions", "SERVER")
    assert edge.parent_id == ""
    for service, method in (
        ("stepblend-router", "/stepblend.v1.Router/Route"),
        ("stepblend-billing", "/stepblend.v1.Billing/Lease"),
        ("stepblend-providers", EXECUTE),
    ):
        client = _one(spans, "stepblend-gateway", method, "CLIENT")
        server = _one(spans, service, method, "SERVER")
        assert server.parent_id == client.span_id
        assert by_id[client.parent_id] is edge

    # StepBlend's own attributes on the edge span.
    assert edge.attributes["stepblend.request_id"] == request_id
    assert edge.attributes["stepblend.strategy"] == "force_model"
    assert edge.attributes["stepblend.candidates"] >= 1
    assert edge.attributes["stepblend.fallbacks"] == 0
    assert edge.attributes["stepblend.admission"] == "admitted"
    assert edge.attributes["stepblend.outcome"] == "completed"
    assert edge.attributes["stepblend.cost.actual_usd"] > 0
    assert edge.attributes["stepblend.cost.estimated_usd"] >= edge.attributes["stepblend.cost.actual_usd"]
    assert edge.attributes["stepblend.overhead_ms"] >= 0

    # The provider call: a GenAI CLIENT span under Execute, the HTTP call under it.
    execute = _one(spans, "stepblend-providers", EXECUTE, "SERVER")
    chat = _one(spans, "stepblend-providers", "chat gpt-4o-mini", "CLIENT")
    assert chat.parent_id == execute.span_id
    gen_ai = chat.attributes
    assert gen_ai["gen_ai.operation.name"] == "chat"
    assert gen_ai["gen_ai.provider.name"] == "openai"
    assert gen_ai["gen_ai.request.model"] == "gpt-4o-mini"
    assert gen_ai["gen_ai.response.model"] == "gpt-4o-mini"
    assert gen_ai["gen_ai.request.stream"] is True
    assert gen_ai["gen_ai.usage.input_tokens"] > 0 and gen_ai["gen_ai.usage.output_tokens"] > 0
    assert gen_ai["gen_ai.response.finish_reasons"] == ["stop"]
    assert gen_ai["gen_ai.response.time_to_first_chunk"] > 0
    assert gen_ai["server.address"] == "127.0.0.1" and gen_ai["server.port"] == observed.mock_port
    upstream = _one(spans, "stepblend-providers", "POST", "CLIENT")
    assert upstream.parent_id == chat.span_id
    assert upstream.attributes["url.full"] == f"http://127.0.0.1:{observed.mock_port}/openai/v1/chat/completions"
    assert upstream.attributes["http.response.status_code"] == 200

    # The usage event: produced in the request, consumed by billing and the router as children.
    produced = _one(spans, "stepblend-gateway", "create usage.v1.completed", "PRODUCER")
    assert by_id[produced.parent_id] is edge
    for service in ("stepblend-billing", "stepblend-router"):
        consumer = _one(spans, service, "process usage.v1.completed", "CONSUMER")
        assert consumer.parent_id == produced.span_id
        assert consumer.attributes["messaging.system"] == "nats"
        assert consumer.attributes["messaging.destination.name"] == "usage.v1.completed"
        assert consumer.attributes["messaging.operation.type"] == "process"
    assert (
        _one(spans, "stepblend-billing", "process usage.v1.completed", "CONSUMER").attributes[
            "messaging.consumer.group.name"
        ]
        == "billing"
    )


def test_metrics(observed: Observed) -> None:
    account = make_account(observed.system)
    _streamed(observed, account.token, "metrics please")
    # A fallback: the first candidate of a strategy fails once.
    mock = observed.system.mock_url
    httpx.post(f"{mock}/_mock/behaviour", json={"model": "*", "status": 503, "times": 1}).raise_for_status()
    try:
        sdk = openai.OpenAI(api_key=account.token, base_url=observed.system.base_url, max_retries=0)
        answer = sdk.chat.completions.create(
            model="lowest-cost", messages=[{"role": "user", "content": "fall back"}], max_tokens=50
        )
    finally:
        httpx.delete(f"{mock}/_mock/behaviour").raise_for_status()
    assert answer.model_extra["stepblend"]["attempts"][0]["outcome"] == "provider_error"
    # A plan refusal: the `tiny` plan allows three requests a month.
    tiny = make_account(observed.system, plan="tiny")
    for _ in range(3):
        _streamed(observed, tiny.token, "allowed")
    with pytest.raises(openai.RateLimitError):
        _streamed(observed, tiny.token, "one too many")

    wanted = {
        ("stepblend-providers", "gen_ai.client.token.usage"),
        ("stepblend-providers", "gen_ai.client.operation.duration"),
        ("stepblend-providers", "gen_ai.client.operation.time_to_first_chunk"),
        ("stepblend-gateway", "stepblend.requests"),
        ("stepblend-gateway", "stepblend.request.duration"),
        ("stepblend-gateway", "stepblend.time_to_first_chunk"),
        ("stepblend-gateway", "stepblend.gateway.overhead"),
        ("stepblend-gateway", "stepblend.cost.usd"),
        ("stepblend-gateway", "stepblend.fallbacks"),
        ("stepblend-gateway", "stepblend.plan.refusals"),
        ("stepblend-gateway", "http.server.request.duration"),
    }
    receiver = observed.receiver
    receiver.wait_for(lambda r: wanted <= {(p.service, p.metric) for p in r.snapshot()[1]})
    points = receiver.snapshot()[1]
    assert wanted - {(p.service, p.metric) for p in points} == set()

    def latest(metric: str, **attrs: object) -> list[otlp.Point]:
        return [p for p in points if p.metric == metric and all(p.attributes.get(k) == v for k, v in attrs.items())]

    tokens = {p.attributes["gen_ai.token.type"] for p in latest("gen_ai.client.token.usage")}
    assert tokens == {"input", "output"}
    usage = latest("gen_ai.client.token.usage", **{"gen_ai.provider.name": "openai", "gen_ai.token.type": "output"})
    assert usage and usage[-1].value[0] >= 1 and usage[-1].attributes["server.address"] == "127.0.0.1"
    failed = latest("gen_ai.client.operation.duration", **{"error.type": "provider_error"})
    assert failed, "the failed attempt's duration carries error.type"
    assert max(p.value for p in latest("stepblend.fallbacks", **{"stepblend.attempt.outcome": "provider_error"})) >= 1
    assert max(p.value for p in latest("stepblend.plan.refusals", **{"stepblend.plan": "tiny"})) >= 1
    assert max(p.value for p in latest("stepblend.requests", **{"stepblend.outcome": "completed"})) >= 3
    assert max(p.value for p in latest("stepblend.cost.usd")) > 0
    overhead = latest("stepblend.gateway.overhead")
    assert overhead and all(count >= 1 and total >= 0 for count, total in (p.value for p in overhead))


def test_traces_cross_a_failed_attempt(observed: Observed) -> None:
    """A fallback shows as two `chat` spans under one Execute, the first in error."""
    account = make_account(observed.system)
    mock = observed.system.mock_url
    httpx.post(f"{mock}/_mock/behaviour", json={"model": "*", "status": 503, "times": 1}).raise_for_status()
    try:
        sdk = openai.OpenAI(api_key=account.token, base_url=observed.system.base_url, max_retries=0)
        raw = sdk.chat.completions.with_raw_response.create(
            model="lowest-cost", messages=[{"role": "user", "content": f"again {uuid.uuid4().hex}"}], max_tokens=50
        )
    finally:
        httpx.delete(f"{mock}/_mock/behaviour").raise_for_status()
    request_id = raw.headers["x-request-id"]
    receiver = observed.receiver
    consumer = receiver.wait_for(lambda r: _consumer_span(r, request_id, "stepblend-billing"))
    assert consumer is not None

    def chats(receiver: otlp.Receiver) -> list[otlp.Span] | None:
        found = [s for s in receiver.trace(consumer.trace_id) if s.name.startswith("chat ")]
        return found if len(found) == 2 else None

    first, second = receiver.wait_for(chats)
    assert first.attributes["error.type"] == "provider_error" and first.status == 2  # STATUS_CODE_ERROR
    assert "error.type" not in second.attributes
    # The gateway's edge span is exported after the response: it may come after the others.
    edge = receiver.wait_for(
        lambda r: next(
            (s for s in r.trace(consumer.trace_id) if s.kind == "SERVER" and s.service == "stepblend-gateway"), None
        )
    )
    assert edge is not None
    assert edge.attributes["stepblend.fallbacks"] == 1
    assert edge.attributes["stepblend.strategy"] == "lowest_cost"
    # The providers' log line about the failed attempt leads to this trace.
    lines = [line for line in observed.logs().splitlines() if request_id in line and "failed" in line]
    assert lines and all(f'"trace_id":"{consumer.trace_id}"' in line for line in lines), lines


async def test_refused_internal_calls_are_refused_not_broken_by_tracing(observed: Observed) -> None:
    """The tracing interceptor runs before the internal-token check, on unary calls
    and on Execute (a streaming handler written with context.write)."""
    services = json.loads((observed.system.data_dir / "services.json").read_text())
    async with grpc.aio.insecure_channel(services["providers"]) as channel:
        call = providers_pb2_grpc.ProvidersStub(channel).Execute(providers_pb2.ExecuteRequest(request_id="x"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in call:
                pass
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with grpc.aio.insecure_channel(services["router"]) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await router_pb2_grpc.RouterStub(channel).Route(router_pb2.RouteRequest(model="gpt-4o"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_grpc_chat_stream_is_one_trace_too(observed: Observed) -> None:
    """The gateway's gRPC Chat API: its server span is the root, with the same
    stepblend.* attributes and the same children as the HTTP edge's."""
    account = make_account(observed.system)
    request = chat_pb2.ChatRequest(
        model="gpt-4o-mini", messages=[chat_pb2.ChatMessage(role="user", content="over gRPC")], include_usage=True
    )
    async with grpc.aio.insecure_channel(observed.system.chat_addr) as channel:
        call = chat_pb2_grpc.ChatStub(channel).CompleteStream(
            request, metadata=(("authorization", f"Bearer {account.token}"),)
        )
        chunks = [chunk async for chunk in call]
        request_id = dict(await call.initial_metadata())["x-request-id"]
    assert chunks[-1].stepblend.routed_model == "gpt-4o-mini"
    receiver = observed.receiver

    def complete(receiver: otlp.Receiver) -> list[otlp.Span] | None:
        billing = _consumer_span(receiver, request_id, "stepblend-billing")
        if billing is None:
            return None
        spans = receiver.trace(billing.trace_id)
        wanted = {"chat gpt-4o-mini", "POST", "/stepblend.v1.Chat/CompleteStream"}  # the edge may come last
        return spans if wanted <= {s.name for s in spans} else None

    spans = receiver.wait_for(complete)
    assert spans
    edge = _one(spans, "stepblend-gateway", "/stepblend.v1.Chat/CompleteStream", "SERVER")
    assert edge.parent_id == ""
    assert edge.attributes["stepblend.request_id"] == request_id
    assert edge.attributes["stepblend.admission"] == "admitted"
    assert edge.attributes["stepblend.outcome"] == "completed"
    by_id = {s.span_id: s for s in spans}
    execute = _one(spans, "stepblend-providers", EXECUTE, "SERVER")
    assert by_id[by_id[execute.parent_id].parent_id] is edge
    produced = _one(spans, "stepblend-gateway", "create usage.v1.completed", "PRODUCER")
    assert by_id[produced.parent_id] is edge
