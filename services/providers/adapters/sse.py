"""A byte-level Server-Sent Events decoder for upstream streams.

Feed it the bytes as they arrive (split anywhere); it returns each complete event.
Lines end with LF or CRLF; comment lines (`: keep-alive`) are skipped; several
`data:` lines of one event are joined with LF, as the SSE standard says.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SseEvent:
    data: bytes
    event: str = ""


def is_done(data: bytes) -> bool:
    """Whether a payload is the `[DONE]` sentinel that ends OpenAI-style streams."""
    return data.strip() == b"[DONE]"


class SseDecoder:
    def __init__(self) -> None:
        self._partial = b""
        self._data: list[bytes] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
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
            self._data, self._event = [], ""
            return
        if line[:1] == b":":
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
