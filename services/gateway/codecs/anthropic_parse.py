"""Anthropic Messages request → the internal OpenAI chat completions body.

A provider whose wire format is Anthropic's (`NATIVE_PROVIDERS`) gets the body as
the client sent it (`Parsed.native`, passed through by providers with only the model
id rewritten): nothing below applies to it. For every other model:

Translated: `system` (string or text blocks), text / image (base64 and url sources) /
tool_use / tool_result blocks, `tools` (input_schema → parameters), `tool_choice`
auto/any/tool/none (`disable_parallel_tool_use` → parallel_tool_calls false),
`stop_sequences` → stop, `max_tokens` (required), temperature, top_p, `top_k` (kept as
`top_k`; a model whose catalog entry lists it in unsupported_params is excluded by
routing), `metadata.user_id` → user, `stream`, `stepblend_max_cost`,
`stepblend_strategy`. A tool_result with `is_error` becomes a tool message prefixed
"Error: ".

Dropped, as not changing what is asked: `cache_control` and other block annotations,
`service_tier`, other top-level fields, earlier turns' thinking blocks (other models
neither take them back nor need them), and `thinking` itself — a permission, not a
requirement (Claude Code sends it on every request): a model without Anthropic's
extended thinking answers without it.

Anthropic-only (`Parsed.native_only`: routing keeps the request to Anthropic's models,
and answers a 400 naming the feature when none can serve it): document / search_result
/ container_upload / server_tool_use / redacted_thinking blocks, server tools (a tool
with a `type` other than custom), images inside a tool_result, `mcp_servers`,
`container`. Their translation is only ever counted (as JSON text, which errs high).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from services.gateway.codecs.base import Parsed
from services.gateway.errors import ApiError, invalid
from services.gateway.schemas import ChatRequest, nested_deeper_than

__all__ = ["parse"]

#: Providers whose wire format is Anthropic's own (vendors.toml): they get the body as sent.
NATIVE_PROVIDERS = frozenset({"anthropic"})
_NATIVE_FIELDS = ("mcp_servers", "container")
_NATIVE_BLOCKS = frozenset({"document", "search_result", "container_upload", "server_tool_use", "redacted_thinking"})


def _native_only(what: str, param: str) -> ApiError:
    return invalid(
        f"{what} is only supported when an Anthropic model serves the request: name a Claude model (or a "
        "strategy) with an Anthropic key connected",
        param,
        "unsupported_parameter",
    )


def _as_text(block: Any) -> dict[str, Any]:
    """A block other models cannot take, as text: only ever counted (a request that
    has one is served natively), and JSON errs high, as a cost cap's estimate must."""
    return {"type": "text", "text": orjson.dumps(block).decode()}


def _text(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(f"{param}: Input should be a valid string or list of text blocks", param)
    parts = []
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise invalid(f"{param}: only text blocks are allowed here", param)
        parts.append(block["text"])
    return "\n".join(parts)


def _image(source: Any, param: str) -> dict[str, Any]:
    if not isinstance(source, dict):
        raise invalid(f"{param}.source: Field required", param)
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise invalid(f"{param}.source.type: image source must be base64 or url", param)
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], param: str, only: list[ApiError]) -> dict[str, Any]:
    content = block.get("content", "")
    if isinstance(content, list):
        for i, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image":
                only.append(_native_only("an image inside tool_result", f"{param}.content.{i}"))
        texts = [part for part in content if not (isinstance(part, dict) and part.get("type") == "image")]
        content = _text(texts, f"{param}.content")
    elif not isinstance(content, str):
        raise invalid(f"{param}.content: Input should be a valid string or list", param)
    if block.get("is_error"):
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": content}


