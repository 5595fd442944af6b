"""The OpenAI chat completions dialect (`POST /v1/chat/completions`).

In: the body validated once into `ChatRequest`; the dict sent upstream is the body
without StepBlend's `stepblend_*` fields. Out: providers already speak this
dialect, so a whole answer is providers' `chat.completion` with the `stepblend`
report spliced in, and a stream is providers' chunks framed as SSE, then
StepBlend's final chunk (usage when asked for, `stepblend`) and `[DONE]`. Errors
are OpenAI's `{"error": {...}}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response

from .. import errors
from ..errors import ApiError
from ..schemas import MAX_DEPTH, ChatRequest, nested_deeper_than
from .base import Answer, Parsed

__all__ = ["OpenAIChatCodec", "final_chunk", "load_object", "parse", "validate"]

_KEEPALIVE = b": keep-alive\n\n"
_DONE = b"data: [DONE]\n\n"


def parse(raw: bytes) -> tuple[ChatRequest, dict[str, Any]]:
    """Validate the body once; return the model and the dict to pass upstream."""
    return validate(load_object(raw))


def load_object(raw: bytes) -> dict[str, Any]:
    """An OpenAI-dialect body as a JSON object, or the 400 that says why it is not one."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid(f"We could not parse the JSON body of your request: {exc}.") from exc
    if not isinstance(body, dict):
        raise errors.invalid("The request body must be a JSON object.")
    return body


def validate(body: dict[str, Any]) -> tuple[ChatRequest, dict[str, Any]]:
    """Validate a chat body (from JSON or from the gRPC API)."""
    if nested_deeper_than(body):
        raise errors.invalid(f"The request body is nested more than {MAX_DEPTH} levels deep.")
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise errors.invalid(f"Invalid value for '{param}': {first['msg']}.", param=param) from exc
    upstream = {k: v for k, v in body.items() if not k.startswith("stepblend_")}
    return request, upstream


def final_chunk(answer: Answer, include_usage: bool) -> dict[str, Any]:
    """StepBlend's last chunk of a stream: no choices, the usage when the client asked
    for it, and the `stepblend` routing report."""
    chunk: dict[str, Any] = {
        "id": f"chatcmpl-{answer.request_id}",
        "object": "chat.completion.chunk",
        "created": answer.created,
        "model": answer.routed_model,
        "choices": [],
    }
    if include_usage:
        tokens = answer.tokens
        chunk["usage"] = (
            {
                "prompt_tokens": tokens.prompt_tokens,
                "completion_tokens": tokens.completion_tokens,
                "total_tokens": tokens.total_tokens or tokens.prompt_tokens + tokens.completion_tokens,
            }
            if tokens is not None
            else None
        )
    chunk["stepblend"] = answer.stepblend()
    return chunk


def _sse(*data: bytes) -> bytes:
    """One SSE event per piece of data, as one write."""
    return b"data: " + b"\n\ndata: ".join(data) + b"\n\n"


class ChunkRenderer:
    """Providers' chunks as they are, one `data:` event each."""

    def __init__(self, answer: Answer, include_usage: bool) -> None:
        self._answer = answer
        self._include_usage = include_usage

    def start(self) -> bytes:
        return b""

    def chunks(self, chunks: Sequence[bytes]) -> bytes:
        return _sse(*chunks)

    def end(self) -> bytes:
        return _sse(orjson.dumps(final_chunk(self._answer, self._include_usage))) + _DONE

    def broke(self, error: ApiError) -> bytes:
        # An error event, as in OpenAI's own streams.
        return _sse(orjson.dumps(error.body())) + _DONE

    def keepalive(self) -> bytes:
        return _KEEPALIVE


class OpenAIChatCodec:
    dialect = "openai_chat"

    def parse(self, raw: bytes) -> Parsed:
        request, upstream = parse(raw)
        return Parsed(request, upstream)

    def completion(self, body: bytes, answer: Answer, parsed: Parsed) -> bytes:
        # The completion is a JSON object made by orjson: splice our key in instead
        # of parsing and re-serialising the whole answer.
        body = body.rstrip()
        return body[:-1] + b',"stepblend":' + orjson.dumps(answer.stepblend()) + b"}"

    def stream(self, answer: Answer, parsed: Parsed) -> ChunkRenderer:
        options = parsed.request.stream_options
        return ChunkRenderer(answer, bool(options and options.include_usage))

    def error(self, error: ApiError) -> Response:
        return error.response()
