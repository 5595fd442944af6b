"""deploy/observability: the collector config agrees with Kubernetes', and the
dashboard only charts metrics the services define (by the collector's Prometheus
names)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from services.gateway.observe import RequestTelemetry
from services.providers.genai import GenAiTelemetry

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR = ROOT / "deploy" / "observability" / "otel-collector.yaml"
DASHBOARD = ROOT / "deploy" / "observability" / "grafana" / "stepblend-dashboard.json"
K8S_COLLECTOR = ROOT / "deploy" / "k8s" / "base" / "otel-collector.yaml"
# Made by the FastAPI instrumentation, not by StepBlend's own code.
INSTRUMENTED = {"http_server_request_duration_seconds_count", "http_server_request_duration_seconds_bucket"}


def _k8s_config() -> dict[str, Any]:
    for doc in yaml.safe_load_all(K8S_COLLECTOR.read_text()):
        if doc and doc["kind"] == "ConfigMap":
            config: dict[str, Any] = yaml.safe_load(doc["data"]["collector.yaml"])
            return config
    raise AssertionError("no collector ConfigMap")


def test_collector_config_matches_kubernetes_and_is_complete() -> None:
    config = yaml.safe_load(COLLECTOR.read_text())
    k8s = _k8s_config()
    assert config["receivers"] == k8s["receivers"]
    assert config["processors"] == k8s["processors"]
    pipelines = config["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    for name, pipeline in pipelines.items():
        assert pipeline["processors"] == k8s["service"]["pipelines"][name]["processors"]
        assert pipeline["processors"][0] == "memory_limiter"
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline[kind]:
                assert component in config[kind], f"{name} uses undefined {kind[:-1]} {component}"
    assert "prometheus" in pipelines["metrics"]["exporters"]
    assert any(e.startswith("otlp") for e in pipelines["traces"]["exporters"])


def _prometheus_names(instrument: Counter | Histogram) -> set[str]:
    """The collector's default translation: dots to underscores, the unit (`s` as
    `seconds`; `{…}` annotations dropped), `_total` for counters, histogram series."""
    name = re.sub(r"[^a-zA-Z0-9_:]", "_", instrument.name)
    unit = {"s": "seconds"}.get(instrument.unit, "" if instrument.unit.startswith("{") else instrument.unit)
    if unit and not name.endswith(unit):
        name = f"{name}_{unit}"
    if isinstance(instrument, Counter):
        return {f"{name}_total"}
    return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}


def _defined_series() -> set[str]:
    meter = MeterProvider().get_meter("test")
    owners = [RequestTelemetry(meter), GenAiTelemetry(TracerProvider().get_tracer("test"), meter)]
    series: set[str] = set()
    for owner in owners:
        for value in vars(owner).values():
            if isinstance(value, Counter | Histogram):
                series |= _prometheus_names(value)
    return series


def test_dashboard_charts_only_defined_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    defined = _defined_series() | INSTRUMENTED
    assert "stepblend_gateway_overhead_seconds_bucket" in defined
    assert "stepblend_cost_usd_total" in defined
    queried: set[str] = set()
    titles = []
    for panel in dashboard["panels"]:
        titles.append(panel["title"].lower())
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            # Series names (labels like stepblend_provider have no series suffix).
            queried |= set(
                re.findall(r"\b((?:stepblend|gen_ai|http)_[a-z_]+_(?:total|bucket|sum|count))\b", target["expr"])
            )
    assert queried and queried <= defined, f"charted but never exported: {sorted(queried - defined)}"
    for topic in (
        "requests",
        "latency",
        "overhead",
        "first token",
        "tokens",
        "cost",
        "errors",
        "fallbacks",
        "refusals",
    ):
        assert any(topic in title for title in titles), f"no panel about {topic}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
