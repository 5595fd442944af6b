"""OpenAI chat.completion.chunk objects → Anthropic's streaming event sequence.

`message_start`, then per content block `content_block_start` / `content_block_delta`
(`text_delta`, or `input_json_delta` for a tool call's arguments; each tool call its own
block, indexes increasing) / `content_block_stop`, then `message_delta` (stop_reason,
usage) and `message_stop` carrying `stepblend`. Framed `event: NAME\\ndata: JSON\\n\\n`.

A stream that an Anthropic model served natively arrives as Anthropic's own SSE
frames (they start `event: `, where a translated chunk is a JSON object): they go out
as they came, but for the provider's `message_stop`, which the renderer sends itself
at the end, with `stepblend` (the usage, and so the cost, is known only then).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from services.gateway.codecs.base import Answer, Parsed
from services.gateway.errors import ApiError

__all__ = ["AnthropicStream", "error_type", "event", "message_id", "stop_reason"]

#: How a natively served stream's frames begin (a translated chunk is a JSON object).
NATIVE_FRAME = b"event: "
_NATIVE_STOP = b"event: message_stop\n"
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def message_id(request_id: str) -> str:
    return "msg_" + request_id.removeprefix("chatcmpl-").removeprefix("req_")


def stop_reason(finish_reason: str | None) -> str | None:
    if finish_reason is None:
        return None
    return _STOP.get(finish_reason, "end_turn")


def error_type(status: int) -> str:
    if status in (503, 529):
        return "overloaded_error"
    return {
        401: "authentication_error",
        402: "billing_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
    }.get(status, "invalid_request_error" if status < 500 else "api_error")


class AnthropicStream:
    """One streamed answer's renderer; keeps the open block and the stop reason."""

    def __init__(self, answer: Answer, parsed: Parsed) -> None:
        self._answer = answer
        self._parsed = parsed
        self._index = -1
        self._open: str | int | None = None  # "text", or the OpenAI index of the open tool call
        self._finish: str | None = None
        self._output_tokens = 0
        # Whether the answer comes as Anthropic's own frames; known at the first chunk.
        self._native: bool | None = None

    def start(self) -> bytes:
        # The opening depends on the first chunk (a native stream brings its own).
        return b""

    def _message_start(self) -> bytes:
        tokens = self._answer.tokens
        message: dict[str, Any] = {
            "id": message_id(self._answer.request_id),
            "type": "message",
            "role": "assistant",
            "model": self._answer.routed_model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": tokens.prompt_tokens if tokens else 0, "output_tokens": 0},
        }
        return event("message_start", {"type": "message_start", "message": message})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return event("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def _begin(self, key: str | int, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._index += 1
        self._open = key
        return out + event(
            "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
        )

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event("content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta})

    def _choice(self, choice: dict[str, Any]) -> bytes:
        out = b""
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if text:
            if self._open != "text":
                out += self._begin("text", {"type": "text", "text": ""})
            out += self._delta({"type": "text_delta", "text": text})
        for call in delta.get("tool_calls") or []:
            key = int(call.get("index", 0))
            function = call.get("function") or {}
            if self._open != key:
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": call.get("id") or "",
                    "name": function.get("name") or "",
                    "input": {},
                }
                out += self._begin(key, block)
            if function.get("arguments"):
                out += self._delta({"type": "input_json_delta", "partial_json": function["arguments"]})
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
        return out

    def chunks(self, chunks: Sequence[bytes]) -> bytes:
        out = b""
        if self._native is None and chunks:
            self._native = chunks[0].startswith(NATIVE_FRAME)
            if not self._native:
                out = self._message_start()
        if self._native:
            return out + b"".join(raw for raw in chunks if not raw.startswith(_NATIVE_STOP))
        for raw in chunks:
            chunk = orjson.loads(raw)
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) == 0:
                    out += self._choice(choice)
            usage = chunk.get("usage")
            if usage:
                self._output_tokens = int(usage.get("completion_tokens") or 0)
        return out

    def end(self) -> bytes:
        if self._native:
            return event("message_stop", {"type": "message_stop", "stepblend": self._answer.stepblend()})
        tokens = self._answer.tokens
        output = tokens.completion_tokens if tokens else self._output_tokens
        usage: dict[str, Any] = {"output_tokens": output}
        if tokens:
            usage["input_tokens"] = tokens.prompt_tokens
        delta = {"stop_reason": stop_reason(self._finish) or "end_turn", "stop_sequence": None}
        return (
            self._close()
            + event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
            + event("message_stop", {"type": "message_stop", "stepblend": self._answer.stepblend()})
        )

    def broke(self, error: ApiError) -> bytes:
        body = {"type": "error", "error": {"type": error_type(error.status), "message": error.message}}
        return self._close() + event("error", body)

    def keepalive(self) -> bytes:
        return event("ping", {"type": "ping"})
