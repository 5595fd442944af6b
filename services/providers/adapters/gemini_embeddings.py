"""Gemini's native embeddings API (`POST /{version}/models/{model}:batchEmbedContents`,
the version the vendor's quirks name, v1beta by default),
for an embeddings request (SPEC.md §9) routed to a Gemini embedding row.

Each input is one `EmbedContentRequest` (`content.parts[0].text`); `dimensions`
becomes `outputDimensionality`. Gemini takes text only, so token arrays are refused.
Its answer (`{"embeddings": [{"values": [...]}]}`) carries no token counts: the
usage reported — and billed — is the router's estimate for this row (the gateway's
count through the row's tokenizer margin, which errs high).
(https://ai.google.dev/api/embeddings#method:-models.batchembedcontents)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from services.providers.adapters.base import (
    ProviderError,
    RequestRefused,
    StreamTranslator,
    TokenUsage,
    UpstreamRequest,
    decode,
)
from services.providers.adapters.gemini import Gemini, model_path
from services.providers.adapters.openai_embeddings import embedding_list
from stepblend.v1 import router_pb2

__all__ = ["GeminiEmbeddings"]


class _Embedding(msgspec.Struct):
    values: list[float]


class _Batch(msgspec.Struct):
    embeddings: list[_Embedding]


_ANSWER = msgspec.json.Decoder(_Batch)


@dataclass
class GeminiEmbeddings:
    """The `Adapter` for an embeddings body on Gemini; one per attempt (it keeps the
    candidate's token estimate between the request and the answer)."""

    base: Gemini
    encoding_format: str = "float"
    _estimate: int = field(default=0, init=False)

    def build_request(self, body: dict[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
        if stream:
            raise RequestRefused("embeddings do not stream", "stream")
        given = body.get("input")
        inputs = [given] if isinstance(given, str) else given
        if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
            raise RequestRefused("Gemini embeds text only: send strings, not token arrays", "input")
        name = f"models/{candidate.upstream_model}"
        requests: list[dict[str, Any]] = []
        for text in inputs:
            one: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
            if isinstance(body.get("dimensions"), int):
                one["outputDimensionality"] = body["dimensions"]
            requests.append(one)
        self._estimate = candidate.prompt_tokens
        path = model_path(candidate.upstream_model, "batchEmbedContents", self.base.quirks.version)
        return UpstreamRequest(path, orjson.dumps({"requests": requests}))

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
        """Gemini's vectors as OpenAI's list, with the row's token estimate as usage."""
        vectors = [item.values for item in decode(data, _ANSWER).embeddings]
        usage = TokenUsage(self._estimate, 0, self._estimate)
        return embedding_list(vectors, model, usage, self.encoding_format), usage
