"""OpenAI Chat Completions ⇄ Azure OpenAI, which speaks OpenAI's wire format on the
account's own resource (learn.microsoft.com/azure/ai-services/openai/reference):

- the path names the deployment (the account's name for the catalog model, which
  the executor puts in `candidate.upstream_model`) and the API version:
  `/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21`;
- the key goes in an `api-key` header, not `Authorization: Bearer`;
- answers and chunks carry Azure's content-filter reports (`prompt_filter_results`,
  each choice's `content_filter_results`, and with the asynchronous filter its
  `content_filter_offsets`), removed so the client sees OpenAI's shape; a stream's
  annotation-only chunks (no `delta`, no finish: empty `id` and `object`) are not
  forwarded, and its filtered ending (a finish without a `delta`, per Azure's
  content-streaming documentation) becomes OpenAI's last chunk, `delta: {}` and
  `finish_reason: "content_filter"`;
- a prompt the filter refuses is a 400 whose error has `code: "content_filter"` and
  Azure's `innererror`: the client gets OpenAI's 400 `content_filter` error (param
  `prompt`), without the `innererror` detail.

Everything else is the OpenAI-compatible adapter's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from services.providers.adapters.base import ProviderError, TokenUsage, UpstreamRequest, load_object
from services.providers.adapters.openai_compatible import (
    ChunkTranslator,
    build_request,
    error_details,
    parse_completion,
)
from services.providers.adapters.openai_compatible import Quirks as OpenAIQuirks
from services.providers.adapters.sse import SseEvent
from stepblend.v1 import router_pb2

DEFAULT_API_VERSION = "2024-10-21"
_AZURE_FIELDS = ("prompt_filter_results", "prompt_annotations")
_CHOICE_FIELDS = ("content_filter_results", "content_filter_result", "content_filter_offsets", "content_filter_raw")


@dataclass(frozen=True)
class Quirks:
    api_version: str = DEFAULT_API_VERSION
    openai: OpenAIQuirks = field(default_factory=OpenAIQuirks)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Quirks:
        rest = dict(raw)
        version = rest.pop("api_version", DEFAULT_API_VERSION)
        if not isinstance(version, str) or not version:
            raise TypeError("quirk api_version must be a string")
        return cls(version, OpenAIQuirks.parse(rest))


def path(deployment: str, api_version: str) -> str:
    return f"/openai/deployments/{quote(deployment, safe='')}/chat/completions?api-version={quote(api_version)}"


def without_filter_reports(obj: dict[str, Any]) -> dict[str, Any]:
    """An Azure answer or chunk in OpenAI's shape (in place)."""
    for name in _AZURE_FIELDS:
        obj.pop(name, None)
    choices = obj.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict):
                for name in _CHOICE_FIELDS:
                    choice.pop(name, None)
                message = choice.get("message")
                # A filtered answer may come without content; OpenAI's has it, null.
                if isinstance(message, dict):
                    message.setdefault("content", None)
    return obj


def as_chunk(obj: dict[str, Any]) -> dict[str, Any] | None:
    """An Azure chunk without its reports as OpenAI's chunk, or None when it only
    annotated what was already sent (a choice with neither `delta` nor finish)."""
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices:
        return obj
    kept = [c for c in choices if not isinstance(c, dict) or "delta" in c or c.get("finish_reason") is not None]
    if not kept:
        return None
    for choice in kept:
        if isinstance(choice, dict):
            choice.setdefault("delta", {})
    obj["choices"] = kept
    obj["object"] = "chat.completion.chunk"
    return obj


class _Chunks:
    """OpenAI's chunk translator, fed Azure's chunks without their filter reports."""

    def __init__(self, inner: ChunkTranslator) -> None:
        self._inner = inner

    @property
    def usage(self) -> TokenUsage | None:
        return self._inner.usage

    @property
    def complete(self) -> bool:
        return self._inner.complete

    @property
    def ended(self) -> bool:
        return self._inner.ended

    def feed(self, event: SseEvent) -> list[bytes]:
        # Only a chunk carrying a report is rewritten (Azure's have one on each choice).
        if b"_filter_result" in event.data or b"prompt_annotations" in event.data:
            chunk = as_chunk(without_filter_reports(load_object(event.data)))
            if chunk is None:
                return []
            event = SseEvent(orjson.dumps(chunk), event.event)
        return self._inner.feed(event)


@dataclass(frozen=True)
class Azure:
    """The `Adapter` of Azure OpenAI."""

    quirks: Quirks = Quirks()

    def with_api_version(self, api_version: str) -> Azure:
        return Azure(Quirks(api_version, self.quirks.openai))

    def build_request(self, body: dict[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
        built = build_request(body, candidate, stream, self.quirks.openai)
        return UpstreamRequest(path(candidate.upstream_model, self.quirks.api_version), built.content)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"api-key": api_key}

    def parse_completion(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0
    ) -> tuple[bytes, TokenUsage | None]:
        obj = without_filter_reports(load_object(data))
        return parse_completion(orjson.dumps(obj), completion_id, model, created=created)

    def stream_translator(
        self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
    ) -> _Chunks:
        inner = ChunkTranslator(
            completion_id, model, created=created, include_usage=include_usage, quirks=self.quirks.openai
        )
        return _Chunks(inner)

    def error_details(self, data: bytes) -> ProviderError:
        said = error_details(data)
        if said.code == "content_filter":
            # OpenAI's words for it; Azure's innererror (which category, what severity) stays out.
            return ProviderError(said.message, said.param or "prompt", "content_filter", "invalid_request_error")
        return said
