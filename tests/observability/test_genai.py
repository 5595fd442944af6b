"""The providers' GenAI telemetry (services/providers/genai.py) around the real
executor and the real mock provider, exported to in-memory readers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from services.providers.adapters.openai_embeddings import EMBEDDINGS_DIALECT
from services.providers.executor import Executor
from services.providers.genai import GenAiTelemetry, provider_name
from services.providers.upstream import make_client
from services.providers.vendors import load_vendors
from stepblend.mockprovider import RunningMockProvider, start_in_thread
from stepblend.v1 import providers_pb2
from tests.providers.conftest import TIMEOUTS, MemoryKeys, candidate

OPENAI = candidate("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", output_budget=128)
GROQ = candidate("groq", "llama-3.1-8b-instant")
EMBEDDING = candidate("openai", "text-embedding-3-small", "text-embedding-3-small")
KEYS = {"openai": "sk-genai-openai-0123456789", "groq": "sk-genai-groq-0123456789"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningMockProvider]:
    running = start_in_thread()
    yield running
    running.stop()


class Recorded:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.genai = GenAiTelemetry(tracer_provider.get_tracer("test"), meter_provider.get_meter("test"))

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


async def run(
    upstream: RunningMockProvider, genai: GenAiTelemetry, stream: bool, *candidates: Any, take: int | None = None
) -> list[providers_pb2.ExecuteEvent]:
    """The events of one execution; with `take`, of that many batches, then the
    generator is closed as a cancelled call closes it."""
    vendors = load_vendors({"openai": upstream.base_url, "groq": upstream.base_url})
    client = make_client(TIMEOUTS)
    executor = Executor(client, MemoryKeys(KEYS), vendors, TIMEOUTS, genai=genai)
    body = {"model": "x", "messages": [{"role": "user", "content": "Hello"}], "temperature": 0.2, "stream": stream}
    request = providers_pb2.ExecuteRequest(
        request_id="r", account_id="a", candidates=list(candidates), body=orjson.dumps(body), stream=stream
    )
    events: list[providers_pb2.ExecuteEvent] = []
    taken = 0
    try:
        generator = executor.execute(request)
        async for batch in generator:
            events.extend(batch)
            taken += 1
            if taken == take:
                break
        await generator.aclose()
    finally:
        await client.close()
    return events


async def test_a_streamed_attempt_is_a_genai_client_span(upstream: RunningMockProvider) -> None:
    recorded = Recorded()
    await run(upstream, recorded.genai, True, OPENAI)
    (span,) = recorded.spans.get_finished_spans()
    assert span.name == "chat gpt-4o-mini-2024-07-18" and span.kind is SpanKind.CLIENT
    a = dict(span.attributes or {})
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.max_tokens"] == 128
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == upstream.port
    assert a["stepblend.model"] == "gpt-4o-mini" and a["stepblend.attempt.outcome"] == "ok"
    assert "error.type" not in a
    tokens = {p.attributes["gen_ai.token.type"]: p for p in recorded.points("gen_ai.client.token.usage")}
    assert set(tokens) == {"input", "output"}
    assert tokens["output"].sum == a["gen_ai.usage.output_tokens"]
    assert [p.count for p in recorded.points("gen_ai.client.operation.duration")] == [1]
    assert [p.count for p in recorded.points("gen_ai.client.operation.time_to_first_chunk")] == [1]


async def test_a_failed_attempt_then_a_fallback(upstream: RunningMockProvider) -> None:
    recorded = Recorded()
    async with httpx.AsyncClient(base_url=upstream.url) as control:
        failing = {"model": "gpt-4o-mini-2024-07-18", "status": 503}
        (await control.post("/_mock/behaviour", json=failing)).raise_for_status()
        try:
            events = await run(upstream, recorded.genai, False, OPENAI, GROQ)
        finally:
            (await control.delete("/_mock/behaviour")).raise_for_status()
    assert [e.attempt.outcome for e in events if e.WhichOneof("event") == "attempt"] == ["provider_error", "ok"]
    failed, served = recorded.spans.get_finished_spans()
    assert failed.attributes["error.type"] == "provider_error"
    assert failed.status.status_code is StatusCode.ERROR
    assert "gen_ai.response.model" not in failed.attributes
    assert served.name == "chat llama-3.1-8b-instant" and served.attributes["gen_ai.provider.name"] == "groq"
    assert served.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    durations = {
        p.attributes.get("error.type", "ok"): p.count for p in recorded.points("gen_ai.client.operation.duration")
    }
    assert durations == {"provider_error": 1, "ok": 1}
    assert not recorded.points("gen_ai.client.operation.time_to_first_chunk")  # not a stream


async def test_a_stream_closed_mid_way_still_ends_its_span(upstream: RunningMockProvider) -> None:
    recorded = Recorded()
    await run(upstream, recorded.genai, True, OPENAI, take=1)
    (span,) = recorded.spans.get_finished_spans()
    assert span.attributes["error.type"] == "cancelled"


async def test_an_embeddings_attempt_is_an_embeddings_span(upstream: RunningMockProvider) -> None:
    recorded = Recorded()
    vendors = load_vendors({"openai": upstream.base_url})
    client = make_client(TIMEOUTS)
    executor = Executor(client, MemoryKeys(KEYS), vendors, TIMEOUTS, genai=recorded.genai)
    native = orjson.dumps({"model": "text-embedding-3-small", "input": "Hello"})
    request = providers_pb2.ExecuteRequest(
        request_id="e",
        account_id="a",
        candidates=[EMBEDDING],
        body=native,
        native_body=native,
        native_dialect=EMBEDDINGS_DIALECT,
    )
    try:
        events = [event async for batch in executor.execute(request) for event in batch]
    finally:
        await client.close()
    assert [e.attempt.outcome for e in events if e.WhichOneof("event") == "attempt"] == ["ok"]
    (span,) = recorded.spans.get_finished_spans()
    assert span.name == "embeddings text-embedding-3-small" and span.kind is SpanKind.CLIENT
    a = dict(span.attributes or {})
    assert a["gen_ai.operation.name"] == "embeddings"
    assert a["gen_ai.request.model"] == "text-embedding-3-small" and a["gen_ai.usage.input_tokens"] > 0
    durations = recorded.points("gen_ai.client.operation.duration")
    assert [p.attributes["gen_ai.operation.name"] for p in durations] == ["embeddings"]


def test_provider_names_follow_the_convention() -> None:
    assert [provider_name(p) for p in ("openai", "anthropic", "mistral", "xai", "groq", "local")] == [
        "openai",
        "anthropic",
        "mistral_ai",
        "x_ai",
        "groq",
        "local",
    ]


async def test_off_without_an_sdk_provider(upstream: RunningMockProvider) -> None:
    # With only OpenTelemetry's no-op providers, create() is off: every attempt is the
    # one shared no-op, no span or instrument is made per request...
    off = GenAiTelemetry.create()
    assert off.attempt(OPENAI, True) is GenAiTelemetry.off().attempt(OPENAI, False)
    # ...and a request executed with it is served just the same: streamed, answered, ok.
    events = await run(upstream, off, True, OPENAI)
    assert [e.attempt.outcome for e in events if e.WhichOneof("event") == "attempt"] == ["ok"]
    chunks = [orjson.loads(e.chunk) for e in events if e.WhichOneof("event") == "chunk"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
