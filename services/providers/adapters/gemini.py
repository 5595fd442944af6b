"""OpenAI Chat Completions ⇄ Google's Gemini API, natively: `POST
/v1beta/models/{model}:generateContent` (`:streamGenerateContent?alt=sse` to
stream), the key in `x-goog-api-key`. Not through Google's OpenAI-compatible
endpoint, which drops features (thought signatures, usage detail, schema control).

Request, parameter by parameter:

    messages                     → systemInstruction + contents (gemini_contents)
    max_tokens / max_completion_tokens
                                 → generationConfig.maxOutputTokens (else the
                                   candidate's output budget when a cost cap set one)
    stop (string or list)        → generationConfig.stopSequences
    temperature, top_p, top_k, seed, presence_penalty, frequency_penalty
                                 → generationConfig.temperature, topP, topK, seed,
                                   presencePenalty, frequencyPenalty
    response_format json_object  → responseMimeType application/json
    response_format json_schema  → the same + responseSchema (gemini_schema)
    reasoning_effort none|low|medium|high
                                 → thinkingConfig.thinkingBudget 0|1024|8192|24576
                                   (the budgets Google's own OpenAI endpoint uses)
    tools (function)             → tools [{functionDeclarations: [{name, description,
                                   parameters}]}] (parameters through gemini_schema)
    tool_choice auto|none|required|{function}
                                 → toolConfig.functionCallingConfig.mode AUTO|NONE|ANY
                                   (+ allowedFunctionNames)
    stream                       → the streaming method (usage always comes in it)
    n>1, logprobs, top_logprobs, logit_bias, parallel_tool_calls: false, audio,
    modalities, prediction, web_search_options, functions, function_call
                                 → refused with a 400 unless null or OpenAI's default
    user, store, metadata, service_tier, stream_options, and anything else
                                 → dropped: they label the request or ask for
                                   OpenAI-only behaviour

Answers: gemini_answers. Errors: `{"error": {"code", "message", "status",
"details"}}` — 400 INVALID_ARGUMENT (an invalid key too: reason API_KEY_INVALID),
403 PERMISSION_DENIED, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 500 INTERNAL, 503
UNAVAILABLE, 504 DEADLINE_EXCEEDED.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import quote

import msgspec
import orjson

import services.providers.adapters.gemini_answers as gemini_answers
import services.providers.adapters.gemini_contents as gemini_contents
from services.providers.adapters.base import ProviderError, RequestRefused, TokenUsage, UpstreamRequest
from services.providers.adapters.gemini_schema import to_gemini
from services.providers.adapters.params import apply_catalog, output_limit, refuse_or_drop, without_own_fields
from services.providers.adapters.wire_gemini import ERROR
from stepblend.v1 import router_pb2

API_VERSION = "v1beta"
_MAX_ERROR_CHARS = 500

REFUSED = (
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "parallel_tool_calls",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
)
#: OpenAI body field → generationConfig field, for the numbers passed as they are.
_SAMPLING = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}
_THINKING_BUDGETS = {"none": 0, "low": 1024, "medium": 8192, "high": 24576}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


@dataclass(frozen=True)
class Quirks:
    """The `quirks` table of a gemini-format row in vendors.toml."""

    version: str = API_VERSION

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Quirks:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown quirks {sorted(unknown)} (known: {sorted(known)})")
        if "version" in raw and (not isinstance(raw["version"], str) or not raw["version"].isidentifier()):
            raise TypeError("quirk version must be an API version name such as v1beta")
        return cls(**raw)


def path(model: str, stream: bool, version: str = API_VERSION) -> str:
    """The generate method's path under the vendor's root URL."""
    return model_path(model, "streamGenerateContent?alt=sse" if stream else "generateContent", version)


def model_path(model: str, method: str, version: str = API_VERSION) -> str:
    """`model`'s `method` under the vendor's root URL, the model escaped."""
    return f"/{version}/models/{quote(model, safe='')}:{method}"


def build_request(
    body: Mapping[str, Any], candidate: router_pb2.Candidate, stream: bool, quirks: Quirks = Quirks()
) -> UpstreamRequest:
    """The `generateContent` request for `candidate` (see the module docstring)."""
    given = without_own_fields(body)
    apply_catalog(given, candidate)
    refuse_or_drop(given, REFUSED, "Gemini models")
    conversation = gemini_contents.convert(given.get("messages"))
    out: dict[str, Any] = {"contents": conversation.contents}
    if conversation.system:
        out["systemInstruction"] = {"parts": conversation.system}
    tools = given.get("tools")
    if tools:
        out["tools"] = [{"functionDeclarations": [_declaration(tool, i) for i, tool in enumerate(_list(tools))]}]
    mode = _tool_config(given.get("tool_choice"), bool(tools))
    if mode is not None:
        out["toolConfig"] = {"functionCallingConfig": mode}
    config = _generation_config(given, candidate)
    if config:
        out["generationConfig"] = config
    return UpstreamRequest(path(candidate.upstream_model, stream, quirks.version), orjson.dumps(out))


def _generation_config(given: dict[str, Any], candidate: router_pb2.Candidate) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = output_limit(given) or candidate.output_budget
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    stop = given.get("stop")
    if stop is not None:
        config["stopSequences"] = _stop_sequences(stop)
    for name, field in _SAMPLING.items():
        value = given.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise RequestRefused(f"{name} must be a number", name)
        config[field] = value
    config.update(_response_format(given.get("response_format")))
    effort = given.get("reasoning_effort")
    if effort is not None:
        if effort not in _THINKING_BUDGETS:
            raise RequestRefused(
                f"reasoning_effort must be one of {', '.join(_THINKING_BUDGETS)} with Gemini models", "reasoning_effort"
            )
        config["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGETS[effort]}
    return config


def _stop_sequences(stop: Any) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else stop
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise RequestRefused("stop must be a string or an array of strings", "stop")
    return [s for s in sequences if s]


def _response_format(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            raise RequestRefused("response_format.json_schema.schema is required", "response_format")
        where = "response_format.json_schema.schema"
        return {"responseMimeType": "application/json", "responseSchema": to_gemini(schema, where, ordered=True)}
    raise RequestRefused("response_format.type must be text, json_object or json_schema", "response_format")


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise RequestRefused("tools must be an array", "tools")
    return value


def _declaration(tool: Any, i: int) -> dict[str, Any]:
    where = f"tools[{i}]"
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
        raise RequestRefused(f"{where}: only function tools are supported with Gemini models", where)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise RequestRefused(f"{where}.function.name is required", f"{where}.function.name")
    out: dict[str, Any] = {"name": name}
    if isinstance(function.get("description"), str) and function["description"]:
        out["description"] = function["description"]
    schema = function.get("parameters")
    if schema is not None:
        parameters = to_gemini(schema, f"{where}.function.parameters")
        # Gemini refuses an OBJECT without properties: a function without arguments
        # is declared without parameters.
        if parameters.get("properties") or parameters.get("type") != "OBJECT":
            out["parameters"] = parameters
    return out


def _tool_config(choice: Any, has_tools: bool) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _MODES:
        config: dict[str, Any] = {"mode": _MODES[choice]}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        config = {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    else:
        raise RequestRefused("tool_choice must be auto, none, required or a named function", "tool_choice")
    if not has_tools:
        if config["mode"] == "ANY":
            raise RequestRefused("tool_choice requires tools", "tool_choice")
        return None
    return config


def auth_headers(api_key: str) -> dict[str, str]:
    return {"x-goog-api-key": api_key}


def error_details(data: bytes) -> ProviderError:
    """What a Gemini error body says. `code` is the precise reason when the body gives
    one (`api_key_invalid`), else the status (`resource_exhausted`); `kind` the status."""
    try:
        body = ERROR.decode(data)
    except msgspec.ValidationError:
        return ProviderError()  # JSON, but not Google's error shape
    except msgspec.DecodeError:
        return ProviderError(data[:_MAX_ERROR_CHARS].decode("utf-8", "replace").strip())
    if body.error is None:
        return ProviderError()
    status = body.error.status or ""
    code = (body.error.reason or status).lower()
    return ProviderError((body.error.message or "")[:_MAX_ERROR_CHARS], "", code, status)


@dataclass(frozen=True)
class Gemini:
    """The `Adapter` for the Gemini API."""

    quirks: Quirks = Quirks()

    def build_request(self, body: dict[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
        return build_request(body, candidate, stream, self.quirks)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return auth_headers(api_key)

    def parse_completion(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0
    ) -> tuple[bytes, TokenUsage | None]:
        return gemini_answers.parse_completion(data, completion_id, model, created=created)

    def stream_translator(
        self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
    ) -> gemini_answers.ChunkTranslator:
        return gemini_answers.ChunkTranslator(completion_id, model, created=created, include_usage=include_usage)

    def error_details(self, data: bytes) -> ProviderError:
        return error_details(data)
