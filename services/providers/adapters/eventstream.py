"""AWS event-stream decoding (`application/vnd.amazon.eventstream`, what Bedrock's
ConverseStream answers) with botocore's own decoder, `botocore.eventstream.EventStreamBuffer`:
binary messages — a prelude (total and headers lengths, CRC32), typed headers, a
payload, a CRC32 of the whole — each checked before it is used.

Each message becomes an `SseEvent`, so a stream translator reads it like an SSE event:

    :message-type event       SseEvent(payload, event=<:event-type>)
    :message-type exception   SseEvent(payload, event="exception:<:exception-type>")
    :message-type error       SseEvent({"message": <:error-message>}, event="exception:<:error-code>")

Bounded like the SSE decoder: a message announcing more than `MAX_MESSAGE_BYTES` is an
`UpstreamFormatError` before it is buffered (botocore alone allows 24 MiB), as is a
message that fails its checksums.
"""

from __future__ import annotations

import struct

import orjson

from services.providers.adapters.base import SseEvent, UpstreamFormatError
from services.providers.adapters.sse import MAX_EVENT_BYTES

__all__ = ["MAX_MESSAGE_BYTES", "EventStreamDecoder"]

MAX_MESSAGE_BYTES = MAX_EVENT_BYTES
EXCEPTION = "exception:"


class EventStreamDecoder:
    """A `FrameDecoder` for AWS event streams."""

    def __init__(self, max_message: int = MAX_MESSAGE_BYTES) -> None:
        # botocore on the first Bedrock stream (bedrock.sign says why).
        from botocore.eventstream import EventStreamBuffer

        self._buffer = EventStreamBuffer()
        self._max = max_message
        # The bytes fed and not yet part of a message, for the size check.
        self._pending = b""

    def feed(self, data: bytes) -> list[SseEvent]:
        self._check(data)
        self._buffer.add_data(data)
        events: list[SseEvent] = []
        try:
            for message in self._buffer:
                events.append(_event(message.headers, message.payload))
        except _parser_error() as exc:
            raise UpstreamFormatError(f"the event stream is broken: {exc}") from None
        return events

    def finish(self) -> list[SseEvent]:
        if self._pending:
            raise UpstreamFormatError("the event stream ended inside a message")
        return []

    def _check(self, data: bytes) -> None:
        """Refuse a message announcing more than `max_message` bytes (its prelude's
        first 4 bytes), and keep what is buffered past the last whole message."""
        pending = self._pending + data
        while len(pending) >= 4:
            (total,) = struct.unpack(">I", pending[:4])
            if total > self._max:
                raise UpstreamFormatError(f"an event-stream message of {total} bytes (at most {self._max})")
            if total < 16 or len(pending) < total:
                break
            pending = pending[total:]
        self._pending = pending


def _event(headers: dict[str, object], payload: bytes) -> SseEvent:
    kind = headers.get(":message-type")
    if kind == "event":
        return SseEvent(payload, str(headers.get(":event-type", "")))
    if kind == "exception":
        return SseEvent(payload, EXCEPTION + str(headers.get(":exception-type", "")))
    if kind == "error":
        message = orjson.dumps({"message": str(headers.get(":error-message", ""))})
        return SseEvent(message, EXCEPTION + str(headers.get(":error-code", "")))
    raise UpstreamFormatError(f"an event-stream message of type {str(kind)[:40]!r}")


def _parser_error() -> type[Exception]:
    from botocore.eventstream import ParserError

    error: type[Exception] = ParserError
    return error
