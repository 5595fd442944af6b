"""OpenTelemetry for every service: export set up from the standard `OTEL_*`
variables, the official instrumentations, and trace context across NATS.

`setup(service)` runs once at a service's start (`stepblend serve NAME`). It turns
export on only when an OpenTelemetry variable says where to send (or how):
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT`,
`OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`. Otherwise OpenTelemetry's no-op
providers stay in place and nothing is instrumented, so the hot path pays nothing:
no interceptor on a gRPC call, no middleware on an HTTP request.

Once on:
- traces go through a `BatchSpanProcessor` (`OTEL_BSP_*`), metrics through a
  `PeriodicExportingMetricReader` (`OTEL_METRIC_EXPORT_INTERVAL`), each to an OTLP
  exporter over gRPC or HTTP (`OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL`:
  `grpc`, the default, or `http/protobuf`); `OTEL_TRACES_EXPORTER` /
  `OTEL_METRICS_EXPORTER` may say `none` or `console` instead of `otlp`. The
  exporters read their own endpoint, headers, timeout and compression variables.
- the resource is `service.name = stepblend-<service>` unless `OTEL_SERVICE_NAME`
  names it; `OTEL_RESOURCE_ATTRIBUTES` adds to it.
- HTTP spans and metrics follow the stable HTTP conventions
  (`OTEL_SEMCONV_STABILITY_OPT_IN=http` unless set otherwise).
- the aio gRPC client is instrumented globally; servers get the server
  interceptor from `server_interceptors()` (grpcio.make_server); the gateway's
  FastAPI app and the providers' aiohttp session are instrumented where they are built.
  Health checks and reflection are not traced.

Whether tracing is on is OpenTelemetry's own global state (an SDK tracer provider
installed or not): `tracing_enabled()`.

Trace context over NATS: publishers put `traceparent` in the message headers
(`message_headers`), consumers restore it (`consuming`), so a consumer's span is a
child in the trace of the request that caused the event.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind

from services.common.events import MSG_ID

log = logging.getLogger(__name__)

__all__ = [
    "Telemetry",
    "consuming",
    "export_requested",
    "http_client_trace_configs",
    "instrument_fastapi",
    "message_headers",
    "metrics_enabled",
    "server_interceptors",
    "setup",
    "tracing_enabled",
]

# Any of these set (to something but "none") asks for export.
_EXPORT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
)
# Probes, and the long-lived streams that carry Route and Complete calls (mux.py
# traces each call on them as its unary method).
_UNTRACED_GRPC = (
    "grpc.health.v1.",
    "grpc.reflection.",
    "stepblend.v1.Router/RouteStream",
    "stepblend.v1.Providers/CompleteStream",
)
MESSAGING_SYSTEM = "nats"


def export_requested(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for telemetry export at all."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() not in ("", "none") for name in _EXPORT_VARIABLES)


@dataclass(frozen=True)
class Telemetry:
    """What `setup` installed; `shutdown` flushes and stops it (a no-op when off)."""

    tracer_provider: Any = None
    meter_provider: Any = None

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None or self.meter_provider is not None

    def shutdown(self) -> None:
        """Export what is buffered and stop; called once as the service exits."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                try:
                    provider.shutdown()
                except Exception:  # a collector that is down must not fail the exit
                    log.warning("flushing telemetry failed", exc_info=True)


def setup(service: str, env: Mapping[str, str] | None = None) -> Telemetry:
    """Install the SDK providers and instrumentations when export is asked for."""
    env = os.environ if env is None else env
    if not export_requested(env):
        return Telemetry()
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The stable HTTP conventions (http.server.request.duration, url.full…) unless
    # the operator chose; the instrumentations read this when they start.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    resource = _resource(service, env)
    tracer_provider = None
    span_exporter = _exporter("traces", env)
    if span_exporter is not None:
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
        trace.set_tracer_provider(tracer_provider)
        _instrument_grpc_client()
    meter_provider = None
    metric_exporter = _exporter("metrics", env)
    if metric_exporter is not None:
        meter_provider = MeterProvider(
            resource=resource, metric_readers=[PeriodicExportingMetricReader(metric_exporter)]
        )
        metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider, meter_provider)


def _resource(service: str, env: Mapping[str, str]) -> Any:
    from importlib.metadata import PackageNotFoundError, version

    from opentelemetry.sdk.resources import Resource

    attributes: dict[str, str] = {"service.namespace": "stepblend"}
    if not env.get("OTEL_SERVICE_NAME", "").strip():
        attributes["service.name"] = f"stepblend-{service}"
    with contextlib.suppress(PackageNotFoundError):
        attributes["service.version"] = version("stepblend")
    return Resource.create(attributes)


def _exporter(signal: str, env: Mapping[str, str]) -> Any:
    """The exporter `OTEL_<SIGNAL>_EXPORTER` names (default otlp), or None for none."""
    names = [n.strip().lower() for n in env.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp").split(",") if n.strip()]
    if not names or "none" in names:
        return None
    if names[0] == "console":
        if signal == "traces":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            return ConsoleSpanExporter()
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    if names[0] != "otlp":
        raise ValueError(f"OTEL_{signal.upper()}_EXPORTER={names[0]!r} is not supported (otlp, console, none)")
    protocol = (
        env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
        or "grpc"
    ).lower()
    if protocol == "grpc":
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpans,
            )

            return GrpcSpans()
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetrics,
        )

        return GrpcMetrics()
    if protocol in ("http/protobuf", "http/json"):
        if protocol == "http/json":
            log.warning("OTLP http/json is not available in Python; exporting %s as http/protobuf", signal)
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpSpans,
            )

            return HttpSpans()
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetrics,
        )

        return HttpMetrics()
    raise ValueError(f"OTLP protocol {protocol!r} is not supported (grpc, http/protobuf)")


