"""OpenAI Chat Completions ⇄ any OpenAI-compatible provider (OpenAI, Groq, DeepSeek,
Mistral, Together, xAI, vLLM, Ollama…).

The body passes through as the client wrote it, except what differs per candidate:
`model` becomes the provider's id, the catalog's and the vendor's parameter renames
are applied, parameters the model or vendor refuses are refused here (never sent to
fail upstream), the output budget fills in a missing `max_tokens`, and a stream asks
for usage (`stream_options.include_usage`) where the vendor takes that option —
StepBlend needs usage for billing whether or not the client asked.

Answers come back with StepBlend's completion id and the catalog model id. Usage is
read wherever the vendor puts it in a stream — a usage-only chunk (`choices: []`),
the finish chunk (Mistral, Together, xAI), or an envelope such as Groq's
`x_groq.usage` — and is never forwarded: the gateway's last chunk carries it, and
only when the client asked. Fields a vendor adds to a delta (DeepSeek's
`reasoning_content`) pass through untouched: an answer or chunk is forwarded as the
dict it was loaded into, and what StepBlend reads of it (choices, finish reasons,
usage, errors) is read through the typed models of `wire_openai`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from services.common.inert import is_inert
from services.providers.adapters.base import (
    ProviderError,
    TokenUsage,
    UpstreamRequest,
    UpstreamStreamError,
    convert,
    load_object,
)
from services.providers.adapters.params import (
    apply_catalog,
    apply_renames,
    refuse_or_drop,
    unsupported,
    without_own_fields,
)
from services.providers.adapters.sse import SseEvent, is_done
from services.providers.adapters.wire_openai import (
    ChatCompletion,
    ChatCompletionChunk,
    CompletionUsage,
    UsageEnvelope,
    error_said,
)
from stepblend.v1 import router_pb2

CHAT_PATH = "/chat/completions"
_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Quirks:
    """How a vendor departs from OpenAI (a row's `quirks` table in vendors.toml)."""

    # Whether it accepts `stream_options`. Without it the usage arrives however the
    # vendor sends it unasked (the translator reads usage from any chunk).
    supports_stream_options: bool = True
    # A chunk key whose object carries `usage` (Groq: `x_groq`); stripped before
    # forwarding, since its usage is not the client's to see unasked.
    usage_envelope: str = ""
    # Vendor-wide renames, after the catalog's (Mistral: seed -> random_seed).
    param_renames: Mapping[str, str] = field(default_factory=dict)
    # When set, the only top-level parameters the vendor takes (Mistral answers any
    # other with a 422); the rest are refused, or dropped when inert.
    accepted_params: frozenset[str] = frozenset()
    # Parameters the vendor refuses (Groq: logprobs, logit_bias, n > 1): refused,
    # or dropped when inert.
    refused_params: frozenset[str] = frozenset()
    # Parameters that only label the request for the provider's own records (user,
    # store, metadata) and that a strict vendor rejects: dropped, since they cannot
    # change the answer.
    dropped_params: frozenset[str] = frozenset()
    # Message fields the vendor rejects when sent back (DeepSeek: reasoning_content).
    dropped_message_fields: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Quirks:
        """From a vendors.toml table; ValueError/TypeError naming what is wrong."""
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown quirks {sorted(unknown)} (known: {sorted(known)})")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            default = getattr(cls(), name)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise TypeError(f"quirk {name} must be true or false")
            elif isinstance(default, str):
                if not isinstance(value, str):
                    raise TypeError(f"quirk {name} must be a string")
            elif isinstance(default, frozenset):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise TypeError(f"quirk {name} must be a list of strings")
                value = frozenset(value)
            elif not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise TypeError(f"quirk {name} must be a table of strings")
            values[name] = value
        return cls(**values)


def build_request(
    body: Mapping[str, Any], candidate: router_pb2.Candidate, stream: bool, quirks: Quirks = Quirks()
) -> UpstreamRequest:
    """The upstream request for `candidate`; raises `RequestRefused` for a parameter
    the model or vendor does not take."""
    out = without_own_fields(body)
    apply_catalog(out, candidate)
    apply_renames(out, quirks.param_renames)
    _vendor_params(out, candidate.provider, quirks)
    if quirks.dropped_message_fields and isinstance(out.get("messages"), list):
        out["messages"] = [_without(m, quirks.dropped_message_fields) for m in out["messages"]]
    out["model"] = candidate.upstream_model
    if candidate.output_budget > 0 and out.get("max_tokens") is None and out.get("max_completion_tokens") is None:
        out[_budget_param(candidate, quirks)] = candidate.output_budget
    if stream:
        out["stream"] = True
        if quirks.supports_stream_options:
            options = out.get("stream_options")
            out["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        else:
            out.pop("stream_options", None)
    else:
        # OpenAI refuses stream_options on a request that does not stream.
        out.pop("stream", None)
        out.pop("stream_options", None)
    return UpstreamRequest(CHAT_PATH, orjson.dumps(out))


def _vendor_params(out: dict[str, Any], provider: str, quirks: Quirks) -> None:
    where = f"the provider '{provider}'"
    for param in quirks.dropped_params:
        out.pop(param, None)
    refuse_or_drop(out, quirks.refused_params, where)
    if quirks.accepted_params:
        # stream/stream_options are StepBlend's to set below, not the client's.
        own = {"model", "messages", "stream", "stream_options"}
        for param in [p for p in out if p not in quirks.accepted_params and p not in own]:
            if not is_inert(param, out[param]):
                raise unsupported(param, where)
            del out[param]


def _budget_param(candidate: router_pb2.Candidate, quirks: Quirks) -> str:
    name = candidate.param_renames.get("max_tokens", "max_tokens")
    if name in candidate.unsupported_params:
        name = "max_completion_tokens"
    return quirks.param_renames.get(name, name)


def _without(message: Any, names: frozenset[str]) -> Any:
    if not isinstance(message, dict):
        return message
    return {key: value for key, value in message.items() if key not in names}


def auth_headers(api_key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"}


def parse_completion(
    data: bytes, completion_id: str, model: str, *, created: int = 0, quirks: Quirks = Quirks()
) -> tuple[bytes, TokenUsage | None]:
    """A `chat.completion` with StepBlend's id and model, and its usage."""
    obj = load_object(data)
    answer = convert(obj, ChatCompletion)
    _rewrite(obj, completion_id, model, created)
    usage = _usage(answer.usage, obj, quirks)
    return orjson.dumps(obj), usage


def parse_chunk(
    data: bytes,
    completion_id: str,
    model: str,
    *,
    created: int = 0,
    include_usage: bool = False,
    quirks: Quirks = Quirks(),
) -> tuple[bytes | None, TokenUsage | None]:
    """One stream payload: the chunk to forward (None for a usage-only or empty
    chunk) and the usage it carried. Forwarded chunks carry `"usage": null` when the
    client asked for usage (as OpenAI's do) and no `usage` key otherwise."""
    obj, usage, _ = _chunk(load_object(data), completion_id, model, created, include_usage, quirks)
    return (None if obj is None else orjson.dumps(obj)), usage


def _chunk(
    obj: dict[str, Any], completion_id: str, model: str, created: int, include_usage: bool, quirks: Quirks
) -> tuple[dict[str, Any] | None, TokenUsage | None, bool]:
    """The chunk to forward (`obj`, rewritten in place, or None), its usage, and
    whether a choice finished in it."""
    if "error" in obj and "choices" not in obj:
        said = error_said(obj)
        raise UpstreamStreamError(said.message or "the provider reported an error mid-stream", said.kind)
    chunk = convert(obj, ChatCompletionChunk)
    usage = _usage(chunk.usage, obj, quirks)
    if not chunk.choices:
        return None, usage, False
    _rewrite(obj, completion_id, model, created)
    if include_usage:
        obj["usage"] = None
    else:
        obj.pop("usage", None)
    return obj, usage, chunk.finished


class ChunkTranslator:
    """The `StreamTranslator` of this wire format: chunks map one to one."""

    def __init__(self, completion_id: str, model: str, *, created: int, include_usage: bool, quirks: Quirks) -> None:
        self._args = (completion_id, model)
        self._created = created
        self._include_usage = include_usage
        self._quirks = quirks
        self._usage: TokenUsage | None = None
        self._complete = False
        self._ended = False

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def ended(self) -> bool:
        return self._ended

    def feed(self, event: SseEvent) -> list[bytes]:
        if is_done(event.data):
            self._ended = self._complete = True
            return []
        obj, usage, finished = _chunk(
            load_object(event.data), *self._args, self._created, self._include_usage, self._quirks
        )
        self._usage = usage or self._usage
        self._complete = self._complete or finished
        return [] if obj is None else [orjson.dumps(obj)]


def error_details(data: bytes) -> ProviderError:
    """What an OpenAI-shaped error body says (lenient about vendors' variants)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ProviderError(data[:_MAX_ERROR_CHARS].decode("utf-8", "replace").strip())
    return error_said(obj)


def _usage(usage: CompletionUsage | None, obj: dict[str, Any], quirks: Quirks) -> TokenUsage | None:
    """The usage of an answer or chunk: its own, else the vendor's envelope's, which
    is taken out of what is forwarded (it is not the client's to see unasked)."""
    envelope = obj.pop(quirks.usage_envelope, None) if quirks.usage_envelope else None
    if usage is None and envelope is not None:
        usage = convert(envelope, UsageEnvelope).usage
    return None if usage is None else usage.tokens()


def _rewrite(obj: dict[str, Any], completion_id: str, model: str, created: int) -> None:
    obj["id"] = completion_id
    obj["model"] = model
    if created:
        obj["created"] = created


@dataclass(frozen=True)
class OpenAICompatible:
    """The `Adapter` for this wire format, with one vendor's quirks."""

    quirks: Quirks = Quirks()

    def build_request(self, body: dict[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
        return build_request(body, candidate, stream, self.quirks)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return auth_headers(api_key)

    def parse_completion(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0
    ) -> tuple[bytes, TokenUsage | None]:
        return parse_completion(data, completion_id, model, created=created, quirks=self.quirks)

    def stream_translator(
        self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
    ) -> ChunkTranslator:
        return ChunkTranslator(completion_id, model, created=created, include_usage=include_usage, quirks=self.quirks)

    def error_details(self, data: bytes) -> ProviderError:
        return error_details(data)
