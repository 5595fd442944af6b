"""AWS event-stream messages (`application/vnd.amazon.eventstream`) as the mock's
Bedrock sends them. botocore decodes the format but has no encoder, so the frame is
built here, as AWS documents it (docs.aws.amazon.com/transcribe/latest/dg/
event-stream.html; botocore/eventstream.py reads the same layout):

    prelude   total length (uint32 BE), headers length (uint32 BE), CRC32 of those 8 bytes
    headers   per header: name length (uint8), name, type 7 = string (uint8),
              value length (uint16 BE), value
    payload   the bytes (JSON here)
    CRC32     of everything before it

tests/providers/test_bedrock_eventstream.py decodes these with botocore's own decoder.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

__all__ = ["encode", "event", "exception"]

_STRING = 7


def encode(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One message with string headers."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    head = prelude + struct.pack(">I", zlib.crc32(prelude))
    body = head + encoded + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, payload: bytes) -> bytes:
    """An event message, as Bedrock's ConverseStream sends each of its events."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode(headers, payload)


def exception(exception_type: str, payload: bytes) -> bytes:
    """An exception message (a modeled error in the middle of a stream)."""
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode(headers, payload)


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", _STRING, len(raw_value)) + raw_value
