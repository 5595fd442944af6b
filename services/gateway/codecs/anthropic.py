"""The Anthropic Messages API front door (SPEC.md §8) as a `Codec`.

Parsing lives in `anthropic_parse` (its docstring lists what is translated for
non-Anthropic models and what is refused), streaming in `anthropic_stream`; this
module renders a whole answer and errors.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from services.gateway.codecs.anthropic_parse import parse
from services.gateway.codecs.anthropic_stream import AnthropicStream, error_type, message_id, stop_reason
from services.gateway.codecs.base import Answer, Parsed
from services.gateway.errors import ApiError

__all__ = ["AnthropicCodec", "anthropic_error"]


def _input(arguments: str) -> Any:
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {}


class AnthropicCodec:
    dialect = "anthropic_messages"

    def parse(self, raw: bytes) -> Parsed:
        return parse(raw)

    def parse_count(self, raw: bytes) -> Parsed:
        """A `count_tokens` body: a Messages body without `max_tokens`."""
        return parse(raw, counting=True)

    def completion(self, body: bytes, answer: Answer, parsed: Parsed) -> bytes:
        completion = orjson.loads(body)
        if completion.get("type") == "message":
            # Served natively: Anthropic's own message, as it came, with the report.
            completion["stepblend"] = answer.stepblend()
            return orjson.dumps(completion)
        choice = (completion.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        content: list[dict[str, Any]] = []
        if message.get("content"):
            content.append({"type": "text", "text": message["content"]})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": _input(function.get("arguments", "")),
                }
            )
        usage = completion.get("usage") or {}
        tokens = answer.tokens
        result = {
            "id": message_id(answer.request_id),
            "type": "message",
            "role": "assistant",
            "model": answer.routed_model,
            "content": content,
            "stop_reason": stop_reason(choice.get("finish_reason")) or "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": tokens.prompt_tokens if tokens else int(usage.get("prompt_tokens") or 0),
                "output_tokens": tokens.completion_tokens if tokens else int(usage.get("completion_tokens") or 0),
            },
            "stepblend": answer.stepblend(),
        }
        return orjson.dumps(result)

    def stream(self, answer: Answer, parsed: Parsed) -> AnthropicStream:
        return AnthropicStream(answer, parsed)

    def error(self, error: ApiError) -> Response:
        return anthropic_error(error)


def anthropic_error(error: ApiError) -> Response:
    """`{"type": "error", "error": {"type", "message"}}` with the error's status and its
    retry headers (`x-should-retry`, `retry-after`), which the anthropic SDKs obey too."""
    body = {"type": "error", "error": {"type": error_type(error.status), "message": error.message}}
    headers = {k: v for k, v in error.response().headers.items() if k in ("x-should-retry", "retry-after")}
    return Response(orjson.dumps(body), error.status, headers, media_type="application/json")
