"""What every adapter shares: the `Adapter` protocol and the values crossing it.

An adapter translates between OpenAI's Chat Completions (what StepBlend speaks to
its clients) and one provider wire format. It is pure: bytes and dicts in, bytes
and token usage out, no network, no clock, no keys kept. What it reads of a
provider's payload it reads through typed wire models (msgspec Structs, one module
per wire format: `wire_openai`, `wire_anthropic`), decoded with `decode`/`convert`. A stream is translated by
a `StreamTranslator`, the one stateful piece: some wire formats (Anthropic's) spread
what OpenAI says in one chunk over several events, so the translation of an event
depends on the events before it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar, runtime_checkable

import msgspec
import orjson

from stepblend.v1 import router_pb2

T = TypeVar("T")


#: A base64 data URL (`data:image/png;base64,...`): the only images an adapter inlines.
DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?:;[^,;]*)*;base64,(?P<data>.*)$", re.DOTALL)


@dataclass(frozen=True)
class SseEvent:
    """One Server-Sent Event of an upstream stream (sse.SseDecoder makes them)."""

    data: bytes
    event: str = ""


@dataclass(frozen=True)
class TokenUsage:
    """Tokens as OpenAI counts them: `prompt_tokens` includes cached ones."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_prompt_tokens: int = 0


@dataclass(frozen=True)
class UpstreamRequest:
    """What to send: `path` is appended to the vendor's base URL; `content` is JSON."""

    path: str
    content: bytes


@dataclass(frozen=True)
class ProviderError:
    """What a provider's error body said ("" for what it did not say). `kind` is the
    provider's own error type (`overloaded_error`, `server_error`…)."""

    message: str = ""
    param: str = ""
    code: str = ""
    kind: str = ""


class RequestRefused(Exception):
    """The request cannot be sent to this candidate (an unsupported parameter, a body
    that is not a JSON object): a 400 `invalid_request_error`, no upstream call."""

    def __init__(self, message: str, param: str = "", code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class UpstreamFormatError(Exception):
    """The provider answered something that is not its wire format."""


class UpstreamStreamError(Exception):
    """The provider reported an error inside a stream; `kind` is its error type."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


@runtime_checkable
class HoldsBack(Protocol):
    """A StreamTranslator that holds chunks back until its stream has ended
    (Gemini's finish, which its stream may repeat on every chunk)."""

    def close(self) -> list[bytes]:
        """The chunks held back, once the stream ended whole."""
        ...


class StreamTranslator(Protocol):
    """Translates one upstream stream, event by event, into OpenAI chunks."""

    def feed(self, event: SseEvent) -> list[bytes]:
        """The `chat.completion.chunk` objects to forward for one upstream event
        (often none). Raises `UpstreamStreamError` for an error the provider put in
        the stream, `UpstreamFormatError` for what is not its wire format."""
        ...

    @property
    def usage(self) -> TokenUsage | None:
        """The usage reported so far (the provider's last word wins)."""
        ...

    @property
    def complete(self) -> bool:
        """Whether the answer is whole (a finish reason was given): a stream that
        ends before that was cut off."""
        ...

    @property
    def ended(self) -> bool:
        """Whether the provider said its stream is over (`[DONE]`, `message_stop`):
        nothing after it is read."""
        ...


class Adapter(Protocol):
    """One wire format. Vendors speaking it differ only by base URL and quirks."""

    def build_request(self, body: dict[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
        """The upstream request for `candidate`; raises `RequestRefused`."""
        ...

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """The headers that carry the provider key (and any the format requires)."""
        ...

    def parse_completion(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0
    ) -> tuple[bytes, TokenUsage | None]:
        """A whole upstream answer as an OpenAI `chat.completion` with our id and model."""
        ...

    def stream_translator(
        self, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
    ) -> StreamTranslator:
        """A translator for one upstream stream. Forwarded chunks carry `"usage":
        null` when the client asked for usage (as OpenAI's do) and no `usage` key
        otherwise: usage reaches the client only in the gateway's last chunk."""
        ...

    def error_details(self, data: bytes) -> ProviderError:
        """What a provider's error body says."""
        ...


class FrameDecoder(Protocol):
    """Splits a streamed body into events, as `sse.SseDecoder` does for SSE."""

    def feed(self, data: bytes) -> list[SseEvent]:
        """The events completed by `data`; `UpstreamFormatError` for what is not the format."""
        ...

    def finish(self) -> list[SseEvent]:
        """The events left when the body ends."""
        ...


@runtime_checkable
class OwnTransport(Protocol):
    """What an adapter whose provider is not spoken to like the others (AWS's
    Bedrock) adds to `Adapter`: its requests are signed over their final URL, headers
    and body (so the headers come after the body is built), its streams are framed
    otherwise than SSE, and its error type travels in a response header."""

    def sign(self, url: str, headers: dict[str, str], content: bytes, secret: str) -> dict[str, str]:
        """The headers to send: `headers` plus the authentication computed over the
        request (`auth_headers` is not used for such an adapter)."""
        ...

    def frame_decoder(self) -> FrameDecoder:
        """A decoder for one streamed body."""
        ...

    def error_of(self, data: bytes, headers: Mapping[str, str]) -> ProviderError:
        """What an error answer says, from its body and its headers."""
        ...


def parse_body(raw: bytes) -> dict[str, Any]:
    """The client's body as given by the gateway; refuses anything but a JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestRefused("the request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise RequestRefused("the request body must be a JSON object")
    return body


def load_object(data: bytes) -> dict[str, Any]:
    """A provider's JSON object as a dict, for a payload forwarded with every field the
    provider put in it; `UpstreamFormatError` for anything else."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamFormatError("the provider sent invalid JSON") from exc
    if not isinstance(obj, dict):
        raise UpstreamFormatError("the provider sent JSON that is not an object")
    return obj


# No request reaches this many tokens in one field; the counts travel as uint32.
MAX_TOKEN_COUNT = 100_000_000

#: A token count in a wire model: anything but an integer from 0 to MAX_TOKEN_COUNT
#: (a float, a string, a boolean, a negative) does not decode, so a broken or hostile
#: provider's usage is a provider error, never a crash or an uncounted request.
TokenCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKEN_COUNT)]

_MAX_REASON_CHARS = 200


def decode(data: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """A provider's payload as its wire model; `UpstreamFormatError` when it is not
    JSON or does not fit the model (unknown fields are skipped, never an error)."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _not_the_format(exc) from None
    except msgspec.DecodeError as exc:
        raise UpstreamFormatError("the provider sent invalid JSON") from exc


def convert(obj: Any, model: type[T]) -> T:
    """Like `decode`, for JSON already loaded (a payload that is also forwarded)."""
    try:
        return msgspec.convert(obj, model)
    except msgspec.ValidationError as exc:
        raise _not_the_format(exc) from None


def _not_the_format(exc: msgspec.ValidationError) -> UpstreamFormatError:
    reason = str(exc)[:_MAX_REASON_CHARS]
    # msgspec ends its message with the path: "... - at `$.usage.prompt_tokens`".
    if "usage" in reason.rpartition(" - at `")[2]:
        return UpstreamFormatError(f"a usage count out of range: {reason}")
    return UpstreamFormatError(f"the provider's payload is not its wire format: {reason}")


def openai_chunk(
    completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None, include_usage: bool
) -> bytes:
    """One OpenAI `chat.completion.chunk` of choice 0, as a translated stream sends it;
    `"usage": null` when the client asked for usage (it comes in the gateway's last chunk)."""
    obj: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if include_usage:
        obj["usage"] = None
    return orjson.dumps(obj)
