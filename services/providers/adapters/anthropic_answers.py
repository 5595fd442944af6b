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

Every answer and event is decoded straight into the typed models of
`wire_anthropic`; nothing of Anthropic's is forwarded, so no dict is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.providers.adapters.base import (
    TokenUsage,
    UpstreamFormatError,
    UpstreamStreamError,
    decode,
    openai_chunk,
)
from services.providers.adapters.sse import SseEvent
from services.providers.adapters.wire_anthropic import (
    MESSAGE,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ErrorDetail,
    ErrorEvent,
    MessageDeltaEvent,
    MessageStartEvent,
    MessageStopEvent,
    Usage,
    stream_event,
)

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


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop")


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
    answer = decode(data, MESSAGE)
    if answer.type != "message" or answer.content is None:
        raise UpstreamFormatError("the provider's answer is not a message")
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in answer.content:
        if block.type == "text" and block.text is not None:
            texts.append(block.text)
        elif block.type == "thinking" and block.thinking is not None:
            reasoning.append(block.thinking)
        elif block.type == "tool_use":
            arguments = orjson.dumps(block.input or {}).decode()
            calls.append({"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    usage = None if answer.usage is None else answer.usage.tokens()
    completion: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(answer.stop_reason)}
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
        # The last value of each count given (message_delta repeats them cumulatively).
        self._counts: dict[str, int] = {}
        self._started = False
        # Anthropic content index → OpenAI tool-call index (tool_use blocks only).
        self._tool_index: dict[int, int] = {}
        self._finished = False
        self._ended = False

    @property
    def usage(self) -> TokenUsage | None:
        return Usage(**self._counts).tokens() if self._counts else None

    @property
    def complete(self) -> bool:
        return self._finished

    @property
    def ended(self) -> bool:
        return self._ended

    def feed(self, event: SseEvent) -> list[bytes]:
        match stream_event(event.data, event.event):
            case ContentBlockDeltaEvent() as delta:
                return self._delta(delta)
            case ContentBlockStartEvent() as start:
                return self._block_start(start)
            case MessageStartEvent(message=message):
                self._count(None if message is None else message.usage)
                return []
            case MessageDeltaEvent(delta=delta, usage=usage):
                self._count(usage)
                stop_reason = None if delta is None else delta.stop_reason
                return self._finish(stop_reason) if stop_reason else []
            case MessageStopEvent():
                self._ended = True
                return self._finish("end_turn")
            case ErrorEvent(error=error):
                said = error or ErrorDetail()
                raise UpstreamStreamError(said.message or "the provider reported an error mid-stream", said.type or "")
        # ping, content_block_stop, and event types added after this was written
        return []

    def _block_start(self, event: ContentBlockStartEvent) -> list[bytes]:
        block, index = event.content_block, event.index
        if block is None or index is None:
            raise UpstreamFormatError("content_block_start without a block or index")
        if block.type == "text":
            text = block.text or ""
            if self._started and not text:
                return []
            return [self._chunk({"content": text})]
        if block.type == "tool_use":
            position = len(self._tool_index)
            self._tool_index[index] = position
            call = {
                "index": position,
                "id": block.id,
                "type": "function",
                "function": {"name": block.name, "arguments": ""},
            }
            return [
                self._chunk({"content": None, "tool_calls": [call]} if not self._started else {"tool_calls": [call]})
            ]
        return []

    def _delta(self, event: ContentBlockDeltaEvent) -> list[bytes]:
        delta = event.delta
        if delta is None:
            raise UpstreamFormatError("content_block_delta without a delta")
        if delta.type == "text_delta" and delta.text is not None:
            return [self._chunk({"content": delta.text})]
        if delta.type == "input_json_delta":
            position = None if event.index is None else self._tool_index.get(event.index)
            if position is None or not delta.partial_json:
                return []
            return [self._chunk({"tool_calls": [{"index": position, "function": {"arguments": delta.partial_json}}]})]
        if delta.type == "thinking_delta" and delta.thinking is not None:
            return [self._chunk({"reasoning_content": delta.thinking})]
        # signature_delta, citations_delta…: nothing OpenAI's chunk has a place for
        return []

    def _finish(self, stop_reason: str | None) -> list[bytes]:
        if self._finished:
            return []
        self._finished = True
        return [self._chunk({}, finish_reason(stop_reason))]

    def _count(self, usage: Usage | None) -> None:
        # message_delta repeats counts cumulatively (newer API versions repeat the
        # input counts too): the last value of each is the total.
        if usage is not None:
            self._counts.update(usage.given())

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._started:
            # OpenAI's first chunk names the role.
            delta = {"role": "assistant", **delta}
            self._started = True
        return openai_chunk(self._id, self._created, self._model, delta, finish, self._include_usage)
