"""OpenAI Chat Completions ⇄ AWS Bedrock's Converse API: `POST
/model/{modelId}/converse` (`/converse-stream` to stream) on
`https://bedrock-runtime.{region}.amazonaws.com`, signed with AWS Signature V4 by
botocore (`SigV4Auth` over the final URL, headers and body; service `bedrock`, the
key's region) with the account's `{access_key_id, secret_access_key, region}`
(and `session_token` for temporary credentials). A stream is an AWS event stream
(`eventstream`), not SSE.

Request, parameter by parameter:

    messages                     → system + messages (bedrock_messages)
    max_tokens / max_completion_tokens
                                 → inferenceConfig.maxTokens (else the candidate's
                                   output budget when a cost cap set one)
    temperature, top_p           → inferenceConfig.temperature, topP
    stop (string or list)        → inferenceConfig.stopSequences
    tools (function)             → toolConfig.tools [{toolSpec: {name, description,
                                   inputSchema: {json: parameters}}}]
    tool_choice auto|required|{function}
                                 → toolConfig.toolChoice {auto}|{any}|{tool: {name}};
                                   none → no toolConfig (refused when the conversation
                                   holds tool calls, which Bedrock then requires it for)
    response_format json_schema / json_object
                                 → one forced tool, `stepblend_json_response`, whose
                                   input schema is the schema ({"type": "object"} for
                                   json_object): toolConfig {tools: [it], toolChoice:
                                   {tool}}; its input comes back as the answer's text
                                   (bedrock_answers). Converse has no JSON mode; the
                                   models that take a named toolChoice (Claude, Mistral
                                   Large) do it, the catalog says which. With tools
                                   too: refused
    stream                       → the streaming operation (usage always comes in it)
    n>1, logprobs, top_logprobs, logit_bias, presence_penalty, frequency_penalty,
    seed, top_k, reasoning_effort, parallel_tool_calls: false, audio, modalities,
    prediction, web_search_options, functions, function_call
                                 → refused with a 400 unless null or OpenAI's default
                                   (Converse has no field for them)
    user, store, metadata, service_tier, stream_options, and anything else
                                 → dropped: they label the request or ask for
                                   OpenAI-only behaviour

Answers: bedrock_answers. Errors: a JSON body `{"message": ...}` with the type in the
`x-amzn-errortype` header — ValidationException 400, AccessDeniedException 403 (no
access to the model), UnrecognizedClientException / InvalidSignatureException /
ExpiredTokenException 403 (the credentials), ResourceNotFoundException 404,
ModelTimeoutException 408, ModelErrorException 424, ThrottlingException and
ModelNotReadyException 429, InternalServerException 500, ServiceUnavailableException
503 — mapped by status like every provider's (outcomes.http_failure).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec
import orjson

import services.providers.adapters.bedrock_answers as bedrock_answers
import services.providers.adapters.bedrock_messages as bedrock_messages
from services.providers.adapters.base import ProviderError, RequestRefused, TokenUsage, UpstreamRequest
from services.providers.adapters.eventstream import EventStreamDecoder
from services.providers.adapters.params import apply_catalog, output_limit, refuse_or_drop, without_own_fields
from services.providers.adapters.wire_bedrock import ERROR, JSON_TOOL
from stepblend.v1 import router_pb2

SERVICE = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
_MAX_ERROR_CHARS = 500
_WHERE = "Bedrock models"

REFUSED = (
    "n",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "top_k",
    "reasoning_effort",
    "parallel_tool_calls",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
)
#: OpenAI body field → inferenceConfig field, for the numbers passed as they are.
_SAMPLING = {"temperature": "temperature", "top_p": "topP"}
_JSON_TOOL_DESCRIPTION = "Give your whole answer as this tool's input: a JSON object of its schema."
_CHOICES: dict[str, dict[str, Any]] = {"auto": {"auto": {}}, "required": {"any": {}}}


@dataclass(frozen=True)
class Quirks:
    """The `quirks` table of a bedrock-format row in vendors.toml (none yet)."""

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Quirks:
        if raw:
            raise ValueError(f"unknown quirks {sorted(raw)} (bedrock takes none)")
        return cls()


def path(model: str, stream: bool) -> str:
    """The operation's path under the region's endpoint. A model id's `:` (`…-v1:0`) is
    sent as it is: the path SigV4 signs is the path sent."""
    return f"/model/{quote(model, safe=':')}/{'converse-stream' if stream else 'converse'}"


def build_request(body: Mapping[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
    """The Converse request for `candidate` (see the module docstring)."""
    given = without_own_fields(body)
    apply_catalog(given, candidate)
    refuse_or_drop(given, REFUSED, _WHERE)
    conversation = bedrock_messages.convert(given.get("messages"))
    out: dict[str, Any] = {"messages": conversation.messages}
    if conversation.system:
        out["system"] = conversation.system
    config = _inference_config(given, candidate)
    if config:
        out["inferenceConfig"] = config
    tool_config = _json_tool(given.get("response_format"), given.get("tools"))
    if tool_config is None:
        tool_config = _tool_config(given.get("tools"), given.get("tool_choice"), conversation.uses_tools)
    if tool_config is not None:
        out["toolConfig"] = tool_config
    return UpstreamRequest(path(candidate.upstream_model, stream), orjson.dumps(out))


def _inference_config(given: dict[str, Any], candidate: router_pb2.Candidate) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = output_limit(given) or candidate.output_budget
    if max_tokens:
        config["maxTokens"] = max_tokens
    for name, field in _SAMPLING.items():
        value = given.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise RequestRefused(f"{name} must be a number", name)
        config[field] = value
    stop = given.get("stop")
    if stop is not None:
        sequences = [stop] if isinstance(stop, str) else stop
        if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
            raise RequestRefused("stop must be a string or an array of strings", "stop")
        if any(sequences):
            config["stopSequences"] = [s for s in sequences if s]
    return config


def _tool_config(tools: Any, choice: Any, uses_tools: bool) -> dict[str, Any] | None:
    if tools is not None and not isinstance(tools, list):
        raise RequestRefused("tools must be an array", "tools")
    if choice is None or (isinstance(choice, str) and choice in _CHOICES):
        picked = _CHOICES.get(choice or "auto")
    elif choice == "none":
        if uses_tools:
            raise RequestRefused(
                f"tool_choice 'none' is not supported with {_WHERE} in a conversation with tool calls", "tool_choice"
            )
        return None
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        picked = {"tool": {"name": choice["function"]["name"]}}
    else:
        raise RequestRefused("tool_choice must be auto, none, required or a named function", "tool_choice")
    if not tools:
        if choice not in (None, "auto"):
            raise RequestRefused("tool_choice requires tools", "tool_choice")
        return None
    config: dict[str, Any] = {"tools": [_tool_spec(tool, i) for i, tool in enumerate(tools)]}
    # auto is Converse's default; only the models that take toolChoice are sent one they asked for.
    if choice is not None:
        config["toolChoice"] = picked
    return config


def _json_tool(response_format: Any, tools: Any) -> dict[str, Any] | None:
    """The forced tool that carries a JSON answer (module docstring), or None."""
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind is None or kind == "text":
        return None
    if kind == "json_object":
        schema: Any = {"type": "object"}
    elif kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise RequestRefused("response_format.json_schema.schema is required", "response_format")
    else:
        raise RequestRefused("response_format.type must be text, json_object or json_schema", "response_format")
    if tools:
        raise RequestRefused(
            f"response_format {kind} together with tools is not supported with {_WHERE}", "response_format"
        )
    spec = {"name": JSON_TOOL, "description": _JSON_TOOL_DESCRIPTION, "inputSchema": {"json": schema}}
    return {"tools": [{"toolSpec": spec}], "toolChoice": {"tool": {"name": JSON_TOOL}}}


def _tool_spec(tool: Any, i: int) -> dict[str, Any]:
    where = f"tools[{i}]"
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
        raise RequestRefused(f"{where}: only function tools are supported with {_WHERE}", where)
    name = function.get("name")
    if not isinstance(name, str) or not name or name == JSON_TOOL:
        raise RequestRefused(f"{where}.function.name is required (and not {JSON_TOOL})", f"{where}.function.name")
    schema = function.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise RequestRefused(
            f"{where}.function.parameters must be a JSON Schema object", f"{where}.function.parameters"
        )
    spec: dict[str, Any] = {"name": name, "inputSchema": {"json": schema}}
    if isinstance(function.get("description"), str) and function["description"]:
        spec["description"] = function["description"]
    return {"toolSpec": spec}


def sign(url: str, headers: dict[str, str], content: bytes, secret: str) -> dict[str, str]:
    """`headers` signed with SigV4 by botocore over the method, URL, headers and body;
    `secret` is the stored key object (access_key_id, secret_access_key, region,
    session_token)."""
    # botocore on the first Bedrock call: 16 MB a providers process without a
    # Bedrock key does not need to hold.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key = orjson.loads(secret)
    credentials = Credentials(key["access_key_id"], key["secret_access_key"], key.get("session_token"))
    accept = EVENT_STREAM if url.endswith("/converse-stream") else "application/json"
    request = AWSRequest(method="POST", url=url, data=content, headers={**headers, "accept": accept})
    SigV4Auth(credentials, SERVICE, key["region"]).add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}


def error_of(data: bytes, headers: Mapping[str, str]) -> ProviderError:
    """What a Bedrock error answer says: its message, and its type from the
    `x-amzn-errortype` header (`ThrottlingException:http://internal.amazon.com/…`) or
    the body's `__type` (`com.amazon.coral.service#ThrottlingException`)."""
    kind = headers.get("x-amzn-errortype", "").partition(":")[0]
    try:
        body = ERROR.decode(data)
    except msgspec.ValidationError:
        return ProviderError(kind=kind)
    except msgspec.DecodeError:
        return ProviderError(data[:_MAX_ERROR_CHARS].decode("utf-8", "replace").strip(), kind=kind)
    kind = kind or (body.type or "").rpartition("#")[2]
    return ProviderError((body.message or body.Message or "")[:_MAX_ERROR_CHARS], kind=kind)


@dataclass(frozen=True)
class Bedrock:
    """The `Adapter` (and `OwnTransport`) of AWS Bedrock's Converse API."""

    quirks: Quirks = Quirks()

    def build_request(self, body: dict[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
        return build_request(body, candidate, stream)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        # Never sent: a Bedrock request is signed (`sign`), not given a key header.
        return {}

    def sign(self, url: str, headers: dict[str, str], content: bytes, secret: str) -> dict[str, str]:
        return sign(url, headers, content, secret)

    def frame_decoder(self) -> EventStreamDecoder:
        return EventStreamDecoder()

    def parse_completion(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0
    ) -> tuple[bytes, TokenUsage | None]:
        return bedrock_answers.parse_completion(data, completion_id, model, created=created)

    def stream_translator(
        self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
    ) -> bedrock_answers.ChunkTranslator:
        return bedrock_answers.ChunkTranslator(completion_id, model, created=created, include_usage=include_usage)

    def error_details(self, data: bytes) -> ProviderError:
        return error_of(data, {})

    def error_of(self, data: bytes, headers: Mapping[str, str]) -> ProviderError:
        return error_of(data, headers)
