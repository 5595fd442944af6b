"""OpenAI's embeddings API (`POST /v1/embeddings`, SPEC.md §9) as a front door.

In: the body validated into `EmbeddingsRequest`; it goes to providers whole, as the
native body of dialect `openai_embeddings` (providers' embeddings adapter speaks
OpenAI's embeddings API to each vendor). The pipeline's internal request carries
only the model (an embedding request has no messages), and the codec counts the
inputs' tokens itself: the total (what the request is priced at), the longest input
(each model has a per-input limit) and how many. Out: providers' OpenAI `list` of
embeddings with the `stepblend` report spliced in. It never streams. Errors are
OpenAI's.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import Response

from stepblend.v1 import router_pb2

from .. import errors
from ..errors import ApiError
from ..features import Encoding, count_tokens
from ..schemas import ChatRequest
from .base import Answer, Parsed, StreamRenderer
from .openai_chat import load_object

__all__ = ["EmbeddingsCodec", "EmbeddingsRequest"]

#: The vendors serving the catalog's embedding rows: OpenAI's embeddings API (OpenAI,
#: Mistral, Together) or Gemini's batchEmbedContents; providers' adapters speak to them.
EMBEDDING_PROVIDERS = frozenset({"openai", "mistral", "together", "gemini"})
MAX_INPUTS = 2048

Inputs = str | list[str] | list[int] | list[list[int]]


class EmbeddingsRequest(BaseModel):
    """OpenAI's embeddings body; fields StepBlend does not read (`user`) pass through."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    input: Inputs
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=65_536)

    @field_validator("input")
    @classmethod
    def _some(cls, value: Inputs) -> Inputs:
        if value == "" or value == []:
            raise ValueError("must not be empty")
        if isinstance(value, list) and len(value) > MAX_INPUTS:
            raise ValueError(f"at most {MAX_INPUTS} inputs per request")
        if isinstance(value, list) and any(item == "" or item == [] for item in value):
            raise ValueError("no input may be empty")
        return value

    def inputs(self) -> list[str | list[int]]:
        if isinstance(self.input, str):
            return [self.input]
        if self.input and all(isinstance(item, int) for item in self.input):
            return [list(self.input)]  # type: ignore[arg-type]
        return list(self.input)  # type: ignore[arg-type]


def _features(request: EmbeddingsRequest, encoding: Encoding) -> router_pb2.RequestFeatures:
    counts = [len(item) if isinstance(item, list) else count_tokens(encoding, item) for item in request.inputs()]
    return router_pb2.RequestFeatures(
        prompt_tokens=sum(counts),
        longest_input_tokens=max(counts),
        inputs=len(counts),
        params=["dimensions"] if request.dimensions is not None else [],
    )


class EmbeddingsCodec:
    dialect = "openai_embeddings"

    def parse(self, raw: bytes) -> Parsed:
        body = load_object(raw)
        try:
            request = EmbeddingsRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = str(first["loc"][0]) if first["loc"] else None
            raise errors.invalid(f"Invalid value for '{param}': {first['msg']}.", param=param) from exc
        if body.get("stream"):
            raise errors.invalid("Embeddings do not stream.", param="stream")
        native = {k: v for k, v in body.items() if not k.startswith("stepblend_")}
        return Parsed(
            request=ChatRequest.model_construct(model=request.model, messages=[], stream=False),
            upstream={},
            native=orjson.dumps(native),
            native_providers=EMBEDDING_PROVIDERS,
            kind="embedding",
            count=partial(_features, request),
        )

    def completion(self, body: bytes, answer: Answer, parsed: Parsed) -> bytes:
        listed: dict[str, Any] = orjson.loads(body)
        listed["stepblend"] = answer.stepblend()
        return orjson.dumps(listed)

    def stream(self, answer: Answer, parsed: Parsed) -> StreamRenderer:
        raise AssertionError("embeddings never stream: parse refuses `stream`")

    def error(self, error: ApiError) -> Response:
        return error.response()
