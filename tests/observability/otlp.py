"""A local OTLP/HTTP receiver for tests: what the services export, decoded.

A real HTTP server on a random port accepting `POST /v1/traces` and `/v1/metrics`
(protobuf, optionally gzip), as an OpenTelemetry Collector would, so the services
run their real exporters (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`).
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in pairs}


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: int
    start_ns: int


@dataclass(frozen=True)
class Point:
    service: str
    metric: str
    attributes: dict[str, Any]
    # Sum for a counter, (count, sum) for a histogram.
    value: Any


@dataclass
class Receiver:
    port: int = 0
    spans: list[Span] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_traces(self, data: bytes) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(data)
        spans = []
        for resource_spans in request.resource_spans:
            service = str(attributes(resource_spans.resource.attributes).get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    spans.append(
                        Span(
                            service=service,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=KINDS.get(s.kind, str(s.kind)),
                            attributes=attributes(s.attributes),
                            events=[(e.name, attributes(e.attributes)) for e in s.events],
                            status=s.status.code,
                            start_ns=s.start_time_unix_nano,
                        )
                    )
        with self._lock:
            self.spans.extend(spans)

    def add_metrics(self, data: bytes) -> None:
        request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(data)
        points = []
        for resource_metrics in request.resource_metrics:
            service = str(attributes(resource_metrics.resource.attributes).get("service.name", ""))
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    if kind == "histogram":
                        for p in metric.histogram.data_points:
                            points.append(Point(service, metric.name, attributes(p.attributes), (p.count, p.sum)))
                    elif kind == "sum":
                        for p in metric.sum.data_points:
                            number = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                            points.append(Point(service, metric.name, attributes(p.attributes), number))
        with self._lock:
            self.points.extend(points)

    def snapshot(self) -> tuple[list[Span], list[Point]]:
        with self._lock:
            return list(self.spans), list(self.points)

    def wait_for(self, found: Callable[[Receiver], Any], timeout: float = 30.0) -> Any:
        """Poll until `found(self)` is truthy; return it."""
        deadline = time.monotonic() + timeout
        while True:
            result = found(self)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.1)

    def trace(self, trace_id: str) -> list[Span]:
        return sorted((s for s in self.snapshot()[0] if s.trace_id == trace_id), key=lambda s: s.start_ns)


def serve() -> tuple[Receiver, Callable[[], None]]:
    """Start a receiver on a random loopback port; returns it and its stop function."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            data = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.headers.get("content-encoding") == "gzip":
                data = gzip.decompress(data)
            if self.path == "/v1/traces":
                receiver.add_traces(data)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            elif self.path == "/v1/metrics":
                receiver.add_metrics(data)
                reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
            else:
                reply = b""
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return receiver, stop


def tree(spans: list[Span]) -> Iterator[str]:
    """The spans of one trace as an indented tree: `name [KIND, service]`."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_id if s.parent_id in ids else "", []).append(s)

    def walk(parent: str, depth: int) -> Iterator[str]:
        for s in sorted(children.get(parent, []), key=lambda s: s.start_ns):
            yield f"{'  ' * depth}{s.name} [{s.kind}, {s.service}]"
            yield from walk(s.span_id, depth + 1)

    yield from walk("", 0)