def tracing_enabled() -> bool:
    """Whether an SDK tracer provider is installed (by `setup`, or by a test)."""
    from opentelemetry.sdk.trace import TracerProvider

    return isinstance(trace.get_tracer_provider(), TracerProvider)


def metrics_enabled() -> bool:
    """Whether an SDK meter provider is installed."""
    from opentelemetry.sdk.metrics import MeterProvider

    return isinstance(metrics.get_meter_provider(), MeterProvider)


def _traced_grpc(details: Any) -> bool:
    method = details.method.decode() if isinstance(details.method, bytes) else details.method
    return not method.lstrip("/").startswith(_UNTRACED_GRPC)


def _instrument_grpc_client() -> None:
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    # Patches grpc.aio.insecure_channel: channels made after this carry trace context.
    GrpcAioInstrumentorClient(filter_=_traced_grpc).instrument()  # type: ignore[no-untyped-call]


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The tracing interceptor for a gRPC server, first in line; none when off."""
    if not tracing_enabled():
        return []
    from opentelemetry.instrumentation.grpc import _aio_server
    from opentelemetry.instrumentation.grpc.version import __version__

    class ServerInterceptor(_aio_server.OpenTelemetryAioServerInterceptor):
        """The official aio server interceptor, also for a response-streaming
        handler written as a coroutine that calls `context.write` (providers'
        Execute, and the token check's refusals): the official one iterates every
        streaming handler, which fails on a coroutine
        (open-telemetry/opentelemetry-python-contrib#3066)."""

        def _intercept_aio_server_stream(self, behavior: Any, handler_call_details: Any) -> Any:
            if not inspect.iscoroutinefunction(behavior):
                return super()._intercept_aio_server_stream(behavior, handler_call_details)  # type: ignore[no-untyped-call]

            async def writer(request: Any, context: Any) -> Any:
                with (
                    self._set_remote_context(context),
                    self._start_span(handler_call_details, context, set_status_on_exception=False) as span,  # type: ignore[no-untyped-call]
                ):
                    try:
                        servicer_context = _aio_server._OpenTelemetryAioServicerContext(context, span)  # type: ignore[no-untyped-call]
                        return await behavior(request, servicer_context)
                    except Exception as error:
                        if type(error) is not Exception:  # a bare Exception is grpc's abort
                            span.record_exception(error)
                        raise

            return writer

    tracer = trace.get_tracer("opentelemetry.instrumentation.grpc", __version__)
    return [ServerInterceptor(tracer, filter_=_traced_grpc)]  # type: ignore[no-untyped-call]


def instrument_fastapi(app: Any) -> None:
    """Server spans and HTTP metrics for the gateway's app; nothing when off.
    Probes are not traced, nor each SSE write (a stream would make hundreds)."""
    if not tracing_enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="/healthz,/readyz", exclude_spans=["receive", "send"])


def http_client_trace_configs() -> list[Any]:
    """The aiohttp trace configs that give one session (the providers' upstream
    calls) its CLIENT spans and HTTP client metrics; none when off. Headers, which
    carry provider keys, are never captured, whatever the capture variables say."""
    if not tracing_enabled():
        return []
    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability,
        _OpenTelemetryStabilitySignalType,
    )
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    # As AioHttpClientInstrumentor does: the conventions OTEL_SEMCONV_STABILITY_OPT_IN asks for.
    _OpenTelemetrySemanticConventionStability._initialize()  # type: ignore[no-untyped-call]
    mode = _OpenTelemetrySemanticConventionStability._get_opentelemetry_stability_opt_in_mode(
        _OpenTelemetryStabilitySignalType.HTTP
    )
    return [create_trace_config(sem_conv_opt_in_mode=mode)]


def message_headers(msg_id: str, subject: str = "") -> dict[str, str]:
    """Headers for one NATS message: its id and, when a span is current, the trace
    context. With `subject`, a PRODUCER span `create {subject}` is the parent that
    consumers' spans will have."""
    headers = {MSG_ID: msg_id}
    if not trace.get_current_span().get_span_context().is_valid:
        return headers  # tracing off, or outside any trace: nothing to carry
    if subject:
        span = trace.get_tracer(__name__).start_span(
            f"create {subject}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "create",
                "messaging.operation.name": "create",
                "messaging.destination.name": subject,
                "messaging.message.id": msg_id,
            },
        )
        with trace.use_span(span, end_on_exit=True):
            propagate.inject(headers)
    else:
        propagate.inject(headers)
    return headers


@contextlib.contextmanager
def consuming(
    tracer: trace.Tracer, subject: str, headers: Mapping[str, str] | None, group: str = ""
) -> Iterator[trace.Span]:
    """The CONSUMER span of processing one message, a child of the context its
    publisher put in the headers (a root span when there is none)."""
    carrier = dict(headers or {})
    attributes: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": subject,
    }
    if msg_id := carrier.get(MSG_ID):
        attributes["messaging.message.id"] = msg_id
    if group:
        attributes["messaging.consumer.group.name"] = group
    with tracer.start_as_current_span(
        f"process {subject}", context=propagate.extract(carrier), kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span
