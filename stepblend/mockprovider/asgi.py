"""The mock's plain ASGI plumbing: reading a request body, answering JSON, waiting
on a client that may go away, masking a key the way OpenAI's errors do."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["Message", "Receive", "Scope", "Send", "left_while_waiting", "mask", "read_body", "respond"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


async def left_while_waiting(receive: Receive, ms: int) -> bool:
    """Wait `ms`; whether the client disconnected meanwhile (the body has been
    read, so the next receive() only returns on disconnect)."""
    gone = asyncio.ensure_future(receive())
    try:
        await asyncio.wait((gone,), timeout=ms / 1000)
        return gone.done()
    finally:
        gone.cancel()


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(parts)


async def respond(
    send: Send,
    status: int,
    body: bytes,
    request_id: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [*_JSON, (b"content-length", str(len(body)).encode()), *(headers or [])]
    if request_id is not None:
        headers.append((b"request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def mask(key: str) -> str:
    return f"{key[:3]}*****{key[-4:]}" if len(key) >= 12 else "*****"
