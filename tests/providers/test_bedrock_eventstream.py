"""AWS event streams: the mock's encoder (stepblend/mockprovider/eventstream.py) read
back by botocore's own decoder, and the adapter's decoder (botocore's, bounded)
against split, corrupted, oversized and cut-off streams."""

from __future__ import annotations

import struct

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from services.providers.adapters.base import SseEvent, UpstreamFormatError
from services.providers.adapters.eventstream import EventStreamDecoder
from stepblend.mockprovider.answers import Ask, answer
from stepblend.mockprovider.bedrock_wire import frames
from stepblend.mockprovider.eventstream import encode, event, exception


def test_botocores_decoder_reads_the_mocks_messages_exactly() -> None:
    headers = {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"}
    payload = b'{"contentBlockIndex":0,"delta":{"text":"H\xc3\xa9llo"}}'
    buffer = EventStreamBuffer()
    buffer.add_data(encode(headers, payload) + encode({":message-type": "event", ":event-type": "x"}, b""))
    first, second = list(buffer)
    assert (first.headers, first.payload) == (headers, payload)
    assert (second.headers, second.payload) == ({":message-type": "event", ":event-type": "x"}, b"")


def test_a_stream_split_anywhere_decodes_to_the_same_events() -> None:
    said = answer(Ask(last_text="Hello there"), "tooluse_")
    stream = b"".join(frames(said, prompt=9))
    whole = EventStreamDecoder().feed(stream)
    assert [e.event for e in whole] == [
        "messageStart",
        *["contentBlockDelta"] * len(said.pieces),
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    decoder = EventStreamDecoder()
    byte_by_byte = [e for i in range(len(stream)) for e in decoder.feed(stream[i : i + 1])]
    assert byte_by_byte == whole and decoder.finish() == []
    text = "".join(orjson.loads(e.data)["delta"]["text"] for e in whole if e.event == "contentBlockDelta")
    assert text == "Hello! You said: Hello there"


def test_exceptions_and_errors_are_named_as_such() -> None:
    errors = exception("throttlingException", b'{"message":"slow down"}') + encode(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "it broke"}, b""
    )
    assert EventStreamDecoder().feed(errors) == [
        SseEvent(b'{"message":"slow down"}', "exception:throttlingException"),
        SseEvent(b'{"message":"it broke"}', "exception:InternalFailure"),
    ]


def test_a_corrupted_message_is_not_the_format() -> None:
    message = bytearray(event("messageStart", b'{"role":"assistant"}'))
    message[-6] ^= 0xFF  # a payload byte: the message's CRC no longer matches
    with pytest.raises(UpstreamFormatError, match="broken"):
        EventStreamDecoder().feed(bytes(message))


def test_a_message_announcing_more_than_the_bound_is_refused_before_it_is_buffered() -> None:
    prelude = struct.pack(">II", 64 * 1024 * 1024, 0)
    with pytest.raises(UpstreamFormatError, match="bytes"):
        EventStreamDecoder().feed(prelude)


def test_a_stream_cut_inside_a_message_is_not_the_format() -> None:
    decoder = EventStreamDecoder()
    message = event("messageStart", b'{"role":"assistant"}')
    assert decoder.feed(message + message[:10]) == [SseEvent(b'{"role":"assistant"}', "messageStart")]
    with pytest.raises(UpstreamFormatError, match="ended inside"):
        decoder.finish()
