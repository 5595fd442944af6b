"""The provider call in the OpenTelemetry GenAI semantic conventions.

Each attempt on a candidate is one CLIENT span `{operation} {model}` (`chat`, or
`embeddings` for an embeddings request; the model id the provider's API is sent), a
child of the `Execute` call's server span and the parent of the upstream HTTP call's
span, with:

    gen_ai.operation.name        chat or embeddings
    gen_ai.provider.name         the convention's name for the provider (`mistral_ai`,
                                 `x_ai`; StepBlend's own name otherwise)
    gen_ai.request.model         the provider's model id
    gen_ai.request.stream        whether the upstream call streams
    gen_ai.request.max_tokens, .temperature, .top_p, .seed   when the body sets them
    server.address, server.port  the provider endpoint actually called
    gen_ai.response.model        the model that answered (the provider's id; adapters
                                 rewrite the answer to the catalog id, which is
                                 `stepblend.model`)
    gen_ai.response.finish_reasons, gen_ai.usage.input_tokens, .output_tokens
    gen_ai.response.time_to_first_chunk   (s) streams only
    error.type                   the attempt's outcome when it did not serve
                                 (`timeout`, `rate_limited`…, see outcomes.py), or the
                                 code of the error that broke a started stream
    stepblend.provider, stepblend.model, stepblend.attempt.outcome

and the metrics `gen_ai.client.operation.duration` (s, the whole attempt),
`gen_ai.client.token.usage` (by `gen_ai.token.type` input/output) and
`gen_ai.client.operation.time_to_first_chunk` (s, from sending the request to the
first chunk). Never an attribute carries message content, an error's text or a key.

Built once in main (`GenAiTelemetry.create()`); when telemetry is off `attempt()`
returns a shared object that does nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.common import telemetry
from stepblend.v1 import providers_pb2, router_pb2

__all__ = ["AttemptTelemetry", "GenAiTelemetry", "provider_name"]

# The convention's well-known names where they differ from StepBlend's.
_PROVIDER_NAMES = {"mistral": "mistral_ai", "xai": "x_ai", "gemini": "gcp.gemini"}
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_TTFC_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_REQUEST_PARAMS = {
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "seed": "gen_ai.request.seed",
}
_FINISH_MARK = b'"finish_reason":"'


def provider_name(provider: str) -> str:
    """`gen_ai.provider.name` for one of StepBlend's provider names."""
    return _PROVIDER_NAMES.get(provider, provider)


class AttemptTelemetry(Protocol):
    """What the executor tells about one attempt."""

    def prepared(self, base_url: str) -> None:
        """The endpoint is known (the vendor's base URL)."""

    def sending(self) -> contextlib.AbstractContextManager[Any]:
        """Around sending the upstream request: the HTTP call's span is a child."""

    def saw(self, event: providers_pb2.ExecuteEvent) -> None:
        """An event the attempt produced, on its way to the gateway."""

    def end(self, error: str | None = None) -> None:
        """The attempt is over (`error`: its outcome when it did not serve); the
        first call counts, later ones do nothing."""


class _Off:
    _nothing = contextlib.nullcontext()

    def prepared(self, base_url: str) -> None:
        pass

    def sending(self) -> contextlib.AbstractContextManager[Any]:
        return self._nothing

    def saw(self, event: providers_pb2.ExecuteEvent) -> None:
        pass

    def end(self, error: str | None = None) -> None:
        pass


_OFF = _Off()


class GenAiTelemetry:
    """The tracer and GenAI instruments of the providers service."""

    def __init__(self, tracer: trace.Tracer | None, meter: metrics.Meter | None) -> None:
        self._tracer = tracer
        if meter is None:
            return
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            "s",
            "GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            "{token}",
            "Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time from issuing the request to receiving the first chunk of the response stream.",
            explicit_bucket_boundaries_advisory=_TTFC_BUCKETS,
        )

    @classmethod
    def create(cls) -> GenAiTelemetry:
        """From OpenTelemetry's global providers; off when `telemetry.setup` left
        the no-op ones."""
        if not (telemetry.tracing_enabled() or telemetry.metrics_enabled()):
            return cls(None, None)
        return cls(trace.get_tracer(__name__), metrics.get_meter(__name__))

    @classmethod
    def off(cls) -> GenAiTelemetry:
        return cls(None, None)

    def attempt(
        self,
        candidate: router_pb2.Candidate,
        stream: bool,
        body: dict[str, Any] | None = None,
        operation: str = "chat",
    ) -> AttemptTelemetry:
        """An attempt's telemetry; `operation` is the convention's name (`chat`, `embeddings`)."""
        if self._tracer is None:
            return _OFF
        return _Attempt(self, self._tracer, candidate, stream, body or {}, operation)


