"""What differs between the gateway's front doors, and nothing else.

OpenAI chat completions, Anthropic messages and OpenAI responses differ in how a
request is parsed and how an answer is rendered — never in routing, admission,
execution or usage, which are one pipeline. A `Codec` is that difference:

- `parse(raw)` turns the dialect's body into the internal request: the OpenAI chat
  completions body (`ChatRequest`, validated, and the dict sent upstream without the
  `stepblend_*` fields). An error is an `ApiError`, rendered by `error` below.
- `completion(body, answer)` turns providers' whole answer (an OpenAI
  `chat.completion` JSON object, as bytes) into the dialect's answer, with the
  `stepblend` report.
- `stream(answer)` makes a per-request `StreamRenderer` for a streamed answer:
  providers' OpenAI `chat.completion.chunk` JSON objects in, the dialect's SSE bytes
  out. It is created once the first chunk has arrived (so the routed model is
  known) and may keep state (an Anthropic content block's index, say).
- `error(error)` is the dialect's error response for an `ApiError`.

`Answer` is what a renderer may know of the request; the pipeline's per-request
state implements it.

While the model thinks before its first token, the pipeline keeps the line alive
with a renderer made early (`routed_model` is still empty then): it calls only
its `keepalive`, and `broke` if every candidate then fails; the renderer that
`start`s is a fresh one, made once the first chunk has arrived.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.responses import Response

from services.gateway.errors import ApiError
from services.gateway.features import Encoding
from services.gateway.schemas import ChatRequest
from stepblend.v1 import router_pb2

__all__ = ["Answer", "Codec", "Parsed", "StreamRenderer", "TokenCounts"]


@dataclass(frozen=True)
class Parsed:
    """A request in the internal shape, as the pipeline takes it."""

    request: ChatRequest
    upstream: dict[str, Any]
    # The body as the client sent it, for a provider that speaks the same dialect
    # (an Anthropic-dialect request served by Anthropic passes through untouched,
    # only the model id rewritten); None when there is no such provider.
    native: bytes | None = None
    # The providers that speak this dialect natively (they get `native`).
    native_providers: frozenset[str] = frozenset()
    # The request uses a feature only those providers serve: routing keeps to them,
    # and answers this error when none of them can serve it.
    native_only: ApiError | None = None
    # Dialect-specific facts the renderer needs later (e.g. Anthropic's requested
    # `max_tokens`, the Responses API's `metadata`); opaque to the pipeline.
    extra: dict[str, Any] = field(default_factory=dict)
    # "embedding" for an embeddings request (the router's embedding table); "" chat.
    kind: str = ""
    # How the request's features are counted, when not from its chat messages (an
    # embeddings request's inputs): given the gateway's tokenizer.
    count: Callable[[Encoding], router_pb2.RequestFeatures] | None = None


@dataclass(frozen=True)
class TokenCounts:
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    # As the provider reported it; 0 when it did not (then prompt + completion).
    total_tokens: int = 0


class Answer(Protocol):
    """What a codec may read of the request being answered."""

    @property
    def request_id(self) -> str: ...

    @property
    def created(self) -> int:
        """Unix seconds at admission."""
        ...

    @property
    def routed_model(self) -> str: ...

    @property
    def tokens(self) -> TokenCounts | None:
        """The provider's reported usage, once known (a stream: at its end)."""
        ...

    def stepblend(self) -> dict[str, Any]:
        """The `stepblend` report (routed_model, provider, strategy_used, costs...)."""
        ...


class StreamRenderer(Protocol):
    def start(self) -> bytes:
        """Bytes before the first chunk (nothing for OpenAI; nothing for Anthropic
        either, whose opening depends on whether the first chunk is a native frame)."""
        ...

    def chunks(self, chunks: Sequence[bytes]) -> bytes:
        """SSE bytes for providers' chunks (OpenAI chunk JSON objects), one write."""
        ...

    def end(self) -> bytes:
        """After the last chunk: the dialect's ending, carrying usage and `stepblend`."""
        ...

    def broke(self, error: ApiError) -> bytes:
        """The stream broke after it started: the dialect's error event, and its end."""
        ...

    def keepalive(self) -> bytes:
        """Sent while the model thinks before its first token."""
        ...


class Codec(Protocol):
    # The dialect's label in usage events, spans, metrics and the ledger:
    # "openai_chat", "anthropic_messages" or "openai_responses".
    dialect: str

    def parse(self, raw: bytes) -> Parsed: ...

    def completion(self, body: bytes, answer: Answer, parsed: Parsed) -> bytes: ...

    def stream(self, answer: Answer, parsed: Parsed) -> StreamRenderer: ...

    def error(self, error: ApiError) -> Response: ...
