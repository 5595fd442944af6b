"""Anthropic Messages API answers → OpenAI: a `message` object → `chat.completion`,
and a stream of events → `chat.completion.chunk`s.

The stream, as Anthropic documents it:

    message_start                 the message shell; usage.input_tokens (+ cache counts)
    content_block_start  (i)      a text, tool_use or thinking block at content index i
    ping                          (any time)
    content_block_delta  (i)      text_delta | input_json_delta | thinking_delta | …
    content_block_stop   (i)
    …                             more blocks
    message_delta                 stop_reason; usage.output_tokens (cumulative)
    message_stop
    error                         (any time) {"type": "error", "error": {type, message}}

Mapping: the first block's start sends OpenAI's first chunk (`role: assistant`);
text deltas become `content`; a `tool_use` block becomes one OpenAI tool call whose
`index` counts tool calls only — a text block before it takes Anthropic content
index 0, yet the call is OpenAI index 0 (the bug LiteLLM #5231 had) — and its
`input_json_delta` fragments become that call's `arguments` deltas; thinking
becomes `reasoning_content` (as DeepSeek names it); `message_delta` sends the
finish chunk. Unknown events and block types are skipped, as Anthropic asks of
clients (it adds new ones).

Usage: Anthropic's `input_tokens` excludes prompt-cache reads and writes, so
`prompt_tokens` = input + cache creation + cache read, and cache reads are the
cached tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.providers.adapters.base import (
    TokenUsage,
    UpstreamFormatError,
    UpstreamStreamError,
    count,
    load_object,
)
from services.providers.adapters.sse import SseEvent

#: Anthropic `stop_reason` → OpenAI `finish_reason`.
FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def usage_of(raw: Any) -> TokenUsage | None:
    """TokenUsage (OpenAI's counting) from an Anthropic `usage` object."""
    if not isinstance(raw, dict):
        return None
    cached = count(raw.get("cache_read_input_tokens"))
    prompt = count(raw.get("input_tokens")) + count(raw.get("cache_creation_input_tokens")) + cached
    completion = count(raw.get("output_tokens"))
    return TokenUsage(prompt, completion, prompt + completion, cached)


def openai_usage(usage: TokenUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
    }


def parse_completion(
    data: bytes, completion_id: str, model: str, *, created: int = 0
) -> tuple[bytes, TokenUsage | None]:
    """An Anthropic `message` as an OpenAI `chat.completion`, and its usage."""
    obj = load_object(data)
    blocks = obj.get("content")
    if obj.get("type") != "message" or not isinstance(blocks, list):
        raise UpstreamFormatError("the provider's answer is not a message")
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            reasoning.append(block["thinking"])
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") if isinstance(block.get("input"), dict) else {}).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    usage = usage_of(obj.get("usage"))
    completion: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(obj.get("stop_reason"))}
        ],
    }
    if usage is not None:
        completion["usage"] = openai_usage(usage)
    return orjson.dumps(completion), usage


class EventTranslator:
    """The `StreamTranslator` for Anthropic streams (see the module docstring)."""

    def __init__(self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False) -> None:
        self._id = completion_id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._counts: dict[str, int] = {}
        self._started = False
        # Anthropic content index → OpenAI tool-call index (tool_use blocks only).
        self._tool_index: dict[int, int] = {}
        self._finished = False
        self._ended = False

    @property
    def usage(self) -> TokenUsage | None:
        return usage_of(self._counts) if self._counts else None

    @property
    def complete(self) -> bool:
        return self._finished

    @property
    def ended(self) -> bool:
        return self._ended

    def feed(self, event: SseEvent) -> list[bytes]:
        obj = load_object(event.data)
        kind = obj.get("type") or event.event
        if kind == "message_start":
            message = obj.get("message")
            self._count(message.get("usage") if isinstance(message, dict) else None)
            return []
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "content_block_delta":
            return self._delta(obj)
        if kind == "message_delta":
            self._count(obj.get("usage"))
            delta = obj.get("delta")
            stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            return self._finish(stop_reason) if stop_reason else []
        if kind == "message_stop":
            self._ended = True
            return self._finish("end_turn")
        if kind == "error":
            error = obj.get("error")
            error = error if isinstance(error, dict) else {}
            message = error.get("message")
            raise UpstreamStreamError(
                message if isinstance(message, str) and message else "the provider reported an error mid-stream",
                str(error.get("type") or ""),
            )
        # ping, content_block_stop, and event types added after this was written
        return []

    def _block_start(self, obj: dict[str, Any]) -> list[bytes]:
        block = obj.get("content_block")
        index = obj.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            raise UpstreamFormatError("content_block_start without a block or index")
        kind = block.get("type")
        if kind == "text":
            text = block.get("text") if isinstance(block.get("text"), str) else ""
            if self._started and not text:
                return []
            return [self._chunk({"content": text})]
        if kind == "tool_use":
            position = len(self._tool_index)
            self._tool_index[index] = position
            call = {
                "index": position,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [
                self._chunk({"content": None, "tool_calls": [call]} if not self._started else {"tool_calls": [call]})
            ]
        return []

    def _delta(self, obj: dict[str, Any]) -> list[bytes]:
        delta = obj.get("delta")
        if not isinstance(delta, dict):
            raise UpstreamFormatError("content_block_delta without a delta")
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            return [self._chunk({"content": delta["text"]})]
        if kind == "input_json_delta":
            index = obj.get("index")
            position = self._tool_index.get(index) if isinstance(index, int) else None
            fragment = delta.get("partial_json")
            if position is None or not isinstance(fragment, str) or not fragment:
                return []
            return [self._chunk({"tool_calls": [{"index": position, "function": {"arguments": fragment}}]})]
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        # signature_delta, citations_delta…: nothing OpenAI's chunk has a place for
        return []

    def _finish(self, stop_reason: Any) -> list[bytes]:
        if self._finished:
            return []
        self._finished = True
        return [self._chunk({}, finish_reason(stop_reason))]

    def _count(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        for name in _USAGE_FIELDS:
            # message_delta repeats counts cumulatively (newer API versions repeat
            # the input counts too): the last value of each is the total.
            if name in raw and raw[name] is not None:
                self._counts[name] = count(raw[name])

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._started:
            # OpenAI's first chunk names the role.
            delta = {"role": "assistant", **delta}
            self._started = True
        obj: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            obj["usage"] = None
        return orjson.dumps(obj)
