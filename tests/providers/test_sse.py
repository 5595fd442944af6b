from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from services.providers.adapters.sse import SseDecoder, SseEvent, is_done

STREAM = (
    b": keep-alive\n\n"
    b'data: {"a": 1}\n\n'
    b"event: message_start\r\ndata: first\r\ndata: second\r\n\r\n"
    b"data:no-space\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SseEvent(b'{"a": 1}'),
    SseEvent(b"first\nsecond", "message_start"),
    SseEvent(b"no-space"),
    SseEvent(b"[DONE]"),
]


def decode(parts: list[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    events = [event for part in parts for event in decoder.feed(part)]
    return events + decoder.finish()


def test_decodes_events_comments_crlf_and_multiline_data() -> None:
    assert decode([STREAM]) == EXPECTED
    assert is_done(EXPECTED[-1].data)


# No deadline: on a machine busy with other test runs one example can take >200 ms.
@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    parts = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert decode(parts) == EXPECTED


def test_unterminated_last_event_is_kept_at_the_end() -> None:
    assert decode([b"data: x\n\ndata: y"]) == [SseEvent(b"x"), SseEvent(b"y")]
