"""OpenAI Chat Completions ⇄ Anthropic's Messages API (`POST /v1/messages`,
`x-api-key` and `anthropic-version: 2023-06-01` headers).

Request, parameter by parameter:

    messages                     → system + messages (anthropic_messages)
    max_tokens / max_completion_tokens
                                 → max_tokens, which Anthropic requires: the client's,
                                   else the candidate's output budget, else the
                                   vendor row's default_max_tokens
    stop (string or list)        → stop_sequences
    temperature                  → temperature; above 1 is refused (Anthropic's range is 0–1)
    top_p                        → top_p
    tools (function)             → tools [{name, description, input_schema}]
    tool_choice auto|none|required|{function}
                                 → {"type": auto|none|any|tool (+name)}
    parallel_tool_calls: false   → tool_choice.disable_parallel_tool_use
    user                         → metadata.user_id
    stream                       → stream (usage always comes in the stream)
    top_k                        → top_k (Anthropic's own, sent via extra_body)
    n>1, logprobs, top_logprobs, logit_bias, presence/frequency_penalty,
    response_format (json), reasoning_effort, audio, modalities, prediction,
    web_search_options, functions, function_call
                                 → refused with a 400 unless null or OpenAI's default
    seed, store, metadata, service_tier, stream_options
                                 → dropped: they label the request or ask for
                                   OpenAI-only best-effort behaviour, and cannot
                                   change what a valid answer is
    anything else                → dropped (unknown fields go to OpenAI-shaped
                                   providers only; Anthropic refuses extra inputs)

Answers: anthropic_answers. Errors: `{"type": "error", "error": {"type", "message"}}`,
by status — 400 invalid_request_error, 401 authentication_error, 403
permission_error, 404 not_found_error, 413 request_too_large, 429 rate_limit_error,
500 api_error, 529 overloaded_error; the executor classifies by status (529 is a
5xx: fall back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import msgspec
import orjson

import services.providers.adapters.anthropic_answers as anthropic_answers
import services.providers.adapters.anthropic_messages as anthropic_messages
from services.providers.adapters.base import (
    ProviderError,
    RequestRefused,
    TokenUsage,
    UpstreamRequest,
)
from services.providers.adapters.params import (
    apply_catalog,
    output_limit,
    refuse_or_drop,
    without_own_fields,
)
from services.providers.adapters.wire_anthropic import ERROR
from stepblend.v1 import router_pb2

MESSAGES_PATH = "/v1/messages"
API_VERSION = "2023-06-01"
_MAX_ERROR_CHARS = 500

REFUSED = (
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "reasoning_effort",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
)


@dataclass(frozen=True)
class Quirks:
    """The `quirks` table of an anthropic-format row in vendors.toml."""

    # max_tokens when neither the client nor the router set one. 4096 is the
    # smallest max output of the Claude 3+ models, so every model takes it.
    default_max_tokens: int = 4096
    version: str = API_VERSION

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Quirks:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown quirks {sorted(unknown)} (known: {sorted(known)})")
        if "default_max_tokens" in raw and (
            not isinstance(raw["default_max_tokens"], int) or raw["default_max_tokens"] < 1
        ):
            raise TypeError("quirk default_max_tokens must be a positive integer")
        if "version" in raw and not isinstance(raw["version"], str):
            raise TypeError("quirk version must be a string")
        return cls(**raw)


def build_request(
    body: Mapping[str, Any], candidate: router_pb2.Candidate, stream: bool, quirks: Quirks = Quirks()
) -> UpstreamRequest:
    """The Messages API request for `candidate` (see the module docstring)."""
    given = without_own_fields(body)
    apply_catalog(given, candidate)
    refuse_or_drop(given, REFUSED, "Anthropic models")
    conversation = anthropic_messages.convert(given.get("messages"))
    out: dict[str, Any] = {"model": candidate.upstream_model}
    if conversation.system:
        out["system"] = _system(conversation.system)
    out["messages"] = conversation.turns
    out["max_tokens"] = _max_tokens(given, candidate, quirks)
    stop = given.get("stop")
    if stop is not None:
        out["stop_sequences"] = _stop_sequences(stop)
    temperature = given.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
            raise RequestRefused("temperature must be between 0 and 1 for Anthropic models", "temperature")
        out["temperature"] = temperature
    for name in ("top_p", "top_k"):
        if given.get(name) is not None:
            out[name] = given[name]
    tools = given.get("tools")
    if tools:
        out["tools"] = [_tool(tool, i) for i, tool in enumerate(_list(tools, "tools"))]
    choice = _tool_choice(given.get("tool_choice"), bool(tools), given.get("parallel_tool_calls"))
    if choice is not None:
        out["tool_choice"] = choice
    if isinstance(given.get("user"), str) and given["user"]:
        out["metadata"] = {"user_id": given["user"]}
    if stream:
        out["stream"] = True
    return UpstreamRequest(MESSAGES_PATH, orjson.dumps(out))


def _system(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # A plain string unless a block carries cache_control, which only blocks can.
    if any("cache_control" in block for block in blocks):
        return blocks
    return "\n\n".join(block["text"] for block in blocks)


def _max_tokens(given: dict[str, Any], candidate: router_pb2.Candidate, quirks: Quirks) -> int:
    return output_limit(given) or candidate.output_budget or quirks.default_max_tokens


def _stop_sequences(stop: Any) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise RequestRefused("stop must be a string or an array of strings", "stop")
    return [s for s in sequences if s.strip()]


def _list(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise RequestRefused(f"{param} must be an array", param)
    return value


def _tool(tool: Any, i: int) -> dict[str, Any]:
    where = f"tools[{i}]"
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
        raise RequestRefused(f"{where}: only function tools are supported with Anthropic models", where)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise RequestRefused(f"{where}.function.name is required", f"{where}.function.name")
    schema = function.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise RequestRefused(
            f"{where}.function.parameters must be a JSON schema object", f"{where}.function.parameters"
        )
    out: dict[str, Any] = {"name": name}
    if isinstance(function.get("description"), str) and function["description"]:
        out["description"] = function["description"]
    out["input_schema"] = schema
    if isinstance(tool.get("cache_control"), dict):
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: Any, has_tools: bool, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        result: dict[str, Any] | None = {"type": "auto"} if has_tools and parallel is False else None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "none":
        result = {"type": "none"}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        result = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise RequestRefused("tool_choice must be auto, none, required or a named function", "tool_choice")
    if not has_tools:
        if result is not None and result["type"] in ("any", "tool"):
            raise RequestRefused("tool_choice requires tools", "tool_choice")
        # Anthropic refuses a tool_choice without tools; auto and none mean nothing then.
        return None
    if result is not None and parallel is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


def auth_headers(api_key: str, version: str = API_VERSION) -> dict[str, str]:
    return {"x-api-key": api_key, "anthropic-version": version}


def error_details(data: bytes) -> ProviderError:
    """What an Anthropic error body says: `{"type": "error", "error": {"type", "message"}}`."""
    try:
        body = ERROR.decode(data)
    except msgspec.ValidationError:
        return ProviderError()  # JSON, but not Anthropic's error shape
    except msgspec.DecodeError:
        return ProviderError(data[:_MAX_ERROR_CHARS].decode("utf-8", "replace").strip())
    if body.error is None:
        return ProviderError()
    kind = body.error.type or ""
    return ProviderError((body.error.message or "")[:_MAX_ERROR_CHARS], "", kind, kind)


@dataclass(frozen=True)
class Anthropic:
    """The `Adapter` for Anthropic's Messages API."""

    quirks: Quirks = Quirks()

    def build_request(self, body: dict[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
        return build_request(body, candidate, stream, self.quirks)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return auth_headers(api_key, self.quirks.version)

    def parse_completion(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0
    ) -> tuple[bytes, TokenUsage | None]:
        return anthropic_answers.parse_completion(data, completion_id, model, created=created)

    def stream_translator(
        self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
    ) -> anthropic_answers.EventTranslator:
        return anthropic_answers.EventTranslator(completion_id, model, created=created, include_usage=include_usage)

    def error_details(self, data: bytes) -> ProviderError:
        return error_details(data)
