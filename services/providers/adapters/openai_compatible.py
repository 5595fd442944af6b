"""OpenAI Chat Completions ⇄ any OpenAI-compatible provider (OpenAI, Groq, DeepSeek,
Mistral, Together, xAI, vLLM, Ollama…).

The body passes through as the client wrote it, except what differs per candidate:
`model` becomes the provider's id, the catalog's parameter renames are applied,
parameters the model refuses are refused here (never sent to fail upstream), the
output budget fills in a missing `max_tokens`, and a stream always asks for usage
(`stream_options.include_usage`), which StepBlend needs for billing.

Answers come back with StepBlend's completion id and the catalog model id. In a
stream, the provider's usage-only chunk (`choices: []`) is never forwarded — the
gateway sends its own last chunk — and its usage is returned instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import orjson

from services.providers.adapters.base import (
    ProviderError,
    RequestRefused,
    TokenUsage,
    UpstreamFormatError,
    UpstreamRequest,
    UpstreamStreamError,
)
from stepblend.v1 import router_pb2

CHAT_PATH = "/chat/completions"
_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Quirks:
    """How a vendor departs from OpenAI."""

    # Whether it accepts `stream_options`; without it the usage arrives however the
    # vendor sends it (parse_chunk reads usage from any chunk).
    supports_stream_options: bool = True

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Quirks:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown quirks {sorted(unknown)} (known: {sorted(known)})")
        for name, value in raw.items():
            if not isinstance(value, bool):
                raise TypeError(f"quirk {name} must be true or false")
        return cls(**raw)


def build_request(
    body: Mapping[str, Any], candidate: router_pb2.Candidate, stream: bool, quirks: Quirks = Quirks()
) -> UpstreamRequest:
    """The upstream request for `candidate`; raises `RequestRefused` for a parameter
    the model does not take."""
    out = {key: value for key, value in body.items() if not key.startswith("stepblend_")}
    for old, new in candidate.param_renames.items():
        if old in out:
            value = out.pop(old)
            if out.get(new) is None:
                out[new] = value
    for param in candidate.unsupported_params:
        if out.get(param) is not None:
            message = f"Unsupported parameter: '{param}' is not supported with the model '{candidate.model}'."
            raise RequestRefused(message, param, "unsupported_parameter")
        out.pop(param, None)
    out["model"] = candidate.upstream_model
    if candidate.output_budget > 0 and out.get("max_tokens") is None and out.get("max_completion_tokens") is None:
        budget_param = candidate.param_renames.get("max_tokens", "max_tokens")
        if budget_param in candidate.unsupported_params:
            budget_param = "max_completion_tokens"
        out[budget_param] = candidate.output_budget
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


def auth_headers(api_key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {api_key}"}


def parse_completion(
    data: bytes, completion_id: str, model: str, *, created: int = 0
) -> tuple[bytes, TokenUsage | None]:
    """A `chat.completion` with StepBlend's id and model, and its usage."""
    obj = _load_object(data)
    if not isinstance(obj.get("choices"), list):
        raise UpstreamFormatError("the provider's answer has no choices")
    _rewrite(obj, completion_id, model, created)
    return orjson.dumps(obj), usage_of(obj.get("usage"))


def parse_chunk(
    data: bytes, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
) -> tuple[bytes | None, TokenUsage | None]:
    """One stream payload: the chunk to forward (None for a usage-only or empty
    chunk) and the usage it carried. Forwarded chunks carry `"usage": null` when the
    client asked for usage (as OpenAI's do) and no `usage` key otherwise."""
    obj = _load_object(data)
    if "error" in obj and "choices" not in obj:
        raise UpstreamStreamError(_error_fields(obj).message or "the provider reported an error mid-stream")
    usage = usage_of(obj.get("usage"))
    if not obj.get("choices"):
        return None, usage
    _rewrite(obj, completion_id, model, created)
    if include_usage:
        obj["usage"] = None
    else:
        obj.pop("usage", None)
    return orjson.dumps(obj), usage


def error_details(data: bytes) -> ProviderError:
    """What an OpenAI-shaped error body says (lenient about vendors' variants)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return ProviderError(data[:_MAX_ERROR_CHARS].decode("utf-8", "replace").strip())
    return _error_fields(obj) if isinstance(obj, dict) else ProviderError()


def usage_of(raw: Any) -> TokenUsage | None:
    """TokenUsage from an OpenAI `usage` object; cached tokens from OpenAI's
    `prompt_tokens_details.cached_tokens` or DeepSeek's `prompt_cache_hit_tokens`."""
    if not isinstance(raw, dict):
        return None
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    total = _int(raw.get("total_tokens")) or prompt + completion
    details = raw.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    cached = cached or _int(raw.get("prompt_cache_hit_tokens"))
    return TokenUsage(prompt, completion, total, cached)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _load_object(data: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFormatError("the provider sent invalid JSON") from exc
    if not isinstance(obj, dict):
        raise UpstreamFormatError("the provider sent JSON that is not an object")
    return obj


def _rewrite(obj: dict[str, Any], completion_id: str, model: str, created: int) -> None:
    obj["id"] = completion_id
    obj["model"] = model
    if created:
        obj["created"] = created


def _error_fields(obj: dict[str, Any]) -> ProviderError:
    error = obj.get("error")
    message: Any = ""
    param: Any = ""
    code: Any = ""
    if isinstance(error, dict):
        message, param, code = error.get("message") or "", error.get("param"), error.get("code")
    elif isinstance(error, str):
        message = error
    elif isinstance(obj.get("message"), str):
        message = obj["message"]
    elif obj.get("detail"):
        message = obj["detail"]
    return ProviderError(
        str(message)[:_MAX_ERROR_CHARS],
        param if isinstance(param, str) else "",
        code if isinstance(code, str) else "",
    )


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
        return parse_completion(data, completion_id, model, created=created)

    def parse_chunk(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
    ) -> tuple[bytes | None, TokenUsage | None]:
        return parse_chunk(data, completion_id, model, created=created, include_usage=include_usage)

    def error_details(self, data: bytes) -> ProviderError:
        return error_details(data)
