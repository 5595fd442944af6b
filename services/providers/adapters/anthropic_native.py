"""Anthropic's Messages API passed through: for a request that arrived in Anthropic's
own dialect (the gateway's Messages API) and is served by a vendor speaking it.

Nothing is translated, so nothing is lost — thinking, cache_control, documents,
server tools, every block type and the client's `anthropic-beta` flags reach the
provider as the client sent them. Only these change:

- `model` becomes the candidate's upstream id;
- `max_tokens` is lowered to the candidate's output budget when a cost cap set one
  (the cap's bound must hold whatever the dialect);
- `stream` follows the request, and StepBlend's own `stepblend_*` fields are removed.

The answer comes back untouched too: a non-stream's `message` JSON as the provider
wrote it, a stream's SSE events re-framed one for one (`event: NAME\\ndata: JSON\\n\\n`).
The Anthropic adapter still reads every event alongside, for the usage, for errors in
the stream and for whether the answer finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.providers.adapters.anthropic import MESSAGES_PATH, Anthropic
from services.providers.adapters.anthropic_answers import EventTranslator, parse_completion
from services.providers.adapters.base import ProviderError, SseEvent, TokenUsage, UpstreamRequest
from stepblend.v1 import router_pb2

__all__ = ["NATIVE_DIALECT", "NativeAnthropic", "frame"]

#: The gateway's name for the dialect (ExecuteRequest.native_dialect).
NATIVE_DIALECT = "anthropic_messages"
#: Client headers that travel with the body: they select features the body uses.
FORWARDED_HEADERS = frozenset({"anthropic-beta"})


def frame(event: SseEvent) -> bytes:
    """One upstream event as an SSE frame, as the provider sent it."""
    name = event.event.encode() if event.event else b"message"
    return b"event: " + name + b"\ndata: " + event.data + b"\n\n"


@dataclass(frozen=True)
class NativeAnthropic:
    """The `Adapter` for a native Anthropic body; `base` is the vendor's own adapter."""

    base: Anthropic
    headers: Mapping[str, str] = field(default_factory=dict)

    def build_request(self, body: dict[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
        out = {k: v for k, v in body.items() if not k.startswith("stepblend_")}
        out["model"] = candidate.upstream_model
        budget = candidate.output_budget
        if budget and (not isinstance(out.get("max_tokens"), int) or out["max_tokens"] > budget):
            out["max_tokens"] = budget
        if stream:
            out["stream"] = True
        else:
            out.pop("stream", None)
        return UpstreamRequest(MESSAGES_PATH, orjson.dumps(out))

    def auth_headers(self, api_key: str) -> dict[str, str]:
        forwarded = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED_HEADERS}
        return {**forwarded, **self.base.auth_headers(api_key)}

    def parse_completion(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0
    ) -> tuple[bytes, TokenUsage | None]:
        # Read (which checks it is a message, and finds its usage), sent on as it came.
        _, usage = parse_completion(data, completion_id, model, created=created)
        return data, usage

    def stream_translator(
        self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
    ) -> PassThrough:
        return PassThrough(EventTranslator(completion_id, model, created=created, include_usage=include_usage))

    def error_details(self, data: bytes) -> ProviderError:
        return self.base.error_details(data)


#: Events that carry only content: forwarded unread (the bulk of a stream; the reader
#: would only translate them into chunks nobody sends).
_CONTENT_EVENTS = frozenset({"content_block_start", "content_block_delta", "content_block_stop", "ping"})


class PassThrough:
    """A `StreamTranslator` that forwards each upstream event as it came, reading the
    others with the Anthropic translator for usage, errors and the end."""

    def __init__(self, reader: EventTranslator) -> None:
        self._reader = reader

    def feed(self, event: SseEvent) -> list[bytes]:
        if event.event not in _CONTENT_EVENTS:
            self._reader.feed(event)  # raises for an error event, or what is not Anthropic's format
        return [frame(event)]

    @property
    def usage(self) -> TokenUsage | None:
        return self._reader.usage

    @property
    def complete(self) -> bool:
        return self._reader.complete

    @property
    def ended(self) -> bool:
        return self._reader.ended
