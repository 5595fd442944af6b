"""A mock OpenAI-compatible provider that answers in microseconds, for the
benchmark only: a bare asyncio protocol with canned bodies, so the numbers
measure StepBlend, not the mock.

Non-streaming requests get one chat.completion; streaming ones get N content
chunks (N = the request's max_tokens, default 20), a finish chunk, the usage
chunk and [DONE], in one write — or, when the body says "user": "paced", one
event per write, PACE_S apart, as a provider streams while it generates.

    python bench/fastmock.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

import orjson

PACE_S = 0.001

_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)
# Whatever the client's JSON spacing (StepBlend sends compact JSON, LiteLLM's client may not).
_MAX_TOKENS = re.compile(rb'"max_(?:completion_)?tokens":\s*(\d+)')
_STREAM = re.compile(rb'"stream":\s*true')
_PACED = re.compile(rb'"user":\s*"paced"')

_COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello from the bench."}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
    }
)


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _stream(chunks: int) -> bytes:
    return b"".join(_stream_events(chunks))


def _stream_events(chunks: int) -> list[bytes]:
    parts = [_chunk({"role": "assistant", "content": ""})]
    parts += [_chunk({"content": f"tok{i} "}) for i in range(chunks)]
    parts.append(_chunk({}, "stop"))
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9 + chunks},
    }
    parts.append(b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n")
    return parts


_JSON_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_COMPLETION)).encode()
    + b"\r\n\r\n"
    + _COMPLETION
)


def _sse_response(chunks: int, cache: dict[int, bytes]) -> bytes:
    if chunks not in cache:
        body = _stream(chunks)
        cache[chunks] = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
    return cache[chunks]


class _Protocol(asyncio.Protocol):
    def __init__(self, cache: dict[int, bytes]) -> None:
        self._buffer = b""
        self._cache = cache
        self._transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end]
            match = _CONTENT_LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            if _STREAM.search(body):
                tokens = _MAX_TOKENS.search(body)
                chunks = int(tokens.group(1)) if tokens else 20
                if _PACED.search(body):
                    asyncio.get_running_loop().create_task(self._paced(chunks))
                else:
                    self._transport.write(_sse_response(chunks, self._cache))
            else:
                self._transport.write(_JSON_RESPONSE)

    async def _paced(self, chunks: int) -> None:
        events = _stream_events(chunks)
        length = sum(map(len, events))
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % length
        self._transport.write(head)
        for event in events:
            if self._transport.is_closing():
                return
            self._transport.write(event)
            await asyncio.sleep(PACE_S)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    cache: dict[int, bytes] = {}
    server = await loop.create_server(lambda: _Protocol(cache), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9100)
    import uvloop

    uvloop.run(serve(parser.parse_args().port))
