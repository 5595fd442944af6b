"""What every adapter shares: the `Adapter` protocol and the values crossing it.

An adapter translates between OpenAI's Chat Completions (what StepBlend speaks to
its clients) and one provider wire format. It is pure: bytes and dicts in, bytes
and token usage out, no network, no clock, no keys kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from stepblend.v1 import router_pb2


@dataclass(frozen=True)
class TokenUsage:
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
    """What a provider's error body said ("" for what it did not say)."""

    message: str = ""
    param: str = ""
    code: str = ""


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
    """The provider reported an error inside a stream that had started."""


class Adapter(Protocol):
    """One wire format. Vendors speaking it differ only by base URL and quirks."""

    def build_request(self, body: dict[str, Any], candidate: router_pb2.Candidate, stream: bool) -> UpstreamRequest:
        """The upstream request for `candidate`; raises `RequestRefused`."""
        ...

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """The headers that carry the provider key."""
        ...

    def parse_completion(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0
    ) -> tuple[bytes, TokenUsage | None]:
        """A whole upstream answer as an OpenAI `chat.completion` with our id and model."""
        ...

    def parse_chunk(
        self, data: bytes, completion_id: str, model: str, *, created: int = 0, include_usage: bool = False
    ) -> tuple[bytes | None, TokenUsage | None]:
        """One upstream SSE data payload as a `chat.completion.chunk` to forward (or
        None) and the usage it reported (or None)."""
        ...

    def error_details(self, data: bytes) -> ProviderError:
        """What a provider's error body says."""
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
