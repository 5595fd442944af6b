"""Gemini answers → OpenAI: a `GenerateContentResponse` → `chat.completion`, and a
stream of them (`streamGenerateContent?alt=sse`, one whole response per SSE event,
no end event) → `chat.completion.chunk`s.

Parts of the first candidate, in order: `text` becomes `content`; a thought
summary (`thought: true`) becomes `reasoning_content` (as DeepSeek names it); each
`functionCall` becomes one OpenAI tool call, whole (Gemini streams a call in one
piece), with Gemini's `id` when it gives one and `call_<completion>_<n>` otherwise;
a `thoughtSignature` on it travels as `extra_content.google.thought_signature`, to
come back with the call in the next request (gemini_contents).

Finish reasons: STOP → stop, or tool_calls when the answer called a function (Gemini
says STOP for those too); MAX_TOKENS → length; SAFETY, RECITATION, LANGUAGE, BLOCKLIST,
PROHIBITED_CONTENT, SPII and the IMAGE_* ones → content_filter, as is a prompt
blocked outright (`promptFeedback.blockReason`, no candidate); anything else
(MALFORMED_FUNCTION_CALL, OTHER, reasons added since) → stop. A stream may give a
finish reason on every chunk, not only the last (the gemini-pro stream recorded in
Google's cookbook says STOP on each): a finish does not end the answer. The finish
chunk is held back until the stream ends (`close`), with the last reason given, so
a client sees one finish, after all of the text.

Usage (`usageMetadata`, repeated by every chunk, the last one final): prompt =
promptTokenCount (cached tokens included) + toolUsePromptTokenCount; completion =
candidatesTokenCount + thoughtsTokenCount, as Google bills thinking as output;
cached = cachedContentTokenCount.

An error in a stream comes as an event `{"error": {code, message, status}}`;
RESOURCE_EXHAUSTED is reported as a `rate_limit_error`, the executor's word for it.
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
from services.providers.adapters.wire_gemini import (
    RESPONSE,
    ErrorDetail,
    FunctionCall,
    GenerateContentResponse,
    Part,
)

_FILTERED = frozenset(
    {
        "SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
    }
)  # fmt: skip
#: Gemini error statuses in the executor's vocabulary where it has a word for them.
_STREAM_ERROR_KINDS: Mapping[str, str] = {"RESOURCE_EXHAUSTED": "rate_limit_error"}


def finish_reason(reason: str | None, called: bool) -> str:
    """Gemini's `finishReason` as OpenAI's, given whether the answer called a function."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if called else "stop"


def openai_usage(usage: TokenUsage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_prompt_tokens},
    }


def _call_id(completion_id: str, position: int) -> str:
    return f"call_{completion_id.removeprefix('chatcmpl-')}_{position}"


def _tool_call(call: FunctionCall, signature: str | None, completion_id: str, position: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id or _call_id(completion_id, position),
        "type": "function",
        "function": {"name": call.name, "arguments": orjson.dumps(call.args or {}).decode()},
    }
    if signature:
        out["extra_content"] = {"google": {"thought_signature": signature}}
    return out


def _parts(answer: GenerateContentResponse) -> list[Part]:
    candidate = answer.candidates[0] if answer.candidates else None
    if candidate is None or candidate.content is None:
        return []
    return candidate.content.parts or []


def _stream_error(error: ErrorDetail) -> UpstreamStreamError:
    status = error.status or ""
    return UpstreamStreamError(
        error.message or "the provider reported an error mid-stream", _STREAM_ERROR_KINDS.get(status, status)
    )


def parse_completion(
    data: bytes, completion_id: str, model: str, *, created: int = 0
) -> tuple[bytes, TokenUsage | None]:
    """A `GenerateContentResponse` as an OpenAI `chat.completion`, and its usage."""
    answer = decode(data, RESPONSE)
    if answer.error is not None:
        raise _stream_error(answer.error)
    blocked = answer.prompt_feedback is not None and bool(answer.prompt_feedback.block_reason)
    if not answer.candidates and not blocked:
        raise UpstreamFormatError("the provider's answer has no candidate")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in _parts(answer):
        if part.function_call is not None:
            calls.append(_tool_call(part.function_call, part.thought_signature, completion_id, len(calls)))
        elif part.text is not None:
            (thoughts if part.thought else texts).append(part.text)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    first = answer.candidates[0] if answer.candidates else None
    reason = "content_filter" if blocked or first is None else finish_reason(first.finish_reason, bool(calls))
    usage = None if answer.usage_metadata is None else answer.usage_metadata.tokens()
    completion: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reason}],
    }
    if usage is not None:
        completion["usage"] = openai_usage(usage)
    return orjson.dumps(completion), usage


class ChunkTranslator:
    """The `StreamTranslator` for Gemini streams (see the module docstring)."""

    def __init__(self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False) -> None:
        self._id = completion_id
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._usage: TokenUsage | None = None
        self._started = False
        self._calls = 0
        self._reason: str | None = None

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    @property
    def complete(self) -> bool:
        return self._reason is not None

    @property
    def ended(self) -> bool:
        # Gemini's stream has no end event: it ends when the connection does.
        return False

    def feed(self, event: SseEvent) -> list[bytes]:
        answer = decode(event.data, RESPONSE)
        if answer.error is not None:
            raise _stream_error(answer.error)
        if answer.usage_metadata is not None:
            self._usage = answer.usage_metadata.tokens()
        out: list[bytes] = []
        for part in _parts(answer):
            if part.function_call is not None:
                call = {
                    "index": self._calls,
                    **_tool_call(part.function_call, part.thought_signature, self._id, self._calls),
                }
                self._calls += 1
                out.append(
                    self._chunk({"tool_calls": [call]} if self._started else {"content": None, "tool_calls": [call]})
                )
            elif part.text:
                out.append(self._chunk({"reasoning_content" if part.thought else "content": part.text}))
        reason = None
        if answer.prompt_feedback is not None and answer.prompt_feedback.block_reason:
            reason = "content_filter"
        elif answer.candidates and answer.candidates[0].finish_reason:
            reason = finish_reason(answer.candidates[0].finish_reason, self._calls > 0)
        if reason is not None:
            self._reason = reason
        return out

    def close(self) -> list[bytes]:
        """The finish chunk, once the stream has ended (`HoldsBack`)."""
        if self._reason is None:
            return []
        return [self._chunk({} if self._started else {"content": ""}, self._reason)]

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._started:
            # OpenAI's first chunk names the role.
            delta = {"role": "assistant", **delta}
            self._started = True
        return openai_chunk(self._id, self._created, self._model, delta, finish, self._include_usage)