class _Attempt:
    def __init__(
        self,
        owner: GenAiTelemetry,
        tracer: trace.Tracer,
        candidate: router_pb2.Candidate,
        stream: bool,
        body: dict[str, Any],
        operation: str,
    ) -> None:
        self._owner = owner
        self._started = time.monotonic()
        self._sent = self._started
        self._first_chunk_s: float | None = None
        self._stream = stream
        self._usage: providers_pb2.Usage | None = None
        self._finish_reasons: list[str] = []
        self._error = ""
        self._ended = False
        self._model = candidate.upstream_model or candidate.model
        self._metric_attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider_name(candidate.provider),
            "gen_ai.request.model": self._model,
        }
        attributes: dict[str, Any] = {
            **self._metric_attributes,
            "gen_ai.request.stream": stream,
            "stepblend.provider": candidate.provider,
            "stepblend.model": candidate.model,
        }
        for param, name in _REQUEST_PARAMS.items():
            value = body.get(param)
            if isinstance(value, int | float) and not isinstance(value, bool) and name not in attributes:
                attributes[name] = value
        if candidate.output_budget and "gen_ai.request.max_tokens" not in attributes:
            attributes["gen_ai.request.max_tokens"] = candidate.output_budget
        self._span = tracer.start_span(f"{operation} {self._model}", kind=SpanKind.CLIENT, attributes=attributes)

    def prepared(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.hostname:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            self._metric_attributes["server.address"] = parts.hostname
            self._metric_attributes["server.port"] = port
            self._span.set_attributes({"server.address": parts.hostname, "server.port": port})

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        self._sent = time.monotonic()
        with trace.use_span(self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield

    def saw(self, event: providers_pb2.ExecuteEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "chunk":
            if self._first_chunk_s is None:
                self._first_chunk_s = time.monotonic() - self._sent
            if _FINISH_MARK in event.chunk:
                self._finish_reasons.extend(_finish_reasons(event.chunk))
        elif kind == "usage":
            self._usage = event.usage
        elif kind == "completion":
            self._finish_reasons.extend(_finish_reasons(event.completion))
        elif kind == "error":
            self._error = event.error.code or "error"

    def end(self, error: str | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        error = error or self._error
        span = self._span
        attributes = dict(self._metric_attributes)
        if error:
            attributes["error.type"] = error
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", error)
        else:
            attributes["gen_ai.response.model"] = self._model
            span.set_attribute("gen_ai.response.model", self._model)
        span.set_attribute("stepblend.attempt.outcome", error or "ok")
        if self._finish_reasons:
            span.set_attribute("gen_ai.response.finish_reasons", self._finish_reasons)
        owner = self._owner
        if self._usage is not None:
            span.set_attributes(
                {
                    "gen_ai.usage.input_tokens": self._usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": self._usage.completion_tokens,
                }
            )
            owner.tokens.record(self._usage.prompt_tokens, {**attributes, "gen_ai.token.type": "input"})
            owner.tokens.record(self._usage.completion_tokens, {**attributes, "gen_ai.token.type": "output"})
        if self._first_chunk_s is not None and self._stream:
            span.set_attribute("gen_ai.response.time_to_first_chunk", self._first_chunk_s)
            owner.first_chunk.record(self._first_chunk_s, attributes)
        owner.duration.record(time.monotonic() - self._started, attributes)
        span.end()


def _finish_reasons(data: bytes) -> list[str]:
    """The finish reasons of an OpenAI chunk or completion (as the adapters make them)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return []
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list):
        return []
    return [c["finish_reason"] for c in choices if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)]
