"""The chat completions body, parsed and validated once at the edge."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from pydantic import ValidationError

from . import errors
from .schemas import MAX_DEPTH, OFFLOAD_BYTES, ChatRequest, nested_deeper_than

__all__ = ["parse", "parse_off_loop", "validate"]


async def parse_off_loop(raw: bytes) -> tuple[ChatRequest, dict[str, Any]]:
    """`parse`, in a worker thread for a body of OFFLOAD_BYTES or more, so that one
    large request does not hold the event loop for every other tenant's."""
    if len(raw) < OFFLOAD_BYTES:
        return parse(raw)
    return await asyncio.to_thread(parse, raw)


def parse(raw: bytes) -> tuple[ChatRequest, dict[str, Any]]:
    """Validate the body once; return the model and the dict to pass upstream."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid(f"We could not parse the JSON body of your request: {exc}.") from exc
    if not isinstance(body, dict):
        raise errors.invalid("The request body must be a JSON object.")
    return validate(body)


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
