"""Bedrock answers → OpenAI: a `ConverseResponse` → `chat.completion`, and a
ConverseStream (AWS event-stream messages, decoded by `eventstream`) →
`chat.completion.chunk`s.

Content blocks, in order: `text` becomes `content`; `reasoningContent` becomes
`reasoning_content` (as DeepSeek names it); each `toolUse` becomes one OpenAI tool
call {id: toolUseId, name, arguments: the input as JSON}. Streamed, a tool use opens
with `contentBlockStart` (its id and name: the call's first chunk) and its input
arrives as JSON text in `contentBlockDelta`s (argument chunks); tool calls are
indexed 0, 1… in the order they start, whatever their `contentBlockIndex`.

A JSON answer (response_format, asked for as the forced tool `stepblend_json_response`,
see bedrock.py) is that tool's input: the answer's `content`, streamed as content
deltas, and its `tool_use` stop is OpenAI's `stop`.

stopReason → finish_reason: end_turn, stop_sequence → stop; max_tokens → length;
tool_use → tool_calls; guardrail_intervened, content_filtered → content_filter;
anything else → stop. The stream's finish chunk goes with `messageStop`; its usage
comes after, in `metadata`, the stream's last event.

Usage: prompt = inputTokens + cacheReadInputTokens + cacheWriteInputTokens (Bedrock
leaves cached tokens out of inputTokens; OpenAI counts them in), completion =
outputTokens, cached = cacheReadInputTokens.

An exception in a stream (`:message-type exception`, e.g. throttlingException,
modelStreamErrorException) is an `UpstreamStreamError` of that type;
throttlingException is reported as a `rate_limit_error`, the executor's word for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.providers.adapters.base import (
    SseEvent,
    TokenUsage,
    UpstreamFormatError,
    UpstreamStreamError,
    decode,
    openai_chunk,
)
from services.providers.adapters.eventstream import EXCEPTION
from services.providers.adapters.wire_bedrock import (
    BLOCK_DELTA,
    BLOCK_START,
    ERROR,
    JSON_TOOL,
    MESSAGE_STOP,
    METADATA,
    RESPONSE,
)

_FINISH: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
#: Bedrock's stream exception types in the executor's vocabulary where it has a word for them.
_STREAM_ERROR_KINDS: Mapping[str, str] = {"throttlingException": "rate_limit_error"}


def finish_reason(stop_reason: str, called: bool = True) -> str:
    """Bedrock's stopReason as OpenAI's; `called`: whether the answer called a tool of
    the client's (a tool_use stop after the JSON tool alone is a whole answer)."""
    if stop_reason == "tool_use" and not called:
        return "stop"
    return _FINISH.get(stop_reason, "stop")


def openai_usage(usage: TokenUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
    }


def stream_error(kind: str, payload: bytes) -> UpstreamStreamError:
    said = decode(payload, ERROR)
    message = said.message or said.Message or "the provider reported an error mid-stream"
    return UpstreamStreamError(message, _STREAM_ERROR_KINDS.get(kind, kind))


def parse_completion(
    data: bytes, completion_id: str, model: str, *, created: int = 0
) -> tuple[bytes, TokenUsage | None]:
    """A `ConverseResponse` as an OpenAI `chat.completion`, and its usage."""
    answer = decode(data, RESPONSE)
    if answer.output is None or answer.output.message is None:
        raise UpstreamFormatError("the provider's answer has no output message")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in answer.output.message.content:
        if block.tool_use is not None:
            use = block.tool_use
            arguments = orjson.dumps(use.input if use.input is not None else {}).decode()
            if use.name == JSON_TOOL:
                texts.append(arguments)
                continue
            calls.append(
                {"id": use.tool_use_id, "type": "function", "function": {"name": use.name, "arguments": arguments}}
            )
        elif block.text is not None:
            texts.append(block.text)
        elif block.reasoning_content is not None and block.reasoning_content.reasoning_text is not None:
            thoughts.append(block.reasoning_content.reasoning_text.text)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    usage = None if answer.usage is None else answer.usage.tokens()
    completion: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(answer.stop_reason, bool(calls)),
            }
        ],
    }
    if usage is not None:
        completion["usage"] = openai_usage(usage)
    return orjson.dumps(completion), usage


class ChunkTranslator:
    """The `StreamTranslator` for ConverseStream (see the module docstring)."""

    def __init__(self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False) -> None:
        self._id = completion_id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._usage: TokenUsage | None = None
        self._started = False
        # contentBlockIndex of each tool use → its OpenAI tool-call index
        self._calls: dict[int, int] = {}
        # contentBlockIndex of the JSON tool's use (a JSON answer), if any
        self._json_block: int | None = None
        self._finished = False
        self._ended = False

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    @property
    def complete(self) -> bool:
        return self._finished

    @property
    def ended(self) -> bool:
        return self._ended

    def feed(self, event: SseEvent) -> list[bytes]:
        kind = event.event
        if kind.startswith(EXCEPTION):
            raise stream_error(kind.removeprefix(EXCEPTION), event.data)
        if kind == "contentBlockDelta":
            return self._delta(event.data)
        if kind == "contentBlockStart":
            start = decode(event.data, BLOCK_START)
            use = start.start.tool_use if start.start is not None else None
            if use is None or self._finished:
                return []
            if use.name == JSON_TOOL:
                self._json_block = start.content_block_index
                return []
            index = self._calls.setdefault(start.content_block_index, len(self._calls))
            call = {
                "index": index,
                "id": use.tool_use_id,
                "type": "function",
                "function": {"name": use.name, "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]} if self._started else {"content": None, "tool_calls": [call]})]
        if kind == "messageStop":
            stop = decode(event.data, MESSAGE_STOP)
            if self._finished:
                return []
            self._finished = True
            finish = finish_reason(stop.stop_reason, bool(self._calls))
            return [self._chunk({} if self._started else {"content": ""}, finish)]
        if kind == "metadata":
            metadata = decode(event.data, METADATA)
            if metadata.usage is not None:
                self._usage = metadata.usage.tokens()
            self._ended = True
        # messageStart, contentBlockStop and kinds added since carry nothing to forward.
        return []

    def _delta(self, data: bytes) -> list[bytes]:
        block = decode(data, BLOCK_DELTA)
        delta = block.delta
        if delta is None or self._finished:
            return []
        if delta.tool_use is not None and block.content_block_index == self._json_block:
            return [self._chunk({"content": delta.tool_use.input})] if delta.tool_use.input else []
        if delta.tool_use is not None:
            index = self._calls.get(block.content_block_index)
            if index is None:
                raise UpstreamFormatError("a tool use's input came before its contentBlockStart")
            if not delta.tool_use.input:
                return []
            return [self._chunk({"tool_calls": [{"index": index, "function": {"arguments": delta.tool_use.input}}]})]
        if delta.text:
            return [self._chunk({"content": delta.text})]
        if delta.reasoning_content is not None and delta.reasoning_content.text:
            return [self._chunk({"reasoning_content": delta.reasoning_content.text})]
        return []

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._started:
            # OpenAI's first chunk names the role.
            delta = {"role": "assistant", **delta}
            self._started = True
        return openai_chunk(self._id, self._created, self._model, delta, finish, self._include_usage)
