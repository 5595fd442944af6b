"""The mock's OpenAI embeddings API: `POST {prefix}/embeddings`, and each
OpenAI-compatible vendor's at `POST /<vendor>/v1/embeddings` (Mistral, Together).

Deterministic: an input's vector comes from the SHA-256 of its text (or token ids),
unit length, as long as the model's default (`DIMENSIONS`) or the request's
`dimensions`. `usage.prompt_tokens` is the inputs' words (a token array's length).
Only floats are sent, as the providers' default; the answer is OpenAI's `list` of
`embedding` objects (https://platform.openai.com/docs/api-reference/embeddings).
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any

import orjson

import stepblend.mockprovider.wire as wire

__all__ = ["DIMENSIONS", "answer", "gemini_answer"]

DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "mistral-embed": 1024,
    "BAAI/bge-base-en-v1.5": 768,
    "gemini-embedding-001": 3072,
}
_DEFAULT_DIMENSIONS = 8


def answer(body: Any) -> tuple[int, bytes]:
    """The status and body answering an embeddings request body."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return 400, wire.error(400, "you must provide a model parameter", param="model")
    inputs = _inputs(body.get("input"))
    if inputs is None:
        return 400, wire.error(400, "'input' must be a string, an array of strings or of token arrays", param="input")
    model = body["model"]
    dimensions = body.get("dimensions") or DIMENSIONS.get(model, _DEFAULT_DIMENSIONS)
    if not isinstance(dimensions, int) or dimensions <= 0:
        return 400, wire.error(400, "'dimensions' must be a positive integer", param="dimensions")
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(text, dimensions)} for i, text in enumerate(inputs)
    ]
    tokens = sum(_tokens(item) for item in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return 200, orjson.dumps({"object": "list", "data": data, "model": model, "usage": usage})


def gemini_answer(body: Any) -> tuple[int, bytes]:
    """Gemini's `batchEmbedContents`: `{"embeddings": [{"values"}]}`, one per request,
    without token counts (https://ai.google.dev/api/embeddings)."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return 400, _gemini_error("* BatchEmbedContentsRequest.requests: must not be empty")
    vectors = []
    for i, request in enumerate(requests):
        parts = (request.get("content") or {}).get("parts") if isinstance(request, dict) else None
        if not isinstance(parts, list) or not parts or not isinstance(parts[0].get("text"), str):
            return 400, _gemini_error(f"* BatchEmbedContentsRequest.requests[{i}].content: parts are required")
        model = str(request.get("model", "")).removeprefix("models/")
        size = request.get("outputDimensionality") or DIMENSIONS.get(model, _DEFAULT_DIMENSIONS)
        vectors.append({"values": _vector(parts[0]["text"], size)})
    return 200, orjson.dumps({"embeddings": vectors})


def _gemini_error(message: str) -> bytes:
    return orjson.dumps({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}})


def _inputs(value: object) -> list[str | list[int]] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [list(value)]
    if isinstance(value, list) and value and all(isinstance(v, (str, list)) for v in value):
        return list(value)
    return None


def _tokens(item: str | list[int]) -> int:
    return len(item) if isinstance(item, list) else max(1, len(item.split()))


def _vector(item: str | list[int], dimensions: int) -> list[float]:
    seed = hashlib.sha256(orjson.dumps(item)).digest()
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        chunk = hashlib.sha256(seed + block.to_bytes(4, "big")).digest()
        values.extend(v / 2**31 - 1.0 for v in struct.unpack(">8I", chunk))
        block += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