def _message(message: Any, index: int, only: list[ApiError]) -> list[dict[str, Any]]:
    param = f"messages.{index}"
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise invalid(f"{param}.role: Input should be 'user' or 'assistant'", param)
    role = message["role"]
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise invalid(f"{param}.content: Input should be a valid string or list", param)
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        where = f"{param}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image(block.get("source"), where))
        elif kind == "tool_use" and role == "assistant":
            arguments = orjson.dumps(block.get("input", {})).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
        elif kind == "tool_result" and role == "user":
            out.append(_tool_result(block, where, only))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # earlier reasoning of another turn: other models neither take nor need it
        elif kind in _NATIVE_BLOCKS:
            only.append(_native_only(f"a {kind} block", where))
            parts.append(_as_text(block))
        else:
            raise invalid(f"{where}.type: unknown or misplaced content block type {kind!r}", where)
    if parts or calls:
        text_only = all(p["type"] == "text" for p in parts)
        body: dict[str, Any] = {"role": role}
        if role == "assistant" and text_only:
            body["content"] = "".join(p["text"] for p in parts) or None
        else:
            body["content"] = parts
        if calls:
            body["tool_calls"] = calls
        out.append(body)
    return out


def _tools(tools: Any, only: list[ApiError]) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list", "tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise invalid(f"tools.{i}.name: Field required", f"tools.{i}")
        function: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("input_schema", {"type": "object"})}
        if tool.get("type") not in (None, "custom"):
            only.append(_native_only(f"the server tool {tool.get('type')!r}", f"tools.{i}"))
            function["description"] = orjson.dumps(tool).decode()  # counted, never sent
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> str | dict[str, Any]:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
    if mapped is None:
        raise invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'", "tool_choice")
    return mapped


def _body(raw: Any, only: list[ApiError]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise invalid("Request body must be a JSON object")
    for name in _NATIVE_FIELDS:
        if raw.get(name):
            only.append(_native_only(f"`{name}`", name))
    if "max_tokens" not in raw:
        raise invalid("max_tokens: Field required", "max_tokens")
    messages: list[dict[str, Any]] = []
    if raw.get("system"):
        messages.append({"role": "system", "content": _text(raw["system"], "system")})
    if not isinstance(raw.get("messages"), list):
        raise invalid("messages: Field required", "messages")
    for i, message in enumerate(raw["messages"]):
        messages.extend(_message(message, i, only))
    body: dict[str, Any] = {"model": raw.get("model"), "messages": messages, "max_tokens": raw["max_tokens"]}
    for name in ("temperature", "top_p", "top_k", "stream", "stepblend_max_cost", "stepblend_strategy"):
        if raw.get(name) is not None:
            body[name] = raw[name]
    if raw.get("stop_sequences"):
        body["stop"] = raw["stop_sequences"]
    if raw.get("tools"):
        body["tools"] = _tools(raw["tools"], only)
    choice = raw.get("tool_choice")
    if choice is not None:
        body["tool_choice"] = _tool_choice(choice)
        if isinstance(choice, dict) and choice.get("disable_parallel_tool_use"):
            body["parallel_tool_calls"] = False
    metadata = raw.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id"):
        body["user"] = str(metadata["user_id"])
    if body.get("stream"):
        body["stream_options"] = {"include_usage": True}
    return body


def parse(raw: bytes, *, counting: bool = False) -> Parsed:
    """`counting`: a count_tokens body, which has no `max_tokens` (nothing is generated)."""
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("Request body is not valid JSON") from None
    if nested_deeper_than(decoded):
        raise invalid("Request body is nested too deeply")
    if counting and isinstance(decoded, dict):
        decoded = {**decoded, "max_tokens": 1, "stream": False}
    only: list[ApiError] = []
    body = _body(decoded, only)
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise invalid(f"{where}: {first['msg']}", where) from None
    upstream = {k: v for k, v in body.items() if not k.startswith("stepblend_")}
    return Parsed(
        request,
        upstream,
        native=raw,
        native_providers=NATIVE_PROVIDERS,
        native_only=only[0] if only else None,
        extra={"max_tokens": body["max_tokens"], "stream": bool(body.get("stream"))},
    )
