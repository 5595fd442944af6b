"""OpenAI's embeddings API (`POST /embeddings`), for a request that came through the
gateway's `/embeddings` (SPEC.md §9) and a vendor speaking OpenAI's wire format
(OpenAI, Mistral, Together).

The client's body goes upstream as it came, with `model` the candidate's upstream id
and without `encoding_format`, so every provider answers floats (its default):
providers differ in whether they can send base64, so when the client asked for base64
StepBlend encodes the floats itself exactly as OpenAI does (the vector's
little-endian float32 bytes, base64). The answer is OpenAI's `list` of `embedding` objects with `model` the
catalog id; its `usage.prompt_tokens` is what the request is billed for.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from services.providers.adapters.base import (
    Adapter,
    ProviderError,
    RequestRefused,
    StreamTranslator,
    TokenUsage,
    UpstreamFormatError,
    UpstreamRequest,
    decode,
)
from stepblend.v1 import router_pb2

__all__ = ["EMBEDDINGS_DIALECT", "OpenAIEmbeddings", "embedding_list"]

#: The gateway's name for the dialect (ExecuteRequest.native_dialect).
EMBEDDINGS_DIALECT = "openai_embeddings"
PATH = "/embeddings"


class _Embedding(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class _EmbeddingList(msgspec.Struct):
    data: list[_Embedding]
    usage: _Usage | None = None


_ANSWER = msgspec.json.Decoder(_EmbeddingList)


@dataclass(frozen=True)
class OpenAIEmbeddings:
    """The `Adapter` for an embeddings body; `base` is the vendor's chat adapter (its
    auth headers and error bodies are the vendor's, whatever the endpoint);
    `encoding_format` is the client's ("float" or "base64")."""

    base: Adapter
    encoding_format: str = "float"

    def build_request(self, body: dict[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
        if stream:
            raise RequestRefused("embeddings do not stream", "stream")
        out = {k: v for k, v in body.items() if k != "encoding_format" and not k.startswith("stepblend_")}
        out["model"] = candidate.upstream_model
        return UpstreamRequest(PATH, orjson.dumps(out))

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return self.base.auth_headers(api_key)

    def error_details(self, data: bytes) -> ProviderError:
        return self.base.error_details(data)

    def stream_translator(
        self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
    ) -> StreamTranslator:
        raise RequestRefused("embeddings do not stream", "stream")

    def parse_completion(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0
    ) -> tuple[bytes, TokenUsage | None]:
        """The upstream list as OpenAI's, in the client's `encoding_format`, with `model`
        the catalog id; and its usage."""
        parsed = decode(data, _ANSWER)
        usage = None
        if parsed.usage is not None:
            tokens = parsed.usage.prompt_tokens
            usage = TokenUsage(tokens, 0, parsed.usage.total_tokens or tokens)
        vectors = [item.embedding for item in sorted(parsed.data, key=lambda e: e.index)]
        return embedding_list(vectors, model, usage, self.encoding_format), usage


def embedding_list(vectors: list[list[float]], model: str, usage: TokenUsage | None, encoding_format: str) -> bytes:
    """OpenAI's `list` of `embedding` objects, floats or (`base64`) each vector's
    little-endian float32 bytes in base64, as OpenAI sends them."""
    if not vectors:
        raise UpstreamFormatError("an embeddings answer without vectors")
    items = []
    for index, values in enumerate(vectors):
        vector: object = values
        if encoding_format == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        items.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = usage.prompt_tokens if usage else 0
    body = {
        "object": "list",
        "data": items,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": usage.total_tokens if usage else 0},
    }
    return orjson.dumps(body)
