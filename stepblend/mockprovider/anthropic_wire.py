"""Anthropic's Messages API objects as the real API writes them, built from a request.

Pure functions: headers and a body in; a validation error, a `message` object, the
SSE events of a stream, or an error body out — as Anthropic documents them:

    event: message_start        {"type":"message_start","message":{…,"content":[],"usage":{…}}}
    event: content_block_start  {"type":"content_block_start","index":0,"content_block":{…}}
    event: ping                 {"type":"ping"}
    event: content_block_delta  {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",…}}
    event: content_block_stop   {"type":"content_block_stop","index":0}
    …                           one start/deltas/stop per block (tool_use: input_json_delta)
    event: message_delta        {"type":"message_delta","delta":{"stop_reason":…},"usage":{"output_tokens":…}}
    event: message_stop         {"type":"message_stop"}

Errors: `{"type":"error","error":{"type","message"},"request_id"}` with Anthropic's
types per status. Requests are validated the way the API does where a translator
can get it wrong: required headers and fields, extra fields, roles, empty text,
tool_result placement, temperature range, image sources.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from stepblend.mockprovider.answers import Answer, Ask
from stepblend.mockprovider.wire import count_tokens

VERSION = "2023-06-01"
FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature", "top_p",
        "top_k", "tools", "tool_choice", "metadata", "thinking", "service_tier", "container", "mcp_servers",
    }
)  # fmt: skip
_SERVER_TOOL = re.compile(r"^[a-z_]+_\d{8}$")
_BLOCK_TYPES = frozenset(
    {
        "text", "image", "tool_use", "tool_result", "document", "search_result", "thinking", "redacted_thinking",
        "server_tool_use", "web_search_tool_result", "container_upload",
    }
)  # fmt: skip
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_MESSAGES = {
    400: "Invalid request.",
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "The requested resource could not be found.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}
_STOP_REASONS = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens", "tool_calls": "tool_use"}
_IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}


def error(status: int, message: str | None = None, request_id: str = "req_mock") -> bytes:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": kind, "message": message or _MESSAGES.get(status, f"HTTP {status}")},
            "request_id": request_id,
        }
    )


def error_event(kind: str, message: str | None = None) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message or "Overloaded"}})


def invalid(headers: dict[str, str], body: Any, reject_keys: frozenset[str]) -> tuple[int, str] | None:
    """The status and message Anthropic would refuse this request with, or None."""
    key = headers.get("x-api-key", "")
    auth = headers.get("authorization", "")
    if not key and auth[:7].lower() == "bearer ":
        # Newer Anthropic SDKs send the API key as a bearer token; x-api-key is
        # what the API documents (and what StepBlend sends).
        key = auth[7:].strip()
    if not key:
        return 401, "x-api-key header is required"
    if key in reject_keys:
        return 401, "invalid x-api-key"
    if not headers.get("anthropic-version"):
        return 400, "anthropic-version: header is required"
    if not isinstance(body, dict):
        return 400, "There was an error parsing the body of your request."
    for name in body:
        if name not in FIELDS:
            return 400, f"{name}: Extra inputs are not permitted"
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return 400, f"{name}: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return 400, "max_tokens: Input should be a valid integer greater than or equal to 1"
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 1):
        return 400, "temperature: Input should be less than or equal to 1"
    if body.get("tool_choice") is not None and not body.get("tools"):
        return 400, "tool_choice: tool_choice may only be specified while providing tools"
    for i, tool in enumerate(body.get("tools") or []):
        if not isinstance(tool, dict) or not tool.get("name"):
            return 400, f"tools.{i}.name: Field required"
        # A custom tool has an input_schema; Anthropic's own (web_search_20250305,
        # bash_20250124...) are named by a versioned `type` instead.
        kind = tool.get("type")
        if kind in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
            return 400, f"tools.{i}.custom.input_schema: Field required"
        if kind not in (None, "custom") and not _SERVER_TOOL.match(str(kind)):
            return 400, f"tools.{i}: Input tag '{kind}' does not match any of the expected tags"
    return _invalid_messages(body["messages"], body.get("system"))


def _invalid_messages(messages: Any, system: Any) -> tuple[int, str] | None:
    if not isinstance(messages, list) or not messages:
        return 400, "messages: at least one message is required"
    if system is not None and not isinstance(system, str | list):
        return 400, "system: Input should be a valid string or list of text blocks"
    previous_uses: set[str] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            role = message.get("role") if isinstance(message, dict) else None
            if role == "system":
                return 400, (
                    'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter,'
                    ' not "system" as an input message role.'
                )
            return 400, f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            return 400, f"messages.{i}: all messages must have non-empty content"
        uses: set[str] = set()
        seen_other = False
        for j, block in enumerate(blocks):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and not block.get("text"):
                return 400, "messages: text content blocks must be non-empty"
            if kind == "image" and not _valid_image(block.get("source")):
                return 400, f"messages.{i}.content.{j}.image.source: invalid image source"
            if kind == "tool_use":
                if message["role"] != "assistant" or not isinstance(block.get("input"), dict):
                    return 400, f"messages.{i}.content.{j}: tool_use blocks need an assistant turn and an object input"
                uses.add(str(block.get("id")))
            if kind == "tool_result":
                if seen_other:
                    return 400, f"messages.{i}: tool_result blocks must come first in the content"
                if block.get("tool_use_id") not in previous_uses:
                    return 400, (
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks:"
                        f" {block.get('tool_use_id')}. Each `tool_result` block must have a corresponding"
                        " `tool_use` block in the previous message."
                    )
            else:
                seen_other = True
            if kind not in _BLOCK_TYPES:
                return 400, f"messages.{i}.content.{j}.type: Input tag '{kind}' does not match any expected tag"
        if previous_uses and message["role"] == "user":
            answered = {b.get("tool_use_id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"}
            missing = previous_uses - answered
            if missing:
                return 400, (
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after:"
                    f" {', '.join(sorted(missing))}. Each `tool_use` block must have a corresponding `tool_result`"
                    " block in the next message."
                )
        previous_uses = uses
    return None


def _valid_image(source: Any) -> bool:
    if not isinstance(source, dict):
        return False
    if source.get("type") == "base64":
        return source.get("media_type") in _IMAGE_TYPES and isinstance(source.get("data"), str)
    if source.get("type") == "url":
        return isinstance(source.get("url"), str) and source["url"].startswith(("http://", "https://"))
    return False


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    texts: list[str] = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            texts.extend(_texts(block.get("content")))
    return texts


def prompt_tokens(body: dict[str, Any]) -> int:
    """The mock's count: words and punctuation of the system and every message, plus 3 each."""
    count = sum(count_tokens(t) for t in _texts(body.get("system")))
    for message in body.get("messages") or []:
        count += 3 + sum(count_tokens(t) for t in _texts(message.get("content")))
    return count + 3


