"""A byte-level Server-Sent Events decoder for upstream streams.

Feed it the bytes as they arrive (split anywhere); it returns each complete event.
Lines end with LF or CRLF; comment lines (`: keep-alive`) are skipped; several
`data:` lines of one event are joined with LF, as the SSE standard says.

Bounded: a line longer than `max_line` bytes (an upstream that never sends a
newline) or an event whose data passes `max_event` bytes is an UpstreamFormatError,
so a broken or hostile upstream cannot make the service buffer without end.
"""

from __future__ import annotations

from services.providers.adapters.base import SseEvent, UpstreamFormatError

__all__ = ["MAX_EVENT_BYTES", "MAX_LINE_BYTES", "SseDecoder", "SseEvent", "is_done"]

# A streamed chunk is a few hundred bytes; the largest real ones (a tool call's
# arguments in one piece) are far below these.
MAX_LINE_BYTES = 1024 * 1024
MAX_EVENT_BYTES = 4 * 1024 * 1024


def is_done(data: bytes) -> bool:
    """Whether a payload is the `[DONE]` sentinel that ends OpenAI-style streams."""
    return data.strip() == b"[DONE]"


class SseDecoder:
    def __init__(self, max_line: int = MAX_LINE_BYTES, max_event: int = MAX_EVENT_BYTES) -> None:
        self._partial = b""
        self._data: list[bytes] = []
        self._data_size = 0
        self._event = ""
        self._max_line = max_line
        self._max_event = max_event

    def feed(self, chunk: bytes) -> list[SseEvent]:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > self._max_line:
            raise UpstreamFormatError(f"a line of the stream passed {self._max_line} bytes without ending")
        events: list[SseEvent] = []
        for line in lines:
            self._line(line[:-1] if line.endswith(b"\r") else line, events)
        return events

    def finish(self) -> list[SseEvent]:
        """At the end of the stream: an event a lenient upstream left unterminated."""
        events: list[SseEvent] = []
        if self._partial:
            self._line(self._partial.rstrip(b"\r"), events)
            self._partial = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[SseEvent]) -> None:
        if not line:
            if self._data:
                events.append(SseEvent(b"\n".join(self._data), self._event))
            self._data, self._data_size, self._event = [], 0, ""
            return
        if line[:1] == b":":
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data_size += len(value)
            if self._data_size > self._max_event:
                raise UpstreamFormatError(f"an event of the stream passed {self._max_event} bytes")
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
