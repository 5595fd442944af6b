"""Anthropic's Messages API objects as StepBlend reads them: msgspec Structs named
after Anthropic's documented objects (`Message`, the stream's `Raw…Event`s, `Usage`),
each declaring only the fields the adapter reads.

Anthropic adds block, delta and event types over time and asks clients to skip what
they do not know. So a content block and a delta are one Struct each, whatever their
`type` (a tagged union would refuse a new tag), and `stream_event` picks an event's
model by its name, skipping unknown events unread. Unknown fields are skipped; a field
StepBlend reads that has the wrong type is a provider not speaking the format
(`base.decode` makes it an `UpstreamFormatError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from services.providers.adapters.base import TokenCount, TokenUsage, decode

__all__ = [
    "ContentBlock",
    "ContentBlockDeltaEvent",
    "ContentBlockStartEvent",
    "ErrorEvent",
    "Message",
    "MessageDeltaEvent",
    "MessageStartEvent",
    "MessageStopEvent",
    "StreamEvent",
    "Usage",
    "stream_event",
]


class Usage(msgspec.Struct):
    """Anthropic's `usage` (and a stream's `MessageDeltaUsage`): `input_tokens`
    excludes prompt-cache reads and writes."""

    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    cache_creation_input_tokens: TokenCount | None = None
    cache_read_input_tokens: TokenCount | None = None

    def tokens(self) -> TokenUsage:
        """In OpenAI's counting: prompt = input + cache creation + cache read; the
        cache reads are the cached tokens."""
        cached = self.cache_read_input_tokens or 0
        prompt = (self.input_tokens or 0) + (self.cache_creation_input_tokens or 0) + cached
        completion = self.output_tokens or 0
        return TokenUsage(prompt, completion, prompt + completion, cached)

    def given(self) -> dict[str, int]:
        """The counts this object gives (a stream repeats some, omits others)."""
        return {name: value for name in self.__struct_fields__ if (value := getattr(self, name)) is not None}


class ContentBlock(msgspec.Struct):
    """A content block: `text`, `thinking`, `tool_use` (id, name, input), or a type
    added since (skipped)."""

    type: str = ""
    text: str | None = None
    thinking: str | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None


class Message(msgspec.Struct):
    """A whole answer (`type` is "message"), and the shell `message_start` carries."""

    type: str = ""
    content: list[ContentBlock] | None = None
    stop_reason: str | None = None
    usage: Usage | None = None


class ContentDelta(msgspec.Struct):
    """A block's delta: `text_delta`, `input_json_delta` (partial_json),
    `thinking_delta`, or one OpenAI's chunk has no place for (signature, citations)."""

    type: str = ""
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None


class MessageDelta(msgspec.Struct):
    stop_reason: str | None = None


class ErrorDetail(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class StreamEvent(msgspec.Struct):
    """Any event, by its `type` alone (an event sent without an SSE event name)."""

    type: str = ""


class MessageStartEvent(StreamEvent):
    message: Message | None = None


class ContentBlockStartEvent(StreamEvent):
    index: int | None = None
    content_block: ContentBlock | None = None


class ContentBlockDeltaEvent(StreamEvent):
    index: int | None = None
    delta: ContentDelta | None = None


class MessageDeltaEvent(StreamEvent):
    delta: MessageDelta | None = None
    usage: Usage | None = None


class MessageStopEvent(StreamEvent):
    pass


class ErrorEvent(StreamEvent):
    """An `error` event, and the body of an error answer: `{"type": "error", "error": {...}}`."""

    error: ErrorDetail | None = None


#: The decoders of an answer and of an error body.
MESSAGE = msgspec.json.Decoder(Message)
ERROR = msgspec.json.Decoder(ErrorEvent)
_EVENTS: Mapping[str, msgspec.json.Decoder[Any]] = {
    "message_start": msgspec.json.Decoder(MessageStartEvent),
    "content_block_start": msgspec.json.Decoder(ContentBlockStartEvent),
    "content_block_delta": msgspec.json.Decoder(ContentBlockDeltaEvent),
    "message_delta": msgspec.json.Decoder(MessageDeltaEvent),
    "message_stop": msgspec.json.Decoder(MessageStopEvent),
    "error": ERROR,
}
_ANY_EVENT = msgspec.json.Decoder(StreamEvent)


def stream_event(data: bytes, name: str) -> StreamEvent:
    """One stream event's payload as the model of its type; a plain `StreamEvent` for
    an event StepBlend does not read (ping, content_block_stop, newer ones). The
    payload's own `type` wins over the SSE event name when they differ."""
    event: StreamEvent = _decode_event(data, _EVENTS.get(name, _ANY_EVENT))
    if event.type and event.type != name:
        decoder = _EVENTS.get(event.type)
        event = StreamEvent(event.type) if decoder is None else _decode_event(data, decoder)
    return event


def _decode_event(data: bytes, decoder: msgspec.json.Decoder[Any]) -> StreamEvent:
    if decoder is ERROR:
        try:
            error: ErrorEvent = ERROR.decode(data)
            return error
        except msgspec.ValidationError:
            # An error event is an error event, even when its details are not Anthropic's shape.
            return ErrorEvent("error")
        except msgspec.DecodeError:
            pass  # not JSON: decode() says so
    event: StreamEvent = decode(data, decoder)
    return event
