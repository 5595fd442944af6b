"""services/common/telemetry.py and logs.py: when export is on, which exporter, and
trace ids in log lines. (The global providers are never installed in this process:
the end-to-end tests run `setup` in the services themselves.)"""

from __future__ import annotations

import io
import logging

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from services.common import logs, telemetry


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_export_only_when_asked(env: dict[str, str], on: bool) -> None:
    assert telemetry.export_requested(env) is on


def test_off_installs_nothing() -> None:
    installed = telemetry.setup("router", {})
    assert not installed.enabled
    installed.shutdown()
    assert not telemetry.tracing_enabled() and not telemetry.metrics_enabled()
    assert telemetry.server_interceptors() == []
    # No span current: a message carries its id only.
    assert telemetry.message_headers("id-1", "usage.v1.completed") == {"Nats-Msg-Id": "id-1"}


@pytest.mark.parametrize(
    ("env", "module"),
    [
        ({}, "opentelemetry.exporter.otlp.proto.grpc"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "opentelemetry.exporter.otlp.proto.http"),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "opentelemetry.exporter.otlp.proto.grpc",
        ),
        ({"OTEL_TRACES_EXPORTER": "console"}, "opentelemetry.sdk.trace.export"),
    ],
)
def test_the_exporter_follows_the_standard_variables(env: dict[str, str], module: str) -> None:
    exporter = telemetry._exporter("traces", env)
    try:
        assert type(exporter).__module__.startswith(module)
    finally:
        exporter.shutdown()


def test_unknown_exporters_are_refused() -> None:
    assert telemetry._exporter("metrics", {"OTEL_METRICS_EXPORTER": "none"}) is None
    with pytest.raises(ValueError, match="not supported"):
        telemetry._exporter("traces", {"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ValueError, match="not supported"):
        telemetry._exporter("traces", {"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})


def test_message_headers_and_consuming_join_the_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        headers = telemetry.message_headers("req-1", "usage.v1.completed")
    assert headers["Nats-Msg-Id"] == "req-1"
    assert headers["traceparent"].split("-")[1] == format(request.get_span_context().trace_id, "032x")
    with telemetry.consuming(tracer, "usage.v1.completed", headers, "billing") as span:
        assert span.get_span_context().trace_id == request.get_span_context().trace_id
        assert span.kind is trace.SpanKind.CONSUMER
        assert span.attributes["messaging.message.id"] == "req-1"
        assert span.attributes["messaging.consumer.group.name"] == "billing"
    with telemetry.consuming(tracer, "usage.v1.completed", None) as orphan:
        assert orphan.parent is None


def test_log_lines_carry_the_current_trace() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter("gateway"))
    handler.addFilter(logs.TraceContext())
    logger = logging.getLogger("tests.observability.trace_ids")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside")
        with TracerProvider().get_tracer("test").start_as_current_span("inside") as span:
            logger.warning("inside", extra={"request_id": "req-9", "account_id": "acct-9"})
    finally:
        logger.removeHandler(handler)
    outside, inside = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside and "span_id" not in outside
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert (inside["request_id"], inside["account_id"]) == ("req-9", "acct-9")