def ask_of(body: dict[str, Any]) -> Ask:
    """What an Anthropic request asks for."""
    messages: list[dict[str, Any]] = body.get("messages") or []
    last: dict[str, Any] = messages[-1] if messages else {}
    last_user: dict[str, Any] = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    tools = tuple(
        (str(t["name"]), next(iter((t.get("input_schema") or {}).get("properties") or {}), "location"))
        for t in body.get("tools") or []
    )
    choice: dict[str, Any] = body.get("tool_choice") or {"type": "auto"}
    kind = {"auto": "auto", "any": "required", "tool": "named", "none": "none"}.get(str(choice.get("type")), "auto")
    after_tool = isinstance(last.get("content"), list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last["content"]
    )
    return Ask(
        # after a tool, the tool's result is what the user "said"
        last_text=" ".join(_texts(last_user.get("content"))),
        tools=tools,
        choice=kind,
        chosen=choice.get("name"),
        max_tokens=body["max_tokens"],
        stop=tuple(body.get("stop_sequences") or ()),
        after_tool=after_tool,
    )


def _usage(prompt: int, cached: int, output: int) -> dict[str, int]:
    return {
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": output,
    }


def _blocks(answer: Answer) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if answer.reasoning:
        blocks.append({"type": "thinking", "thinking": "".join(answer.reasoning), "signature": "c2lnbmF0dXJl"})
    if answer.text:
        blocks.append({"type": "text", "text": answer.text})
    for call in answer.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": orjson.loads(call.arguments)})
    return blocks


def message(message_id: str, model: str, answer: Answer, prompt: int, cached: int = 0) -> bytes:
    """A whole `message` object (a non-streaming answer)."""
    return orjson.dumps(
        {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": _blocks(answer),
            "stop_reason": _STOP_REASONS[answer.finish],
            "stop_sequence": answer.stop_sequence,
            "usage": _usage(prompt, cached, answer.completion_tokens),
        }
    )


def events(message_id: str, model: str, answer: Answer, prompt: int, cached: int = 0) -> list[bytes]:
    """The SSE events of a stream, each framed (`event: …\\ndata: …\\n\\n`), in order."""
    out: list[bytes] = []

    def emit(name: str, data: dict[str, Any]) -> None:
        out.append(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    shell: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(prompt, cached, 1),
    }
    emit("message_start", {"type": "message_start", "message": shell})
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        emit("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
        if index == 0:
            emit("ping", {"type": "ping"})
        for delta in deltas:
            emit("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        emit("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1

    if answer.reasoning:
        thinking = [{"type": "thinking_delta", "thinking": piece} for piece in answer.reasoning]
        block({"type": "thinking", "thinking": ""}, [*thinking, {"type": "signature_delta", "signature": "c2ln"}])
    if answer.text or not answer.tool_calls:
        block({"type": "text", "text": ""}, [{"type": "text_delta", "text": piece} for piece in answer.pieces if piece])
    for call in answer.tool_calls:
        fragments = [{"type": "input_json_delta", "partial_json": ""}]
        fragments += [{"type": "input_json_delta", "partial_json": piece} for piece in call.pieces]
        block({"type": "tool_use", "id": call.id, "name": call.name, "input": {}}, fragments)
    emit(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP_REASONS[answer.finish], "stop_sequence": answer.stop_sequence},
            "usage": {"output_tokens": answer.completion_tokens},
        },
    )
    emit("message_stop", {"type": "message_stop"})
    return out


def error_frame(kind: str, message: str | None = None) -> bytes:
    return b"event: error\ndata: " + error_event(kind, message) + b"\n\n"
