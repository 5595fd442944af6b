"""Anthropic Messages request → the internal OpenAI chat completions body.

Translated for any model: `system` (string or text blocks), text / image (base64 and
url sources) / tool_use / tool_result blocks, `tools` (input_schema → parameters),
`tool_choice` auto/any/tool/none, `stop_sequences` → stop, `max_tokens` (required),
temperature, top_p, `top_k` (kept as `top_k`; the Anthropic adapter sends it, and
a model whose catalog entry lists `top_k` in unsupported_params is excluded by routing),
`metadata.user_id` → user, `stream`, `stepblend_max_cost`, `stepblend_strategy`. A
tool_result with `is_error` becomes a tool message prefixed "Error: ". Earlier turns' thinking blocks are dropped (other models do
not take them back, and they are not part of the question).

`thinking` is a permission, not a requirement (Claude Code sends it on every request):
a model without Anthropic's extended thinking answers without it, so it is dropped.

Refused with 400 (they would change the answer if dropped, and only Anthropic serves
them): document / search_result / container_upload blocks,
server tools (any tool with a `type` other than custom), images inside a tool_result,
`tool_choice.disable_parallel_tool_use`, `mcp_servers`, `container`.
Dropped as not changing the answer: `cache_control` and other block annotations,
`service_tier`, `thinking`, other top-level fields.
The raw body is kept in `Parsed.native` so an Anthropic model gets all of it.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from services.gateway.codecs.base import Parsed
from services.gateway.errors import ApiError, invalid
from services.gateway.schemas import ChatRequest, nested_deeper_than

__all__ = ["parse"]

_REFUSED_FIELDS = ("mcp_servers", "container")
_REFUSED_BLOCKS = frozenset({"document", "search_result", "container_upload", "server_tool_use", "redacted_thinking"})


def _refuse(what: str, param: str) -> ApiError:
    return invalid(
        f"{what} is only supported when an Anthropic model serves the request", param, "unsupported_parameter"
    )


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


def _tool_result(block: dict[str, Any], param: str) -> dict[str, Any]:
    content = block.get("content", "")
    if isinstance(content, list):
        for i, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image":
                raise _refuse("an image inside tool_result", f"{param}.content.{i}")
        content = _text(content, f"{param}.content")
    elif not isinstance(content, str):
        raise invalid(f"{param}.content: Input should be a valid string or list", param)
    if block.get("is_error"):
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": content}


def _message(message: Any, index: int) -> list[dict[str, Any]]:
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
            out.append(_tool_result(block, where))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue  # earlier reasoning of another turn: other models neither take nor need it
        elif kind in _REFUSED_BLOCKS:
            raise _refuse(f"a {kind} block", where)
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


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list", "tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise invalid(f"tools.{i}.name: Field required", f"tools.{i}")
        if tool.get("type") not in (None, "custom"):
            raise _refuse(f"the server tool {tool.get('type')!r}", f"tools.{i}")
        function: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("input_schema", {"type": "object"})}
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
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use"):
        raise _refuse("tool_choice.disable_parallel_tool_use", "tool_choice")
    return mapped


def _body(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise invalid("Request body must be a JSON object")
    for name in _REFUSED_FIELDS:
        if raw.get(name):
            raise _refuse(f"`{name}`", name)
    if "max_tokens" not in raw:
        raise invalid("max_tokens: Field required", "max_tokens")
    messages: list[dict[str, Any]] = []
    if raw.get("system"):
        messages.append({"role": "system", "content": _text(raw["system"], "system")})
    if not isinstance(raw.get("messages"), list):
        raise invalid("messages: Field required", "messages")
    for i, message in enumerate(raw["messages"]):
        messages.extend(_message(message, i))
    body: dict[str, Any] = {"model": raw.get("model"), "messages": messages, "max_tokens": raw["max_tokens"]}
    for name in ("temperature", "top_p", "top_k", "stream", "stepblend_max_cost", "stepblend_strategy"):
        if raw.get(name) is not None:
            body[name] = raw[name]
    if raw.get("stop_sequences"):
        body["stop"] = raw["stop_sequences"]
    if raw.get("tools"):
        body["tools"] = _tools(raw["tools"])
    if raw.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(raw["tool_choice"])
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
    body = _body(decoded)
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise invalid(f"{where}: {first['msg']}", where) from None
    upstream = {k: v for k, v in body.items() if not k.startswith("stepblend_")}
    return Parsed(
        request, upstream, native=raw, extra={"max_tokens": body["max_tokens"], "stream": bool(body.get("stream"))}
    )
